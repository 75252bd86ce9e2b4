"""``pyctl label`` and ``pyctl annotate``: kubectl's commands of those names, for every kind an
update may change (pods, nodes, ConfigMaps, Secrets; the server refuses the others, and its error
is printed).

    pyctl label TYPE NAME... KEY=VALUE... KEY-... [--overwrite] [-l SEL | --all]
    pyctl annotate TYPE/NAME KEY=VALUE KEY- [--overwrite]

kubectl's rules: the resources come first, then the changes (``KEY=VALUE`` sets, ``KEY-``
removes); a key may not be both set and removed; without ``--overwrite`` a label that already has
a value (any value) is an error, an annotation only when the value differs. Each object is read,
changed and updated against the resourceVersion it was read at (a concurrent write makes it read
and try again), and reported as ``pod/web labeled`` (``not labeled`` when nothing changed,
``unlabeled`` when labels were only removed) or ``pod/web annotated``. An error about one object
is printed and the others go on; the exit code is then 1.

``edit_object`` (read, change, update with retries) is shared with ``pymaster.cli.patch``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import errors
from pymaster.api.checks import check_label_value
from pymaster.cli import kinds
from pymaster.cli.context import CommandError, Context, is_fatal

ATTEMPTS = 8  # reads and updates of one object when concurrent writes keep changing it
CONFLICT_BACKOFF_SECONDS = 0.02  # before the second attempt, doubling


def is_pair(word: str) -> bool:
    """Whether a word of label or annotate is a change: "KEY=VALUE" or "KEY-"."""
    return ("=" in word and not word.startswith("=")) or (word.endswith("-") and word != "-")


def split_pairs(
    words: Sequence[str], what: str, is_change: Callable[[str], bool] = is_pair
) -> tuple[list[str], list[str]]:
    """kubectl's GetResourcesAndPairs: (resource words, change words); every resource word must
    come before the first change (``is_change``: by default a word with "=", or ending in "-").

    Raises:
        CommandError: a resource word after a change.
    """
    resources: list[str] = []
    pairs: list[str] = []
    for word in words:
        if is_change(word):
            pairs.append(word)
        elif pairs:
            raise CommandError(f"all resources must be specified before {what} changes: {word}")
        else:
            resources.append(word)
    return resources, pairs


def parse_label_changes(pairs: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(labels to set, labels to remove) from ``KEY=VALUE`` and ``KEY-`` words.

    Raises:
        CommandError: kubectl's messages for a malformed word or value.
    """
    new: dict[str, str] = {}
    remove: list[str] = []
    for pair in pairs:
        if "=" in pair:
            parts = pair.split("=")
            if len(parts) != 2:
                raise CommandError(f"invalid label spec: {pair}")
            try:
                check_label_value("", parts[1])
            except errors.ValidationError as exc:
                raise CommandError(f"invalid label value: {json.dumps(pair)}: {exc.detail}") from None
            new[parts[0]] = parts[1]
        elif pair.endswith("-"):
            remove.append(pair[:-1])
        else:
            raise CommandError(f"unknown label spec: {pair}")
    if any(key in new for key in remove):
        raise CommandError("can not both modify and remove a label in the same command")
    if not new and not remove:
        raise CommandError("at least one label update is required")
    return new, remove


def parse_annotation_changes(pairs: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(annotations to set, annotations to remove); values may hold "=".

    Raises:
        CommandError: kubectl's messages for a malformed word.
    """
    new: dict[str, str] = {}
    remove: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if sep and key:
            new[key] = value
        elif not sep and pair.endswith("-"):
            remove.append(pair[:-1])
        else:
            raise CommandError(f"invalid annotation format: {pair}")
    both = sorted(key for key in remove if key in new)
    if both:
        what = "the following annotation(s) in the same command"
        raise CommandError(f"can not both modify and remove {what}: {', '.join(both)}")
    if not new and not remove:
        raise CommandError("at least one annotation update is required")
    return new, remove


def change_labels(
    labels: dict[str, str], new: dict[str, str], remove: Sequence[str], overwrite: bool
) -> None:
    """kubectl label's change of a label map, in place.

    Raises:
        CommandError: a label to set already has a value and ``overwrite`` is false.
    """
    if not overwrite:
        taken = [f"'{key}' already has a value ({labels[key]}), and --overwrite is false"
                 for key in sorted(new) if key in labels]
        if taken:
            raise CommandError("; ".join(taken) if len(taken) == 1 else f"[{', '.join(taken)}]")
    labels.update(new)
    for key in remove:
        labels.pop(key, None)


def change_annotations(
    annotations: dict[str, str], new: dict[str, str], remove: Sequence[str], overwrite: bool
) -> None:
    """kubectl annotate's change of an annotation map, in place.

    Raises:
        CommandError: an annotation to set has another value and ``overwrite`` is false.
    """
    if not overwrite:
        taken = [f"'{key}' already has a value ({annotations[key]})"
                 for key in sorted(new) if key in annotations and annotations[key] != new[key]]
        if taken:
            raise CommandError(f"--overwrite is false but found the following declared annotation(s): "
                               f"{'; '.join(taken)}")
    annotations.update(new)
    for key in remove:
        annotations.pop(key, None)


def label_outcome(old: dict[str, str], new: dict[str, str], overwrite: bool) -> str:
    """kubectl's word for what a label command did to one object."""
    if old == new:
        return "not labeled"
    if not overwrite and len(json.dumps(new)) < len(json.dumps(old)):
        return "unlabeled"
    return "labeled"


@dataclass(frozen=True)
class Target:
    kind: kinds.CliKind
    namespace: str  # "" for a cluster-scoped kind
    name: str

    @property
    def title(self) -> str:
        """kubectl's ``pod/web``, ``deployment.apps/web``."""
        return f"{self.kind.qualified}/{self.name}"


async def targets(args: argparse.Namespace, ctx: Context) -> list[Target]:
    """The objects named on the command line (``args.resource`` and ``args.names``), or selected
    by ``-l``/``--all``."""
    kind = kinds.of(args.resource)
    namespace = ctx.ns if kind.api.namespaced else ""
    if args.names:
        return [Target(kind, namespace, name) for name in args.names]
    listed = await ctx.client.list(kind.resource, namespace, getattr(args, "selector", ""))
    return [Target(kind, namespace, obj.metadata.name) for obj in sorted(listed.items, key=kinds.by_name)]


async def edit_object(
    ctx: Context, target: Target, change: Callable[[Message], None]
) -> tuple[Message, Message]:
    """Reads the object, applies ``change`` to a copy (in place) and updates it against the
    resourceVersion read, reading again after a conflict (at most ``ATTEMPTS`` times).

    Returns:
        (the object as read, the object stored; the one read when ``change`` changed nothing).

    Raises:
        CommandError: from ``change``; ApiError: from the server.
    """
    for attempt in range(ATTEMPTS):
        current = await ctx.client.get(target.kind.resource, target.name, target.namespace)
        desired = type(current)()
        desired.CopyFrom(current)
        change(desired)
        if desired == current:
            return current, current
        try:
            return current, await ctx.client.update(desired)
        except errors.Conflict:
            if attempt == ATTEMPTS - 1:
                raise
            # A controller writing the object's status keeps moving its resourceVersion: let it settle.
            await asyncio.sleep(min(CONFLICT_BACKOFF_SECONDS * 2**attempt, 1.0))
    raise AssertionError("unreachable")


async def for_each(ctx: Context, found: list[Target], act: Callable[[Target], Awaitable[None]]) -> int:
    """Runs ``act`` (a coroutine function) on every target; prints each failure and goes on
    (fatal API errors stop it). Returns the exit code."""
    code = 0
    for target in found:
        try:
            await act(target)
        except CommandError as exc:
            ctx.print_error(f"error: {exc}")
            code = 1
        except errors.ApiError as exc:
            if is_fatal(exc):
                raise
            ctx.print_api_error(exc)
            code = 1
    return code


async def label(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl label TYPE NAME... KEY=VALUE... KEY-... [--overwrite] [-l SEL | --all]."""
    new, remove = parse_label_changes(args.pairs)

    async def act(target: Target) -> None:
        def change(obj: Message) -> None:
            labels = dict(obj.metadata.labels)
            change_labels(labels, new, remove, args.overwrite)
            obj.metadata.ClearField("labels")
            obj.metadata.labels.update(labels)

        current, stored = await edit_object(ctx, target, change)
        for key in remove:
            if key not in current.metadata.labels:
                ctx.print(f'label "{key}" not found.')
        outcome = label_outcome(dict(current.metadata.labels), dict(stored.metadata.labels), args.overwrite)
        ctx.print(f"{target.title} {outcome}")

    return await for_each(ctx, await targets(args, ctx), act)


async def annotate(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl annotate TYPE NAME... KEY=VALUE... KEY-... [--overwrite] [-l SEL | --all]."""
    new, remove = parse_annotation_changes(args.pairs)

    async def act(target: Target) -> None:
        def change(obj: Message) -> None:
            annotations = dict(obj.metadata.annotations)
            change_annotations(annotations, new, remove, args.overwrite)
            obj.metadata.ClearField("annotations")
            obj.metadata.annotations.update(annotations)

        await edit_object(ctx, target, change)
        ctx.print(f"{target.title} annotated")

    return await for_each(ctx, await targets(args, ctx), act)
