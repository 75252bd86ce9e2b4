"""``pyctl rollout status|history|undo|pause|resume|restart TYPE/NAME``, kubectl 1.32's way, for the
kinds whose ``pymaster.cli.kinds`` entry has a ``rollout`` (Deployments: all of it; DaemonSets:
status and restart).

As kubectl does, everything happens client-side: ``undo`` copies the template of the chosen
revision's ReplicaSet (without its pod-template-hash label) and its annotations (but the
Deployment controller's own) into the Deployment; ``restart`` sets the template annotation
kubectl.kubernetes.io/restartedAt; ``pause``/``resume`` set spec.paused. ``status`` watches the
object until its status viewer says done; it prints a message when it changes (kubectl prints
it again on every event of the watch).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
from collections.abc import Callable
from typing import Any

from pymaster.api import errors, services_pb2
from pymaster.cli import kinds, printers
from pymaster.cli import workload_lookup as lookup
from pymaster.cli.context import CommandError, Context
from pymaster.cli.describe_workloads import pod_template_lines
from pymaster.cli.metadata_edit import Target, edit_object, for_each
from pymaster.cli.rollout_status import RolloutFailed
from pymaster.cli.targets import UsageError, resolve_targets

ACTIONS = ("status", "history", "undo", "pause", "resume", "restart")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Annotations of a ReplicaSet undo does not copy to the Deployment (kubectl's annotationsToSkip).
SKIPPED_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    lookup.REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser],
               parse_duration: Callable[[str], float]) -> None:
    """The ``rollout`` command of pyctl's command line."""
    rollout = sub.add_parser(
        "rollout", parents=common, help="manage the rollout of a deployment or daemonset",
        usage="pyctl rollout status|history|undo|pause|resume|restart TYPE/NAME... [flags]",
    )
    rollout.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    rollout.add_argument("targets", nargs="+", metavar="RESOURCE", help="TYPE NAME... or TYPE/NAME...")
    rollout.add_argument("-w", "--watch", action=argparse.BooleanOptionalAction, default=True,
                         help="status: wait until the rollout is done (default; --watch=false to print once)")
    rollout.add_argument("--timeout", type=parse_duration, default=0.0, metavar="DURATION",
                         help="status: how long to wait; 0 (default) for as long as it takes")
    rollout.add_argument("--revision", type=int, default=0, metavar="N",
                         help="history: show the pod template of this revision")
    rollout.add_argument("--to-revision", type=int, default=0, metavar="N",
                         help="undo: the revision to go back to (default: the previous one)")
    rollout.set_defaults(handler=rollout_command)


def check(args: argparse.Namespace) -> None:
    """The resource arguments (into args.resource and args.names) and kubectl's checks.

    Raises:
        UsageError: no name, a kind without rollouts, or a verb the kind does not support.
    """
    command = "rollout"
    args.resource, args.names = resolve_targets(args.targets, command)
    if not args.names:
        raise UsageError("required resource not specified", command)
    kind = kinds.of(args.resource)
    group_kind = f"{kind.api.kind}.{kind.qualified.partition('.')[2]}".rstrip(".")
    if kind.rollout is None:
        raise UsageError(f"no {_VIEWERS.get(args.action, 'rollout support')} has been implemented for "
                         f'"{group_kind}"', command)
    if args.action in ("history", "undo") and not kind.rollout.history:
        raise UsageError(f'no {_VIEWERS[args.action]} has been implemented for "{group_kind}"', command)
    if args.revision < 0 or args.to_revision < 0:
        raise UsageError("revision must be a positive integer", command)


_VIEWERS = {"status": "status viewer", "history": "history viewer", "undo": "rollbacker"}


async def rollout_command(args: argparse.Namespace, ctx: Context) -> int:
    kind = kinds.of(args.resource)
    found = [Target(kind, ctx.ns, name) for name in args.names]

    async def act(target: Target) -> None:
        await _ACTIONS[args.action](args, ctx, target)

    return await for_each(ctx, found, act)


# ---- status ----


async def _status(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    try:
        await asyncio.wait_for(_watch_status(args, ctx, target), args.timeout or None)
    except TimeoutError:
        raise CommandError("timed out waiting for the condition") from None


async def _watch_status(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    viewer, resource = target.kind.rollout.status, target.kind.resource
    fields = f"metadata.name={target.name}"
    last = ""

    def show(obj: Any) -> bool:
        nonlocal last
        try:
            message, done = viewer(obj)
        except RolloutFailed as exc:
            raise CommandError(str(exc)) from None
        if message != last:
            ctx.print(message)
            last = message
        return done

    obj = await ctx.client.get(resource, target.name, target.namespace)
    if show(obj) or not args.watch:
        return
    version = obj.metadata.resource_version
    while True:
        try:
            async for event in ctx.client.watch(resource, target.namespace, "", fields, version):
                if event.type == services_pb2.BOOKMARK:
                    continue
                if event.type == services_pb2.DELETED:
                    raise CommandError("object has been deleted")
                version = event.object.metadata.resource_version
                if show(event.object):
                    return
        except errors.TooOld:
            pass
        obj = await ctx.client.get(resource, target.name, target.namespace)
        if show(obj):
            return
        version = obj.metadata.resource_version


# ---- history / undo ----


async def _revisions(ctx: Context, target: Target) -> tuple[Any, dict[int, Any]]:
    """(the Deployment, its ReplicaSets by revision)."""
    deployment = await ctx.client.get(target.kind.resource, target.name, target.namespace)
    replica_sets, _ = await lookup.deployment_replica_sets(ctx.client, deployment)
    return deployment, {lookup.revision(rs): rs for rs in replica_sets if lookup.revision(rs) > 0}


def history_table(revisions: dict[int, Any]) -> str:
    """kubectl's REVISION CHANGE-CAUSE table, oldest first."""
    lines = ["REVISION\tCHANGE-CAUSE"]
    for number in sorted(revisions):
        cause = revisions[number].metadata.annotations.get(lookup.CHANGE_CAUSE_ANNOTATION, printers.NONE)
        lines.append(f"{number}\t{cause}")
    return printers.tabwrite(lines, 0, 2)


async def _history(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    _, revisions = await _revisions(ctx, target)
    if args.revision:
        if args.revision not in revisions:
            raise CommandError("unable to find the specified revision")
        ctx.print(f"{target.title} with revision #{args.revision}")
        template = revisions[args.revision].spec.template
        ctx.write(printers.tabwrite(pod_template_lines(template), 0, 2) + "\n")
        return
    ctx.print(target.title)
    ctx.write(history_table(revisions) + "\n")


def previous_revision(revisions: dict[int, Any]) -> int:
    """The revision before the newest (kubectl's undo without --to-revision), 0 when none."""
    ordered = sorted(revisions)
    return ordered[-2] if len(ordered) > 1 else 0


def plan_undo(deployment: Any, revisions: dict[int, Any], to_revision: int) -> tuple[int, Any]:
    """Which revision undo goes back to and its ReplicaSet, or None in its place when the
    Deployment's template already is that revision's (kubectl's "skipped rollback").

    Raises:
        CommandError: a paused Deployment, no previous revision, or no such revision.
    """
    if deployment.spec.paused:
        raise CommandError("you cannot rollback a paused deployment; resume it first with "
                           "'pyctl rollout resume' and try again")
    number = to_revision or previous_revision(revisions)
    if number == 0:
        raise CommandError(f'no rollout history found for deployment "{deployment.metadata.name}"')
    if number not in revisions:
        raise CommandError(f"unable to find specified revision {number} in history")
    rs = revisions[number]
    if lookup.template_without_hash(rs.spec.template) == deployment.spec.template:
        return number, None
    return number, rs


async def _undo(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    deployment, revisions = await _revisions(ctx, target)
    number, rs = plan_undo(deployment, revisions, args.to_revision)
    if rs is None:
        ctx.print(f"{target.title} skipped rollback (current template already matches revision {number})")
        return

    def change(obj: Any) -> None:
        obj.spec.template.CopyFrom(lookup.template_without_hash(rs.spec.template))
        for key, value in rs.metadata.annotations.items():
            if key not in SKIPPED_ANNOTATIONS:
                obj.metadata.annotations[key] = value

    await edit_object(ctx, target, change)
    ctx.print(f"{target.title} rolled back")


# ---- pause / resume / restart ----


def _refuse(target: Target, what: str) -> CommandError:
    return CommandError(f'{target.kind.qualified_resource} "{target.name}" {what}')


async def _set_paused(ctx: Context, target: Target, paused: bool) -> None:
    if not target.kind.rollout.pausable:
        raise _refuse(target, "pausing is not supported" if paused else "resuming is not supported")

    def change(obj: Any) -> None:
        if obj.spec.paused == paused:
            raise _refuse(target, "is already paused" if paused else "is not paused")
        obj.spec.paused = paused

    await edit_object(ctx, target, change)
    ctx.print(f"{target.title} {'paused' if paused else 'resumed'}")


async def _pause(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    await _set_paused(ctx, target, True)


async def _resume(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    await _set_paused(ctx, target, False)


def restarted_at(now: float) -> str:
    """Go's time.Now().Format(time.RFC3339) in the local zone: "2026-11-30T22:40:05Z"."""
    moment = datetime.datetime.fromtimestamp(int(now), tz=datetime.UTC).astimezone()
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


async def _restart(args: argparse.Namespace, ctx: Context, target: Target) -> None:
    def change(obj: Any) -> None:
        if getattr(obj.spec, "paused", False):
            raise _refuse(target, "can't restart paused deployment (run rollout resume first)")
        obj.spec.template.metadata.annotations[RESTARTED_AT] = restarted_at(ctx.clock())

    await edit_object(ctx, target, change)
    ctx.print(f"{target.title} restarted")


_ACTIONS = {
    "status": _status, "history": _history, "undo": _undo, "pause": _pause, "resume": _resume,
    "restart": _restart,
}
