"""pyctl taint: kubectl's ``taint`` verb for nodes.

``pyctl taint node NAME... key=value:Effect key:Effect key:Effect- key- [--overwrite]`` (also
``nodes``/``no`` and ``node/NAME``; ``-l SELECTOR`` or ``--all`` instead of names). As kubectl:
adding a taint whose key and effect the node has already is refused without ``--overwrite``;
removing one that is not there is an error and nothing is written to that node; each node is
updated once with all changes, checked against its resourceVersion (re-read and retried on a
conflict, as the agent's status reports bump it); a node's error is printed and the others are
done. It prints ``node/NAME tainted`` (only added), ``node/NAME untainted`` (only removed) or
``node/NAME modified`` (both, or ``--overwrite``).

The master stamps ``timeAdded`` on NoExecute taints (``pymaster.registry.nodes.stamp_taints``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.taints import EFFECTS, parse_taint
from pymaster.cli import metadata_edit
from pymaster.cli.context import CommandError, Context

TAINTED, UNTAINTED, MODIFIED = "tainted", "untainted", "modified"
NODE_WORDS = ("node", "nodes", "no")


@dataclass(frozen=True)
class TaintChanges:
    """What a taint command asks: taints to add, and (key, effect) to remove ("" effect: all of
    the key's)."""

    add: tuple[objects_pb2.Taint, ...]
    remove: tuple[tuple[str, str], ...]


def _effect(effect: str) -> str:
    if effect not in EFFECTS:
        raise CommandError(f"invalid taint effect: {effect}, unsupported taint effect")
    return effect


def parse_taints(specs: list[str]) -> TaintChanges:
    """kubectl's parseTaints: ``key=value:Effect`` or ``key:Effect`` adds, ``key:Effect-`` (or
    ``key=value:Effect-``, the value ignored) and ``key-`` remove.

    Raises:
        CommandError: with kubectl's message.
    """
    add: list[objects_pb2.Taint] = []
    remove: list[tuple[str, str]] = []
    for spec in specs:
        if spec.endswith("-"):
            key, _, effect = spec[:-1].partition(":")
            key = key.partition("=")[0]  # kubectl ignores a value: key=value:Effect- removes key:Effect
            if not key:
                raise CommandError(f"invalid taint spec: {spec}")
            remove.append((key, _effect(effect) if effect else ""))
            continue
        try:
            taint = parse_taint(spec)
        except ValueError as err:
            raise CommandError(str(err)) from None
        if any((t.key, t.effect) == (taint.key, taint.effect) for t in add):
            raise CommandError(f"duplicated taints with the same key and effect: {taint.key}:{taint.effect}")
        add.append(taint)
    both = [f"{t.key}:{t.effect}" for t in add if any(k == t.key and e in ("", t.effect) for k, e in remove)]
    if both:
        raise CommandError(f"can not both modify and remove the following taint(s) in the same command: "
                           f"{', '.join(both)}")
    return TaintChanges(tuple(add), tuple(remove))


def apply_taints(
    name: str, current: list[objects_pb2.Taint], changes: TaintChanges, overwrite: bool
) -> tuple[list[objects_pb2.Taint], str]:
    """kubectl's reorganizeTaints: the node's new taints and the word to print.

    Raises:
        CommandError: a key and effect already there without ``overwrite``, or a taint to remove
            that is not there.
    """
    if not overwrite:
        present = {(o.key, o.effect) for o in current}
        existing = [t.key for t in changes.add if (t.key, t.effect) in present]
        if existing:
            raise CommandError(f"node {name} already has {','.join(existing)} taint(s) with same effect(s) "
                               "and --overwrite is false")
    taints = list(changes.add)
    for old in current:
        if not any((t.key, t.effect) == (old.key, old.effect) for t in changes.add):
            taints.append(old)
    added = len(taints) != len(current)
    removed = False
    for key, effect in changes.remove:
        kept = [t for t in taints if not (t.key == key and effect in ("", t.effect))]
        if len(kept) == len(taints):
            raise CommandError(f'taint "{key}:{effect}" not found' if effect else f'taint "{key}" not found')
        taints, removed = kept, True
    if (added and removed) or overwrite:
        return taints, MODIFIED
    return taints, TAINTED if added else UNTAINTED


def split_taint_args(words: list[str]) -> tuple[list[str], list[str]]:
    """kubectl's split of ``taint TYPE [NAME...] SPEC...`` / ``taint TYPE/NAME... SPEC...``: a
    word holding "=" or ":", or ending in "-", is a taint change, every word before the first
    one names what to taint. Returns (node names, taint specs).

    Raises:
        CommandError: not nodes, a name after a change, or no change.
    """
    targets, specs = metadata_edit.split_pairs(
        words, "taint", is_change=lambda word: "=" in word or ":" in word or word.endswith("-"))
    if not targets:
        raise CommandError("one or more resources must be specified as <resource> <name>")
    if not specs:
        raise CommandError("at least one taint update is required")
    if "/" not in targets[0]:
        kind, names = targets[0], targets[1:]
        if kind not in NODE_WORDS:
            raise CommandError(f"taint is only supported for nodes, not {kind!r}")
        return names, specs
    names = []
    for target in targets:
        kind, _, name = target.partition("/")
        if kind not in NODE_WORDS:
            raise CommandError(f"taint is only supported for nodes, not {kind!r}")
        if not name:
            raise CommandError("resource(s) were provided, but no name was specified")
        names.append(name)
    return names, specs


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """Registers ``taint`` on pyctl's sub-command parser."""
    taint = sub.add_parser("taint", parents=common, help="update the taints of nodes",
                           usage="pyctl taint node NAME... | node -l SELECTOR | node --all  "
                                 "KEY[=VALUE]:EFFECT... KEY[:EFFECT]-... [--overwrite]")
    taint.add_argument("words", nargs="+", metavar="WORD",
                       help="node NAME... (or node/NAME...), then KEY[=VALUE]:EFFECT adds, "
                            "KEY[:EFFECT]- removes")
    taint.add_argument("--overwrite", action="store_true", help="replace a taint of the same key and effect")
    taint.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                       help="the nodes with these labels, e.g. pool=gpu")
    taint.add_argument("--all", action="store_true", help="every node of the cluster")
    taint.set_defaults(handler=taint_command)


async def taint_command(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl taint node NAME... SPEC... (or -l/--all): adds and removes taints of nodes, each
    node's failure printed and the others done (exit 1 if any failed), as kubectl."""
    names, specs = split_taint_args(args.words)
    if args.all and args.selector:
        raise CommandError("setting 'all' parameter with a non empty selector is prohibited")
    if names and (args.all or args.selector):
        raise CommandError("names cannot be combined with -l or --all")
    if not names and not (args.all or args.selector):
        raise CommandError("at least one resource name must be specified since 'all' parameter is not set")
    changes = parse_taints(specs)
    args.resource, args.names = "nodes", names
    found = await metadata_edit.targets(args, ctx)

    async def act(target: metadata_edit.Target) -> None:
        words = []

        def change(node: objects_pb2.Node) -> None:
            taints, word = apply_taints(target.name, list(node.spec.taints), changes, args.overwrite)
            del node.spec.taints[:]
            node.spec.taints.extend(taints)
            words.append(word)

        await metadata_edit.edit_object(ctx, target, change)
        ctx.print(f"node/{target.name} {words[-1]}")

    return await metadata_edit.for_each(ctx, found, act)
