"""pyctl's reading verbs, for every kind of ``pymaster.cli.kinds``: ``get`` (tables, ``-o
wide|yaml|json|name``, ``-w``) and ``describe`` (with the events about each object).

Choices where kubectl's behaviour needs a server feature pykube lacks, or where the issue asked
for something else:

- ``get nodes`` shows NAME STATUS CPU MEMORY PODS AGE VERSION (usage from the agent's latest
  report) instead of kubectl's ROLES column;
- ``get events`` lists events in the order they last happened, as ``kubectl events`` does
  (``kubectl get events`` leaves them in the server's order);
- ``get -w`` prints the table, then one row per change, as kubectl does; after a "too old"
  watch it relists and prints the objects that changed meanwhile;
- ``describe`` lists the events about an object by its kind, name and namespace and keeps those
  of its uid (or of none), as kubectl does; when the events cannot be listed the Events section
  is left out;
- several kinds at once (``get cm,secrets``, ``get pod/web node/n1``) print one table per kind,
  a blank line between them, names as ``configmap/NAME``; ``-o yaml|json`` prints one List of
  them all, as kubectl does (``-w`` takes one kind).
"""

from __future__ import annotations

import argparse
from typing import Any

from pymaster.api import errors, manifest, services_pb2
from pymaster.api.kinds import EVENTS, Kind
from pymaster.cli import errors as cli_errors
from pymaster.cli import kinds, printers
from pymaster.cli.context import CommandError, Context, is_fatal
from pymaster.client import Client


def _key(obj: Any) -> tuple[str, str]:
    return obj.metadata.namespace, obj.metadata.name


def and_fields(*selectors: str) -> str:
    """Field selectors joined: every one must match."""
    return ",".join(s for s in selectors if s)


class _Printer:
    """Prints objects of one kind in the format of ``-o``: a table (aligned across watch events),
    yaml, json or name."""

    def __init__(self, ctx: Context, args: argparse.Namespace, kind: kinds.CliKind, with_kind: bool = False):
        self.ctx = ctx
        self.kind = kind
        # Several kinds in one answer: NAME cells read "configmap/NAME", as kubectl prints them.
        self.with_kind = with_kind
        self.output = args.output or ""
        self.wide = self.output == "wide"
        self.columns = {"namespace": kind.api.namespaced and args.all_namespaces, "labels": args.show_labels}
        self.headers = not args.no_headers
        self.widths: list[int] = []
        self.printed = 0

    @property
    def is_table(self) -> bool:
        return self.output in ("", "wide")

    def _header(self) -> list[str]:
        return printers.table_header(self.kind.header(wide=self.wide), **self.columns)

    def _row(self, obj: Any) -> list[str]:
        cells = self.kind.row(obj, self.ctx.clock(), wide=self.wide)
        if self.with_kind and self.kind.header(wide=self.wide)[0] == "NAME":
            cells[0] = printers.resource_name(self.kind.qualified, cells[0])
        return printers.table_row(obj.metadata, cells, **self.columns)

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
            self.ctx.print(printers.resource_name(self.kind.qualified, obj.metadata.name))
        elif self.output == "json":
            self.ctx.write(printers.dump_json(manifest.to_dict(obj)))
        else:
            self.ctx.write(("---\n" if self.printed else "") + printers.dump_yaml(manifest.to_dict(obj)))
        self.printed += 1


def _namespace(args: argparse.Namespace, ctx: Context, kind: kinds.CliKind) -> str:
    """Where to read: "" (all) with -A or for a cluster-scoped kind, else -n or "default"."""
    return "" if args.all_namespaces or not kind.api.namespaced else ctx.ns


def _no_resources(ctx: Context, namespace: str) -> None:
    where = f" in {namespace} namespace" if namespace else ""
    ctx.print_error(f"No resources found{where}.")


async def _get_by_names(
    ctx: Context, kind: kinds.CliKind, names: list[str], namespace: str
) -> tuple[list[Any], int]:
    """The named objects, and 1 when one of them was not found (said on stderr) else 0."""
    found: list[Any] = []
    code = 0
    for name in names:
        try:
            found.append(await ctx.client.get(kind.resource, name, namespace))
        except errors.NotFound as exc:
            ctx.print_api_error(exc)
            code = 1
    return found, code


async def _objects(
    args: argparse.Namespace, ctx: Context, kind: kinds.CliKind, names: list[str]
) -> tuple[list[Any], int]:
    """The named objects of a kind (and 1 when one was not found), else its selected objects."""
    namespace = _namespace(args, ctx, kind)
    if names:
        return await _get_by_names(ctx, kind, names, namespace)
    listed = await ctx.client.list(kind.resource, namespace, args.selector, args.field_selector)
    return sorted(listed.items, key=kind.sort_key), 0


async def _get_kinds(args: argparse.Namespace, ctx: Context) -> int:
    """get of several kinds: a table per kind (kinds without objects left out), or one List."""
    code, found, tables, documents = 0, 0, 0, []
    output = args.output or ""
    for resource, names in args.groups:
        kind = kinds.of(resource)
        objects, failed = await _objects(args, ctx, kind, names)
        code |= failed
        found += len(objects)
        printer = _Printer(ctx, args, kind, with_kind=True)
        if not objects:
            continue
        if printer.is_table:
            ctx.write("\n" if tables else "")
            printer.print_all(objects, "", single=False)
            tables += 1
        elif output == "name":
            for obj in objects:
                printer.print_one(obj)
        else:
            documents.extend(manifest.to_dict(obj) for obj in objects)
    if output in ("yaml", "json"):
        dump = printers.dump_json if output == "json" else printers.dump_yaml
        ctx.write(dump(printers.list_document(documents, "")))
    elif not found and not any(names for _, names in args.groups):
        namespaced = any(kinds.of(resource).api.namespaced for resource, _ in args.groups)
        _no_resources(ctx, ctx.ns if namespaced and not args.all_namespaces else "")
    return code


async def get(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl get TYPE[,TYPE...] [NAME...] [-n NS | -A] [-l SEL] [--field-selector SEL] [-o FMT] [-w]."""
    if len(args.groups) > 1:
        return await _get_kinds(args, ctx)
    kind = kinds.of(args.resource)
    namespace = _namespace(args, ctx, kind)
    printer = _Printer(ctx, args, kind)
    if args.watch:
        return await _get_watch(args, ctx, printer, namespace)
    if args.names:
        found, code = await _get_by_names(ctx, kind, args.names, namespace)
        if found:
            printer.print_all(found, "", single=len(args.names) == 1)
        return code
    listed = await ctx.client.list(kind.resource, namespace, args.selector, args.field_selector)
    items = sorted(listed.items, key=kind.sort_key)
    if not items and printer.output in ("", "wide", "name"):
        _no_resources(ctx, namespace)
        return 0
    printer.print_all(items, listed.resource_version, single=False)
    return 0


async def _get_watch(args: argparse.Namespace, ctx: Context, printer: _Printer, namespace: str) -> int:
    """get -w: the current objects, then one line (or document) per change, until Ctrl-C."""
    fields = and_fields(args.field_selector, f"metadata.name={args.names[0]}" if args.names else "")
    client, kind = ctx.client, printer.kind
    listed = await client.list(kind.resource, namespace, args.selector, fields)
    if args.names and not listed.items:
        raise errors.NotFound(f'{kind.resource} "{args.names[0]}" not found')
    seen: dict[tuple[str, str], str] = {}
    items = sorted(listed.items, key=kind.sort_key)
    if items and printer.is_table:
        printer.print_all(items, listed.resource_version, single=False)
    else:
        for obj in items:
            printer.print_one(obj)
    seen.update((_key(obj), obj.metadata.resource_version) for obj in items)
    version = listed.resource_version
    while True:
        try:
            async for event in client.watch(kind.resource, namespace, args.selector, fields, version):
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
            listed = await client.list(kind.resource, namespace, args.selector, fields)
            current = {_key(obj): obj for obj in listed.items}
            for key in sorted(current, key=lambda k: kind.sort_key(current[k])):
                if seen.get(key) != current[key].metadata.resource_version:
                    printer.print_one(current[key])
            seen = {key: obj.metadata.resource_version for key, obj in current.items()}
            version = listed.resource_version


# ---- describe ----


async def events_about(client: Client, kind: Kind, obj: Any) -> list[Any] | None:
    """The events about an object of ``kind`` (kubectl's search): by its kind, name and namespace,
    those of its uid or of none; None when they cannot be listed (the caller leaves the section
    out)."""
    meta = obj.metadata
    fields = [f"involvedObject.kind={kind.kind}", f"involvedObject.name={meta.name}"]
    if kind.namespaced:
        fields.append(f"involvedObject.namespace={meta.namespace}")
    try:
        listed = await client.list(EVENTS.resource, meta.namespace if kind.namespaced else "",
                                   field_selector=",".join(fields))
    except errors.ApiError as exc:
        if is_fatal(exc):
            raise
        return None
    return [e for e in listed.items if e.involved_object.uid in ("", meta.uid)]


async def describe(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl describe TYPE[,TYPE...] [NAME...] [-n NS | -A] [-l SEL]: each object, then the events
    about it."""
    code, written = 0, 0
    for resource, names in args.groups:
        kind = kinds.of(resource)
        namespace = _namespace(args, ctx, kind)
        if names:
            objects, failed = await _get_by_names(ctx, kind, names, namespace)
            code |= failed
        else:
            listed = await ctx.client.list(kind.resource, namespace, args.selector)
            objects = sorted(listed.items, key=kinds.by_name)
            if not objects and len(args.groups) == 1:
                _no_resources(ctx, namespace)
        for obj in objects:
            ctx.write("\n\n" if written else "")
            events = await events_about(ctx.client, kind.api, obj)
            ctx.write(await kind.describe(ctx.client, obj, events, ctx.clock()))
            written += 1
    return code
