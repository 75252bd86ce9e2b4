"""Kubernetes' ``$(VAR)`` expansion, used in a container's env values, command and args, and in a
volumeMount's subPathExpr (Kubernetes' third_party/forked/golang/expansion, rule for rule).

- ``$(NAME)`` becomes the value of NAME; an undefined NAME leaves ``$(NAME)`` as written.
- ``$$`` is an escaped ``$``: ``$$(NAME)`` becomes the literal ``$(NAME)``.
- A ``$`` followed by anything else (``$NAME``, ``${NAME}``, ``$?``), a ``$`` at the end and an
  unclosed ``$(`` are kept as written.
- No nesting, no recursion: ``$(A$(B))`` looks up the name ``A$(B`` (then ``)`` follows), and a
  value that itself holds ``$(X)`` is inserted as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_OPERATOR = "$"
_OPENER = "("
_CLOSER = ")"


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expands the ``$(VAR)`` references of ``text``.

    Args:
        text: an env value, a command or args entry, a subPathExpr.
        lookup: a name -> its value, or None when it is not defined (the reference is then kept).

    Returns:
        ``text`` with every reference to a defined name replaced and ``$$`` unescaped.
    """
    out: list[str] = []
    checkpoint = 0  # text[checkpoint:cursor] is still to be copied
    cursor = 0
    end = len(text)
    while cursor < end:
        if text[cursor] == _OPERATOR and cursor + 1 < end:
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            if following == _OPERATOR:
                out.append(_OPERATOR)  # "$$": one literal "$"
                cursor += 1
            elif following == _OPENER:
                closer = text.find(_CLOSER, cursor + 2)
                if closer < 0:
                    # An unclosed "$(": kept, and scanning goes on after the "(" (so a later
                    # "$(" is looked at on its own).
                    out.append(_OPERATOR + _OPENER)
                    cursor += 1
                else:
                    name = text[cursor + 2:closer]
                    value = lookup(name)
                    out.append(value if value is not None else f"{_OPERATOR}{_OPENER}{name}{_CLOSER}")
                    cursor = closer
            else:
                out.append(_OPERATOR + following)  # not a reference: kept as written
                cursor += 1
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def mapping(env: Sequence[tuple[str, str]]) -> Callable[[str], str | None]:
    """The lookup of ``expand`` over already-resolved (name, value) pairs; a later pair of one name
    wins, as a later env entry replaces an earlier one."""
    values = dict(env)
    return values.get
