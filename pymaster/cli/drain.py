"""pyctl drain: kubectl's ``drain`` verb. Cordons a node, then evicts every pod on it and waits
until they are gone.

``pyctl drain NODE [--grace-period N] [--timeout T] [--force] [--ignore-daemonsets]
[--delete-emptydir-data]``. Which pods go is kubectl's (``drain.GetPodsForDeletion``), checked
for all pods before any is evicted; refused pods stop the drain (the node stays cordoned):

- mirror pods (annotation ``kubernetes.io/config.mirror``) are skipped: their agent owns them;
- DaemonSet-managed pods (controller ownerReference of kind DaemonSet) are refused unless
  ``--ignore-daemonsets``, which skips them (their controller would put them back);
- pods with emptyDir volumes are refused unless ``--delete-emptydir-data`` (their data goes);
- pods without a controller (no ownerReference with ``controller: true``) are refused unless
  ``--force`` (nothing recreates them);
- terminal pods (Succeeded, Failed) are deleted whatever they are (nothing runs).

Eviction is a graceful delete (``--grace-period``, -1: each pod's own; pykube has no Eviction
subresource nor PodDisruptionBudgets yet). It prints kubectl's lines: ``node/NAME cordoned``,
``evicting pod NS/NAME``, ``pod/NAME evicted``, ``node/NAME drained``; ``--timeout`` (0, the
default: as long as it takes) bounds the whole wait: "drain did not complete within 5s".
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymaster.api import errors, objects_pb2, services_pb2
from pymaster.api.pods import is_terminal
from pymaster.cli import commands
from pymaster.cli.context import CommandError, Context
from pymaster.client import Client

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DAEMONSET_FATAL = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "cannot delete Pods with local storage (use --delete-emptydir-data to override)"
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "cannot delete Pods that declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"


@dataclass
class DrainPlan:
    """The pods to evict, and kubectl's messages: each maps a message to the pods ("ns/name")."""

    delete: list[objects_pb2.Pod] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def warning_text(self) -> str:
        return "; ".join(f"{message}: {', '.join(pods)}" for message, pods in self.warnings.items())

    def error_text(self) -> str:
        texts = [f"{message}: {', '.join(pods)}" for message, pods in self.errors.items()]
        return texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"


def controller_of(pod: objects_pb2.Pod) -> objects_pb2.OwnerReference | None:
    """The pod's controller ownerReference (``controller: true``), or None."""
    return next((ref for ref in pod.metadata.owner_references if ref.controller), None)


def plan_drain(
    pods: Iterable[objects_pb2.Pod], *, force: bool, ignore_daemonsets: bool, delete_emptydir_data: bool
) -> DrainPlan:
    """kubectl's GetPodsForDeletion over the pods of a node (see the module's docstring)."""
    plan = DrainPlan()
    for pod in pods:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        controller = controller_of(pod)
        if controller is not None and controller.kind == "DaemonSet":
            if ignore_daemonsets:
                plan.warnings.setdefault(DAEMONSET_WARNING, []).append(key)
            else:
                plan.errors.setdefault(DAEMONSET_FATAL, []).append(key)
            continue
        if MIRROR_ANNOTATION in pod.metadata.annotations:
            continue
        if not is_terminal(pod):
            if any(volume.HasField("empty_dir") for volume in pod.spec.volumes):
                if not delete_emptydir_data:
                    plan.errors.setdefault(LOCAL_STORAGE_FATAL, []).append(key)
                    continue
                plan.warnings.setdefault(LOCAL_STORAGE_WARNING, []).append(key)
            if controller is None:
                if not force:
                    plan.errors.setdefault(UNMANAGED_FATAL, []).append(key)
                    continue
                plan.warnings.setdefault(UNMANAGED_WARNING, []).append(key)
        plan.delete.append(pod)
    return plan


def add_parser(
    sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser], duration: Callable[[str], float]
) -> None:
    """Registers ``drain`` on pyctl's sub-command parser; ``duration`` parses ``--timeout``."""
    drain = sub.add_parser("drain", parents=common, help="cordon a node and evict its pods")
    drain.add_argument("node", metavar="NODE", help="the node (or node/NAME)")
    drain.add_argument("--grace-period", type=int, default=-1, metavar="SECONDS",
                       help="seconds each pod gets to stop; -1 (default) uses the pod's own")
    drain.add_argument("--force", action="store_true", help="also evict pods that declare no controller")
    drain.add_argument("--ignore-daemonsets", action="store_true", help="skip DaemonSet-managed pods")
    drain.add_argument("--delete-emptydir-data", action="store_true",
                       help="also evict pods with emptyDir volumes (their data is lost)")
    drain.add_argument("--timeout", type=duration, default=0.0, metavar="DURATION",
                       help="how long to wait for the pods to go; 0 (default) for as long as it takes")
    drain.set_defaults(handler=drain_command)


async def drain_command(args: argparse.Namespace, ctx: Context) -> int:
    """pyctl drain NODE: cordon, evict, wait."""
    name = args.node
    if await commands.cordon(argparse.Namespace(nodes=[name]), ctx) != 0:
        return 1  # the node is not there (printed)
    fields = f"spec.nodeName={name}"
    listed = await ctx.client.list_pods(field_selector=fields)
    plan = plan_drain(listed.items, force=args.force, ignore_daemonsets=args.ignore_daemonsets,
                      delete_emptydir_data=args.delete_emptydir_data)
    if plan.errors:
        text = plan.error_text()
        ctx.print_error(f'error: unable to drain node "{name}" due to error: {text}, continuing command...')
        ctx.print_error(f"There are pending nodes to be drained:\n {name}")
        raise CommandError(text)
    if plan.warnings:
        ctx.print_error(f"Warning: {plan.warning_text()}")
    grace = None if args.grace_period < 0 else args.grace_period
    pending: dict[str, objects_pb2.Pod] = {}
    for pod in plan.delete:
        meta = pod.metadata
        ctx.print(f"evicting pod {meta.namespace}/{meta.name}")
        try:
            await ctx.client.delete_pod(meta.name, meta.namespace, grace_period_seconds=grace)
        except errors.NotFound:
            pass  # gone already: evicted all the same
        pending[meta.uid] = pod
    try:
        async with asyncio.timeout(args.timeout or None):
            await _wait_gone(ctx, fields, pending)
    except TimeoutError:
        text = f"drain did not complete within {args.timeout:g}s"
        ctx.print_error(f'error: unable to drain node "{name}" due to error: {text}, continuing command...')
        ctx.print_error(f"There are pending nodes to be drained:\n {name}")
        raise CommandError(text) from None
    ctx.print(f"node/{name} drained")
    return 0


async def _wait_gone(ctx: Context, fields: str, pending: dict[str, objects_pb2.Pod]) -> None:
    """Returns once every pod of ``pending`` (by uid) is gone, printing ``pod/NAME evicted`` for
    each: list the node's pods, then watch from that list's version (relist when too old)."""
    client: Client = ctx.client

    def gone(uid: str) -> None:
        ctx.print(f"pod/{pending.pop(uid).metadata.name} evicted")

    while pending:
        listed = await client.list_pods(field_selector=fields)
        present = {pod.metadata.uid for pod in listed.items}
        for uid in [uid for uid in pending if uid not in present]:
            gone(uid)
        if not pending:
            return
        try:
            async for event in client.watch_pods("", "", fields, listed.resource_version):
                uid = event.object.metadata.uid
                if event.type == services_pb2.DELETED and uid in pending:
                    gone(uid)
                    if not pending:
                        return
        except errors.TooOld:
            pass  # relist
