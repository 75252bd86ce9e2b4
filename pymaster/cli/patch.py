"""``pyctl patch TYPE NAME -p PATCH [--type merge] [--subresource status]``: kubectl patch with a
JSON merge patch (RFC 7386), applied on this side: the object is read, its JSON form patched,
read back strictly (an unknown field is an error naming it) and sent as an update against the
resourceVersion read (re-read and re-patched after a conflict). Prints ``node/n1 patched``, or
``node/n1 patched (no change)`` when the patch changes nothing.

- The patch is JSON or YAML (kubectl takes both) and must be an object; it may not rename the
  object (metadata.name, metadata.namespace).
- ``--type merge`` is the one type implemented. ``strategic`` (kubectl's default) differs from a
  merge patch only in how lists are merged, so a strategic patch without lists is applied as the
  merge patch it equals, and one with lists is refused; ``json`` (RFC 6902) is refused.
- ``--subresource status`` patches only ``status`` (a patch of anything else is refused), for
  the kinds that have one (pods, nodes). The master applies what an update may change: an
  admin's change of a node's extended resources in ``status.capacity``/``status.allocatable``.
- What the master refuses is printed as its error. What it silently keeps as it was (a field an
  update may not change) is checked after the update: ``error: pod/web patched, but the server
  kept status.phase``, exit 1, so a patch never seems to work when it did not.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml
from google.protobuf.message import Message

from pymaster.api import errors, manifest, objects_pb2
from pymaster.api.config_validation import merged_data
from pymaster.cli.context import CommandError, Context
from pymaster.cli.metadata_edit import Target, edit_object, for_each, targets

PATCH_TYPES = ("json", "merge", "strategic")
STATUS_KINDS = ("pods", "nodes")
_SERVER_OWNED = frozenset({"metadata.resourceVersion", "metadata.generation"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_patch(text: str, patch_type: str, subresource: str) -> dict[str, Any]:
    """The patch of ``-p``, checked against ``--type`` and ``--subresource``.

    Raises:
        CommandError: not JSON/YAML, not an object, or a patch this type cannot express here.
    """
    if not text:
        raise CommandError("must specify -p to patch")
    if patch_type not in PATCH_TYPES:
        raise CommandError(f"--type must be one of {PATCH_TYPES}, not {json.dumps(patch_type)}")
    if patch_type == "json":
        raise CommandError("--type json (RFC 6902) is not supported: use --type merge")
    try:
        patch = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(f"unable to parse {json.dumps(text)}: {exc}") from None
    if not isinstance(patch, dict):
        raise CommandError("the patch must be a JSON object, e.g. '{\"spec\":{\"unschedulable\":true}}'")
    if patch_type == "strategic" and _has_list(patch):
        raise CommandError("a strategic merge patch of lists is not supported: use --type merge "
                           "(a list in a merge patch replaces the whole list)")
    if subresource and set(patch) - {"status"}:
        raise CommandError(f"with --subresource {subresource}, only status may be patched")
    return patch


def _has_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_has_list(v) for v in value.values())


def _as_stored(obj: Message) -> Message:
    """What the server stores for ``obj``: a Secret's stringData folded into its data."""
    if isinstance(obj, objects_pb2.Secret) and obj.string_data:
        data = merged_data(obj)
        obj.ClearField("string_data")
        obj.ClearField("data")
        obj.data.update(data)
    return obj


def _subset(expected: Any, stored: Any) -> bool:
    """``stored`` holds ``expected`` (the server may add to maps, e.g. defaults)."""
    if isinstance(expected, dict):
        return isinstance(stored, dict) and all(_subset(v, stored.get(k)) for k, v in expected.items())
    if isinstance(expected, list):
        same_length = isinstance(stored, list) and len(expected) == len(stored)
        return same_length and all(map(_subset, expected, stored))
    return expected == stored


def unapplied(
    patch: dict[str, Any], expected: dict[str, Any], stored: dict[str, Any], path: str = ""
) -> str | None:
    """The first path of ``patch`` where the stored object does not hold the patched value
    (``expected``: the patched object's JSON form), or None."""
    for key, value in patch.items():
        where = f"{path}.{key}" if path else key
        if where in _SERVER_OWNED:
            continue
        if value is None:
            if key in stored:
                return where
        elif isinstance(value, dict):
            inner = stored.get(key)
            found = unapplied(value, expected.get(key) or {}, inner if isinstance(inner, dict) else {}, where)
            if found:
                return found
        elif not _subset(expected.get(key), stored.get(key)):
            return where
    return None


async def patch(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl patch TYPE NAME... -p PATCH [--type merge] [--subresource status]."""
    patch_doc = parse_patch(args.patch, args.type, args.subresource)
    if args.subresource and args.resource not in STATUS_KINDS:
        raise CommandError(f"{args.resource} have no {args.subresource} subresource (pods and nodes do)")

    async def act(target: Target) -> None:
        expected: dict[str, Any] = {}

        def change(obj: Message) -> None:
            patched = merge_patch(manifest.to_dict(obj), patch_doc)
            try:
                new = _as_stored(manifest.from_dict(patched, type(obj)))
            except errors.ValidationError as exc:
                raise CommandError(f"{target.title}: the patched object is invalid: {exc}") from None
            for field in ("name", "namespace"):
                if getattr(new.metadata, field) != getattr(obj.metadata, field):
                    raise CommandError(f"{target.title}: metadata.{field} cannot be patched")
            expected.clear()
            expected.update(manifest.to_dict(new))
            obj.CopyFrom(new)

        current, stored = await edit_object(ctx, target, change)
        if stored is current:
            ctx.print(f"{target.title} patched (no change)")
            return
        kept = unapplied(patch_doc, expected, manifest.to_dict(stored))
        if kept is not None:
            raise CommandError(f"{target.title} patched, but the server kept {kept} as it was "
                               "(an update may not change it)")
        ctx.print(f"{target.title} patched")

    return await for_each(ctx, await targets(args, ctx), act)
