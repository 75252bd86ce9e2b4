"""The commands of pyctl: each takes the parsed arguments and a Context (the client and the
output streams) and returns the exit code.

Errors the user can act on are raised: ``CommandError`` for problems found on this side (a bad
manifest, a namespace conflict), ``pymaster.api.errors.ApiError`` from the server; ``main``
prints either on one line. Commands that act on several objects (apply, delete, get by names)
report a failure for one object, carry on with the rest and exit 1, as kubectl does.

Choices where kubectl's behaviour needs a server feature pykube lacks, or where the issue asked
for something else:

- ``get nodes`` shows NAME STATUS CPU MEMORY PODS AGE VERSION (usage from the agent's latest
  report) instead of kubectl's ROLES column;
- ``get -w`` prints the table, then one row per change, as kubectl does; after a "too old"
  watch it relists and prints the objects that changed meanwhile;
- ``delete --wait`` (the default) watches each deleted object until it is gone; ``--timeout``
  bounds the wait (0, the default, waits as long as it takes);
- ``apply`` and ``create`` read and validate every manifest before sending anything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import grpc

from pymaster.api import errors, manifest, objects_pb2, services_pb2
from pymaster.cli import describe as describers
from pymaster.cli import errors as cli_errors
from pymaster.cli import printers
from pymaster.client import Client

DEFAULT_NAMESPACE = "default"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
FORCE_WARNING = (
    "Warning: Immediate deletion does not wait for confirmation that the running resource has been "
    "terminated. The resource may continue to run on the cluster indefinitely."
)
# update_node is checked against metadata.resourceVersion; cordon re-reads and retries this often
# when the agent's status reports keep bumping it.
CORDON_ATTEMPTS = 5

Obj = objects_pb2.Pod | objects_pb2.Node


class CommandError(Exception):
    """A problem found by pyctl itself; printed as ``error: <message>``."""


@dataclass
class Context:
    """What a command works with: the client, the namespace flag and the output streams.

    The client is made by ``connect`` on first use, so that a command failing on its own input
    (a bad manifest, a missing file) says so even where no client config exists yet.
    """

    connect: Callable[[], Client]
    namespace: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    out_bytes: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    clock: Callable[[], float] = time.time
    _client: Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> Client:
        """The master's client (raises the client's config errors on first use)."""
        if self._client is None:
            self._client = self.connect()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def ns(self) -> str:
        """The namespace to work in: -n, else "default"."""
        return self.namespace or DEFAULT_NAMESPACE

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def print(self, line: str) -> None:
        self.write(line + "\n")

    def print_error(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()


def _key(obj: Obj) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


def _singular(resource: str) -> str:
    return resource[:-1]


def _is_fatal(exc: errors.ApiError) -> bool:
    """Errors after which a multi-object command stops instead of moving to the next object."""
    if isinstance(exc, errors.Unavailable):
        return cli_errors.is_connect_failure(exc)
    # A refused identity fails every call alike.
    return exc.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAUTHENTICATED)


# ---- reading the API, generically over pods and nodes ----


async def _get_one(client: Client, resource: str, name: str, namespace: str) -> Obj:
    if resource == "pods":
        return await client.get_pod(name, namespace)
    return await client.get_node(name)


async def _list(
    client: Client, resource: str, namespace: str, labels: str = "", fields: str = ""
) -> objects_pb2.PodList | objects_pb2.NodeList:
    if resource == "pods":
        return await client.list_pods(namespace, label_selector=labels, field_selector=fields)
    return await client.list_nodes(label_selector=labels, field_selector=fields)


def _watch(
    client: Client, resource: str, namespace: str, labels: str, fields: str, resource_version: str
) -> AsyncIterator[services_pb2.PodEvent | services_pb2.NodeEvent]:
    if resource == "pods":
        return client.watch_pods(namespace, labels, fields, resource_version)
    return client.watch_nodes(labels, fields, resource_version)


def _and_fields(*selectors: str) -> str:
    return ",".join(s for s in selectors if s)


# ---- get ----


class _Printer:
    """Prints objects in the format of ``-o``: a table (aligned across watch events), yaml,
    json or name."""

    def __init__(self, ctx: Context, args: argparse.Namespace, show_namespace: bool):
        self.ctx = ctx
        self.resource = args.resource
        self.output = args.output or ""
        self.flags: dict[str, bool] = {"wide": self.output == "wide", "labels": args.show_labels}
        if self.resource == "pods":
            self.flags["namespace"] = show_namespace
        self.headers = not args.no_headers
        self.widths: list[int] = []
        self.printed = 0

    @property
    def is_table(self) -> bool:
        return self.output in ("", "wide")

    def _header(self) -> list[str]:
        if self.resource == "pods":
            return printers.pod_header(**self.flags)
        return printers.node_header(**self.flags)

    def _row(self, obj: Any) -> list[str]:
        now = self.ctx.clock()
        if self.resource == "pods":
            return printers.pod_row(obj, now, **self.flags)
        return printers.node_row(obj, now, **self.flags)

    def print_all(self, objects: list[Any], resource_version: str, single: bool) -> None:
        """The answer of a plain get: one table, one document, or the names."""
        if self.is_table:
            rows = [self._row(obj) for obj in objects]
            lines = [self._header(), *rows] if self.headers else rows
            self.widths = printers.column_widths(lines)
            self.ctx.write(printers.format_table(self._header(), rows, headers=self.headers))
            self.printed = len(objects)
        elif self.output == "name":
            for obj in objects:
                self.print_one(obj)
        else:
            if single:
                document = manifest.to_dict(objects[0])
            else:
                document = printers.list_document([manifest.to_dict(o) for o in objects], resource_version)
            dump = printers.dump_json if self.output == "json" else printers.dump_yaml
            self.ctx.write(dump(document))

    def print_one(self, obj: Any) -> None:
        """One object as its own output: a table row (header first, once) or a document."""
        if self.is_table:
            if self.printed == 0 and self.headers:
                header = self._header()
                self.widths = printers.column_widths([header, self._row(obj)])
                self.ctx.write(printers.format_row(header, self.widths))
            self.ctx.write(printers.format_row(self._row(obj), self.widths))
        elif self.output == "name":
            self.ctx.print(printers.resource_name(_singular(self.resource), obj.metadata.name))
        elif self.output == "json":
            self.ctx.write(printers.dump_json(manifest.to_dict(obj)))
        else:
            self.ctx.write(("---\n" if self.printed else "") + printers.dump_yaml(manifest.to_dict(obj)))
        self.printed += 1


def _sorted(objects: Any) -> list[Any]:
    return sorted(objects, key=_key)


async def get(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl get pods|nodes [NAME...] [-n NS | -A] [-l SEL] [--field-selector SEL] [-o FMT] [-w]."""
    pods = args.resource == "pods"
    namespace = "" if args.all_namespaces or not pods else ctx.ns
    printer = _Printer(ctx, args, show_namespace=pods and args.all_namespaces)
    if args.watch:
        return await _get_watch(args, ctx, printer, namespace)
    code = 0
    if args.names:
        found: list[Obj] = []
        for name in args.names:
            try:
                found.append(await _get_one(ctx.client, args.resource, name, namespace))
            except errors.NotFound as exc:
                ctx.print_error(cli_errors.format_api_error(exc, ctx.client.server))
                code = 1
        if found:
            printer.print_all(found, "", single=len(args.names) == 1)
        return code
    listed = await _list(ctx.client, args.resource, namespace, args.selector, args.field_selector)
    items = _sorted(listed.items)
    if not items and printer.output in ("", "wide", "name"):
        where = f" in {namespace} namespace" if namespace else ""
        ctx.print_error(f"No resources found{where}.")
        return 0
    printer.print_all(items, listed.resource_version, single=False)
    return code


async def _get_watch(args: argparse.Namespace, ctx: Context, printer: _Printer, namespace: str) -> int:
    """get -w: the current objects, then one line (or document) per change, until Ctrl-C."""
    fields = _and_fields(args.field_selector, f"metadata.name={args.names[0]}" if args.names else "")
    client, resource = ctx.client, args.resource
    listed = await _list(client, resource, namespace, args.selector, fields)
    if args.names and not listed.items:
        raise errors.NotFound(f'{resource} "{args.names[0]}" not found')
    seen: dict[tuple[str, str], str] = {}
    items = _sorted(listed.items)
    if items and printer.is_table:
        printer.print_all(items, listed.resource_version, single=False)
    else:
        for obj in items:
            printer.print_one(obj)
    seen.update((_key(obj), obj.metadata.resource_version) for obj in items)
    version = listed.resource_version
    while True:
        try:
            async for event in _watch(client, resource, namespace, args.selector, fields, version):
                version = event.object.metadata.resource_version or version
                if event.type == services_pb2.BOOKMARK:
                    continue
                if event.type == services_pb2.DELETED:
                    seen.pop(_key(event.object), None)
                else:
                    seen[_key(event.object)] = event.object.metadata.resource_version
                printer.print_one(event.object)
            # The server ended the stream (it drops slow watchers): resume.
        except errors.Unavailable as exc:
            if cli_errors.is_connect_failure(exc):
                raise
            # The master went away under an open stream (it stops: "Cancelling all calls").
            raise CommandError(f"lost the watch on the pykube master at {client.server}: {exc}") from None
        except errors.TooOld:
            listed = await _list(client, resource, namespace, args.selector, fields)
            current = {_key(obj): obj for obj in listed.items}
            for key, obj in sorted(current.items()):
                if seen.get(key) != obj.metadata.resource_version:
                    printer.print_one(obj)
            seen = {key: obj.metadata.resource_version for key, obj in current.items()}
            version = listed.resource_version


# ---- describe ----


async def describe(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl describe pods|nodes [NAME...] [-n NS | -A] [-l SEL]."""
    pods = args.resource == "pods"
    namespace = "" if args.all_namespaces or not pods else ctx.ns
    code = 0
    objects: list[Obj] = []
    if args.names:
        for name in args.names:
            try:
                objects.append(await _get_one(ctx.client, args.resource, name, namespace))
            except errors.NotFound as exc:
                ctx.print_error(cli_errors.format_api_error(exc, ctx.client.server))
                code = 1
    else:
        objects = _sorted((await _list(ctx.client, args.resource, namespace, args.selector)).items)
        if not objects:
            where = f" in {namespace} namespace" if namespace else ""
            ctx.print_error(f"No resources found{where}.")
    for i, obj in enumerate(objects):
        if i:
            ctx.write("\n\n")
        if pods:
            ctx.write(describers.describe_pod(obj, ctx.clock()))
        else:
            bound = await ctx.client.list_pods("", field_selector=f"spec.nodeName={obj.metadata.name}")
            ctx.write(describers.describe_node(obj, _sorted(bound.items), ctx.clock()))
    return code


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


def load_manifests(ctx: Context, filenames: list[str]) -> list[objects_pb2.Pod]:
    """Every pod of the -f manifests, validated, with its namespace settled: -n for pods without
    one, "default" without -n; a pod naming another namespace than -n is an error (kubectl's).

    Raises:
        CommandError: an unreadable file, an invalid manifest, a namespace conflict, or no pods.
    """
    sources = _read_manifests(ctx, filenames)
    pods: list[objects_pb2.Pod] = []
    for source, text in sources:
        try:
            loaded = manifest.load_pods(text)
        except errors.ValidationError as exc:
            raise CommandError(f"{source}: {exc}" if len(sources) > 1 else str(exc)) from None
        for pod in loaded:
            meta = pod.metadata
            if ctx.namespace and meta.namespace and meta.namespace != ctx.namespace:
                raise CommandError(
                    f'the namespace from the provided object "{meta.namespace}" does not match the '
                    f'namespace "{ctx.namespace}". You must pass \'--namespace={meta.namespace}\' '
                    "to perform this operation."
                )
            meta.namespace = meta.namespace or ctx.ns
        pods.extend(loaded)
    if not pods:
        raise CommandError("no objects passed to apply")
    return pods


async def apply(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl apply -f FILE|DIR|- [-n NS]: prints ``pod/web created|configured|unchanged``."""

    async def send(pod: objects_pb2.Pod) -> str:
        return (await ctx.client.apply_pod(pod)).action

    return await _send_each(ctx, load_manifests(ctx, args.filename), send)


async def create(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl create -f FILE|DIR|- [-n NS]: like apply, but an existing pod is an error."""

    async def send(pod: objects_pb2.Pod) -> str:
        await ctx.client.create_pod(pod)
        return "created"

    return await _send_each(ctx, load_manifests(ctx, args.filename), send)


async def _send_each(
    ctx: Context, pods: list[objects_pb2.Pod], send: Callable[[objects_pb2.Pod], Awaitable[str]]
) -> int:
    """Sends every (already validated) pod, printing ``pod/NAME ACTION`` or the error of each;
    returns 1 if any failed. A fatal error (master unreachable, not authenticated) stops it."""
    code = 0
    for pod in pods:
        try:
            action = await send(pod)
        except errors.ApiError as exc:
            if _is_fatal(exc):
                raise
            ctx.print_error(cli_errors.format_api_error(exc, ctx.client.server))
            code = 1
            continue
        ctx.print(f"pod/{pod.metadata.name} {action}")
    return code


# ---- delete ----


@dataclass(frozen=True)
class _Deleted:
    resource: str
    namespace: str
    name: str
    uid: str


async def _delete_targets(args: argparse.Namespace, ctx: Context) -> list[tuple[str, str, str]]:
    """(resource, namespace, name) of everything the command line names."""
    if args.filename:
        return [("pods", p.metadata.namespace, p.metadata.name) for p in load_manifests(ctx, args.filename)]
    if args.names:
        return [(args.resource, ctx.ns, name) for name in args.names]
    listed = await _list(ctx.client, args.resource, ctx.ns, args.selector)
    return [(args.resource, ctx.ns, obj.metadata.name) for obj in _sorted(listed.items)]


async def delete(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl delete pods NAME... | -l SEL | --all | -f FILE [--grace-period N] [--force] [--wait]."""
    # kubectl: --force without a grace period means 0, and only that combination skips the agent.
    grace: int | None = None if args.grace_period < 0 else args.grace_period
    immediate = args.force and (grace is None or grace == 0)
    if immediate:
        ctx.print_error(FORCE_WARNING)
    targets = await _delete_targets(args, ctx)
    if not targets:
        ctx.print_error(f"No resources found in {ctx.ns} namespace." if args.resource == "pods" else
                        "No resources found")
        return 0
    code = 0
    deleted: list[_Deleted] = []
    for resource, namespace, name in targets:
        try:
            if resource == "pods":
                obj: Obj = await ctx.client.delete_pod(name, namespace, grace, args.force)
            else:
                obj = await ctx.client.delete_node(name)
        except errors.ApiError as exc:
            if isinstance(exc, errors.NotFound) and args.ignore_not_found:
                continue
            if _is_fatal(exc):
                raise
            ctx.print_error(cli_errors.format_api_error(exc, ctx.client.server))
            code = 1
            continue
        ctx.print(f'{_singular(resource)} "{name}" {"force deleted" if immediate else "deleted"}')
        deleted.append(_Deleted(resource, namespace, name, obj.metadata.uid))
    if args.wait and deleted:
        waits = asyncio.gather(*(_wait_gone(ctx.client, d) for d in deleted))
        try:
            await asyncio.wait_for(waits, args.timeout or None)
        except TimeoutError:
            pending = ", ".join(f"{d.resource}/{d.name}" for d in deleted)
            raise CommandError(f"timed out waiting for the condition on {pending}") from None
    return code


async def _wait_gone(client: Client, target: _Deleted) -> None:
    """Returns once the object is gone from the store: list it, then watch from that list's
    version until a DELETED event (or a new object of the same name, the old one being gone)."""
    fields = f"metadata.name={target.name}"
    namespace = target.namespace if target.resource == "pods" else ""

    def is_ours(obj: Obj) -> bool:
        return not target.uid or obj.metadata.uid == target.uid

    while True:
        listed = await _list(client, target.resource, namespace, fields=fields)
        if not any(is_ours(obj) for obj in listed.items):
            return
        try:
            events = _watch(client, target.resource, namespace, "", fields, listed.resource_version)
            async for event in events:
                if event.type == services_pb2.BOOKMARK:
                    continue
                if event.type == services_pb2.DELETED or not is_ours(event.object):
                    return
        except errors.TooOld:
            pass  # relist


# ---- logs ----


async def logs(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl logs POD [-c CONTAINER] [-f] [--tail N] [--timestamps]: the bytes as they come."""
    stream = ctx.client.pod_logs(
        args.pod,
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
    verb = "cordoned" if unschedulable else "uncordoned"
    for name in args.nodes:
        for attempt in range(CORDON_ATTEMPTS):
            node = await ctx.client.get_node(name)
            if node.spec.unschedulable == unschedulable:
                ctx.print(f"node/{name} already {verb}")
                break
            node.spec.unschedulable = unschedulable
            try:
                await ctx.client.update_node(node)
            except errors.Conflict:
                if attempt == CORDON_ATTEMPTS - 1:
                    raise
                continue
            ctx.print(f"node/{name} {verb}")
            break
    return 0


async def cordon(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl cordon NODE...: no new pods are scheduled there."""
    return await _set_unschedulable(args, ctx, True)


async def uncordon(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl uncordon NODE...: the nodes take new pods again."""
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
