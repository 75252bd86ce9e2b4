"""pyctl's writing verbs and the rest: ``apply``, ``create`` and ``delete`` for every kind of
``pymaster.cli.kinds`` (manifests may mix kinds), ``logs``, ``cordon``/``uncordon`` and
``version``. Each takes the parsed arguments and a ``Context`` and returns the exit code; the
reading verbs (``get``, ``describe``) are in ``pymaster.cli.get``.

Choices where kubectl's behaviour needs a server feature pykube lacks, or where the issue asked
for something else:

- ``delete --wait`` (the default) watches each deleted object until it is gone; ``--timeout``
  bounds the wait (0, the default, waits as long as it takes);
- ``apply`` and ``create`` read and validate every manifest before sending anything; what the
  server refuses for a kind (applying an event or a node: MethodNotAllowed) is printed for that
  object, and the others go on.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from pymaster.api import errors, manifest, services_pb2
from pymaster.api.kinds import kind_of_message
from pymaster.cli import kinds, metadata_edit, workload_lookup
from pymaster.cli.context import CommandError, Context, is_fatal
from pymaster.client import Client

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
FORCE_WARNING = (
    "Warning: Immediate deletion does not wait for confirmation that the running resource has been "
    "terminated. The resource may continue to run on the cluster indefinitely."
)
# kubectl's deprecated boolean --cascade values and what replaces them.
CASCADE_BOOLEANS = {"true": "background", "false": "orphan"}


# ---- apply / create / delete -f ----


def _read_manifests(ctx: Context, filenames: list[str]) -> list[tuple[str, str]]:
    """(source, text) of every manifest named by -f: files, directories (their .yaml, .yml and
    .json files, sorted) and "-" for stdin."""
    sources: list[tuple[str, str]] = []
    for filename in filenames:
        if filename == "-":
            sources.append(("-", ctx.stdin.read()))
            continue
        path = Path(filename)
        try:
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
                sources.extend((str(p), p.read_text(encoding="utf-8")) for p in files)
            else:
                sources.append((filename, path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CommandError(f'the path "{filename}" does not exist') from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f'cannot read "{filename}": {exc}') from None
    return sources


def load_manifests(ctx: Context, filenames: list[str], verb: str) -> list[Message]:
    """Every object of the -f manifests (any kind pyctl knows), validated, with its namespace
    settled: a namespaced object without one gets -n, else "default"; one naming another
    namespace than -n is an error (kubectl's). Cluster-scoped objects have none.

    Raises:
        CommandError: an unreadable file, an invalid manifest, a namespace conflict, or no objects.
    """
    sources = _read_manifests(ctx, filenames)
    objects: list[Message] = []
    for source, text in sources:
        try:
            loaded = manifest.load(text, [kind.api for kind in kinds.KINDS.values()])
        except errors.ValidationError as exc:
            raise CommandError(f"{source}: {exc}" if len(sources) > 1 else str(exc)) from None
        for obj in loaded:
            meta = obj.metadata
            if not kind_of_message(obj).namespaced:
                continue
            if ctx.namespace and meta.namespace and meta.namespace != ctx.namespace:
                raise CommandError(
                    f'the namespace from the provided object "{meta.namespace}" does not match the '
                    f'namespace "{ctx.namespace}". You must pass \'--namespace={meta.namespace}\' '
                    "to perform this operation."
                )
            meta.namespace = meta.namespace or ctx.ns
        objects.extend(loaded)
    if not objects:
        raise CommandError(f"no objects passed to {verb}")
    return objects


async def apply(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl apply -f FILE|DIR|- [-n NS]: prints ``pod/web created|configured|unchanged``."""
    return await _send_each(ctx, load_manifests(ctx, args.filename, "apply"), ctx.client.apply)


async def create(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create -f FILE|DIR|- [-n NS]: like apply, but an existing object is an error."""

    async def send(obj: Message) -> tuple[Message, str]:
        return await ctx.client.create(obj), "created"

    return await _send_each(ctx, load_manifests(ctx, args.filename, "create"), send)


async def _send_each(
    ctx: Context, objects: list[Message], send: Callable[[Message], Awaitable[tuple[Message, str]]]
) -> int:
    """Sends every (already validated) object, printing ``pod/NAME ACTION`` or the error of
    each; returns 1 if any failed. A fatal error (master unreachable, not authenticated) stops it."""
    code = 0
    for obj in objects:
        try:
            stored, action = await send(obj)
        except errors.ApiError as exc:
            if is_fatal(exc):
                raise
            ctx.print_api_error(exc)
            code = 1
            continue
        ctx.print(f"{kinds.of(kind_of_message(stored).resource).qualified}/{stored.metadata.name} {action}")
    return code


# ---- delete ----


@dataclass(frozen=True)
class _Target:
    kind: kinds.CliKind
    namespace: str  # "" for a cluster-scoped kind
    name: str


@dataclass(frozen=True)
class _Deleted:
    target: _Target
    uid: str


async def _delete_targets(args: argparse.Namespace, ctx: Context) -> list[_Target]:
    """Everything the command line names: by -f, by name, or by -l/--all."""
    if args.filename:
        targets = []
        for obj in load_manifests(ctx, args.filename, "delete"):
            if not obj.metadata.name:
                raise CommandError("resource name may not be empty")
            targets.append(_Target(kinds.of(kind_of_message(obj).resource), obj.metadata.namespace,
                                   obj.metadata.name))
        return targets
    if args.names:
        return [
            _Target(kinds.of(resource), ctx.ns if kinds.of(resource).api.namespaced else "", name)
            for resource, names in args.groups for name in names
        ]
    kind = kinds.of(args.resource)
    namespace = ctx.ns if kind.api.namespaced else ""
    listed = await ctx.client.list(kind.resource, namespace, args.selector)
    return [_Target(kind, namespace, obj.metadata.name) for obj in sorted(listed.items, key=kinds.by_name)]


async def delete(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl delete TYPE NAME... | -l SEL | --all | -f FILE [--grace-period N] [--force] [--wait]."""
    # kubectl: --force without a grace period means 0, and only that combination skips the agent.
    grace: int | None = None if args.grace_period < 0 else args.grace_period
    immediate = args.force and (grace is None or grace == 0)
    if immediate:
        ctx.print_error(FORCE_WARNING)
    if args.cascade in CASCADE_BOOLEANS:
        replacement = CASCADE_BOOLEANS[args.cascade]
        ctx.print_error(f"warning: --cascade={args.cascade} is deprecated (boolean value) and can be "
                        f"replaced with --cascade={replacement}.")
    targets = await _delete_targets(args, ctx)
    if not targets:
        namespaced = kinds.of(args.resource).api.namespaced
        ctx.print_error(f"No resources found in {ctx.ns} namespace." if namespaced else "No resources found")
        return 0
    code = 0
    deleted: list[_Deleted] = []
    for target in targets:
        resource, namespace, name = target.kind.resource, target.namespace, target.name
        try:
            obj = await ctx.client.delete(resource, name, namespace, grace, args.force,
                                          propagation_policy=args.propagation_policy)
        except errors.ApiError as exc:
            if isinstance(exc, errors.NotFound) and args.ignore_not_found:
                continue
            if is_fatal(exc):
                raise
            ctx.print_api_error(exc)
            code = 1
            continue
        ctx.print(f'{target.kind.qualified} "{name}" {"force deleted" if immediate else "deleted"}')
        deleted.append(_Deleted(target, obj.metadata.uid))
    if args.wait and deleted:
        waits = asyncio.gather(*(_wait_gone(ctx.client, d) for d in deleted))
        try:
            await asyncio.wait_for(waits, args.timeout or None)
        except TimeoutError:
            pending = ", ".join(f"{d.target.kind.resource}/{d.target.name}" for d in deleted)
            raise CommandError(f"timed out waiting for the condition on {pending}") from None
    return code


async def _wait_gone(client: Client, deleted: _Deleted) -> None:
    """Returns once the object is gone from the store: list it, then watch from that list's
    version until a DELETED event (or a new object of the same name, the old one being gone)."""
    target = deleted.target
    resource, namespace, fields = target.kind.resource, target.namespace, f"metadata.name={target.name}"

    def is_ours(obj: Any) -> bool:
        return not deleted.uid or obj.metadata.uid == deleted.uid

    while True:
        listed = await client.list(resource, namespace, field_selector=fields)
        if not any(is_ours(obj) for obj in listed.items):
            return
        try:
            async for event in client.watch(resource, namespace, "", fields, listed.resource_version):
                if event.type == services_pb2.BOOKMARK:
                    continue
                if event.type == services_pb2.DELETED or not is_ours(event.object):
                    return
        except errors.TooOld:
            pass  # relist


# ---- logs ----


async def _owner_pod(ctx: Context, resource: str, word: str) -> str:
    """The pod ``logs TYPE/NAME`` reads: the first its selector matches (kubectl's choice)."""
    kind, name = kinds.of(resource), word.partition("/")[2]
    owner = await ctx.client.get(resource, name, ctx.ns)
    pod = await workload_lookup.first_pod(ctx.client, owner)
    if pod is None:
        raise CommandError(f"timed out waiting for the condition: no pods of {kind.qualified}/{name}")
    return pod.metadata.name


async def logs(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl logs POD|TYPE/NAME [-c CONTAINER] [-f] [--tail N] [--timestamps]: the bytes as they come."""
    pod = await _owner_pod(ctx, args.owner, args.pod) if args.owner else args.pod
    stream = ctx.client.pod_logs(
        pod,
        ctx.ns,
        container=args.container,
        follow=args.follow,
        tail_lines=None if args.tail < 0 else args.tail,
        timestamps=args.timestamps,
    )
    try:
        async for chunk in stream:
            ctx.out_bytes.write(chunk)
            ctx.out_bytes.flush()
    except errors.ValidationError as exc:
        if exc.field != "container":
            raise
        raise CommandError(exc.detail) from None  # kubectl: "a container name must be specified ..."
    return 0


# ---- cordon / uncordon ----


async def _set_unschedulable(args: argparse.Namespace, ctx: Context, unschedulable: bool) -> int:
    """Sets spec.unschedulable of the nodes named (or selected by ``-l``); each node's error is
    printed and the others are done, as kubectl."""
    verb = "cordoned" if unschedulable else "uncordoned"
    args.resource, args.names = "nodes", args.nodes
    found = await metadata_edit.targets(args, ctx)

    async def act(target: metadata_edit.Target) -> None:
        def change(node: Message) -> None:
            node.spec.unschedulable = unschedulable

        current, _ = await metadata_edit.edit_object(ctx, target, change)
        already = "already " if current.spec.unschedulable == unschedulable else ""
        ctx.print(f"node/{target.name} {already}{verb}")

    return await metadata_edit.for_each(ctx, found, act)


async def cordon(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl cordon NODE... (or -l SELECTOR): no new pods are scheduled there."""
    return await _set_unschedulable(args, ctx, True)


async def uncordon(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl uncordon NODE... (or -l SELECTOR): the nodes take new pods again."""
    return await _set_unschedulable(args, ctx, False)


# ---- version ----


async def version(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl version: the client's version (the API has no version call yet)."""
    try:
        client_version = metadata.version("pykube")
    except metadata.PackageNotFoundError:
        client_version = "unknown"
    ctx.print(f"Client Version: v{client_version}")
    ctx.print(f"Server: {ctx.client.server}")
    return 0
