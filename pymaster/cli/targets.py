"""pyctl's resource arguments, kubectl's way: ``TYPE NAME...``, ``TYPE/NAME...`` and, for get and
describe, several types at once (``cm,secrets``, ``pod/web node/n1``); and ``UsageError``, the
error of a bad command line.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymaster.cli import kinds


class UsageError(Exception):
    """A bad command line; main prints ``error: <message>`` and exits 1."""

    def __init__(self, message: str, command: str = ""):
        super().__init__(message)
        self.message = message
        self.command = command


def resolve_targets(words: Sequence[str], command: str) -> tuple[str, list[str]]:
    """kubectl's resource arguments: ``TYPE NAME...`` or ``TYPE/NAME...`` -> (plural type, names).

    Raises:
        UsageError: no type, an unknown type, or TYPE/NAME mixing types.
    """
    if not words:
        raise UsageError(f"you must specify the type of resource: {kinds.listing()}", command)
    if "/" not in words[0]:
        resource = resource_of(words[0], command)
        names = list(words[1:])
        if any("/" in name for name in names):
            raise UsageError("there is no need to specify a resource type as a separate argument when "
                             "passing arguments in resource/name form", command)
        return resource, names
    resource, names = "", []
    for word in words:
        kind, sep, name = word.partition("/")
        if not sep or not name:
            raise UsageError(f"arguments in resource/name form must have a single resource and name: {word}",
                             command)
        kind = resource_of(kind, command)
        if resource and kind != resource:
            raise UsageError("only one resource type at a time", command)
        resource = kind
        names.append(name)
    return resource, names


def resolve_groups(words: Sequence[str], command: str) -> list[tuple[str, list[str]]]:
    """get's and describe's resource arguments, several kinds at once: ``TYPE[,TYPE...] [NAME...]``
    (the names apply to every type) or ``TYPE/NAME...`` of any types -> [(plural type, names)],
    in the order the types come.

    Raises:
        UsageError: no type, an unknown type, or TYPE/NAME mixed with TYPE NAME.
    """
    if words and "," in words[0] and "/" not in words[0]:
        resources = dict.fromkeys(resource_of(word, command) for word in words[0].split(","))
        _, names = resolve_targets([next(iter(resources)), *words[1:]], command)
        return [(resource, list(names)) for resource in resources]
    if words and all("/" in word for word in words):
        groups: dict[str, list[str]] = {}
        for word in words:
            resource, names = resolve_targets([word], command)
            groups.setdefault(resource, []).extend(names)
        return list(groups.items())
    return [resolve_targets(words, command)]


def resource_of(word: str, command: str) -> str:
    """The plural resource a kubectl type word names ("po" -> "pods").

    Raises:
        UsageError: an unknown type.
    """
    kind = kinds.lookup(word)
    if kind is None:
        raise UsageError(f'the server doesn\'t have a resource type "{word}"', command)
    return kind.resource


def cascade_policy(value: str, command: str) -> str:
    """kubectl's --cascade values as the API's propagationPolicy ("" for the default, background).

    Raises:
        UsageError: another value.
    """
    policy = {"background": "", "true": "", "foreground": "Foreground", "orphan": "Orphan", "false": "Orphan"}
    if value not in policy:
        raise UsageError(f'invalid cascade value ({value}). Must be "background", "foreground", or "orphan".',
                         command)
    return policy[value]
