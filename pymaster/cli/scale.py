"""``pyctl scale TYPE NAME|TYPE/NAME... --replicas N [--current-replicas N] [--resource-version V]``:
kubectl's scale over the API's /scale operation, for the kinds registered ``scalable`` in
``pymaster.cli.kinds`` (Deployments, ReplicaSets). ``--current-replicas`` is kubectl's
precondition: the change is made only if the replicas are that many now, against the
resourceVersion read with them; on a conflict (the controller wrote the status meanwhile) it reads
and checks again, as kubectl's scaler retries.
"""

from __future__ import annotations

import argparse

from pymaster.api import errors
from pymaster.cli import kinds
from pymaster.cli.context import CommandError, Context
from pymaster.cli.metadata_edit import ATTEMPTS, Target, for_each, targets
from pymaster.cli.targets import UsageError, resolve_targets


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The ``scale`` command of pyctl's command line."""
    scale = sub.add_parser("scale", parents=common, help="set the replicas of a deployment or replicaset",
                           usage="pyctl scale TYPE NAME|TYPE/NAME... --replicas N [--current-replicas N]")
    scale.add_argument("targets", nargs="+", metavar="RESOURCE", help="TYPE NAME... or TYPE/NAME...")
    scale.add_argument("--replicas", type=int, default=-1, metavar="N", help="the new number of replicas")
    scale.add_argument("--current-replicas", type=int, default=-1, metavar="N",
                       help="precondition: the current replicas (-1, the default: any)")
    scale.add_argument("--resource-version", default="", metavar="V",
                       help="precondition: the object's current resourceVersion")
    scale.add_argument("-l", "--selector", default="", metavar="SELECTOR",
                       help="scale the objects it selects")
    scale.add_argument("--all", action="store_true", help="every object of the kind in the namespace")
    scale.set_defaults(handler=scale_command)


def check(args: argparse.Namespace) -> None:
    """kubectl's checks, and the resource arguments into args.resource and args.names.

    Raises:
        UsageError: no --replicas, a kind that does not scale, names with -l/--all.
    """
    command = "scale"
    if args.replicas < 0:
        raise UsageError("The --replicas=COUNT flag is required, and COUNT must be greater than or equal "
                         "to 0", command)
    args.resource, args.names = resolve_targets(args.targets, command)
    kind = kinds.of(args.resource)
    if not kind.scalable:
        scalable = ", ".join(k.resource for k in kinds.KINDS.values() if k.scalable)
        raise UsageError(f"cannot scale {kind.qualified_resource}: only {scalable} scale", command)
    if args.names and (args.selector or args.all):
        raise UsageError("names cannot be combined with -l or --all", command)
    if not args.names and not args.selector and not args.all:
        raise UsageError("resource(s) were provided, but no name was specified", command)


async def scale_command(args: argparse.Namespace, ctx: Context) -> int:
    async def act(target: Target) -> None:
        resource, name, namespace = target.kind.resource, target.name, target.namespace
        for attempt in range(ATTEMPTS):
            version = args.resource_version
            if args.current_replicas >= 0:
                current = await ctx.client.scale(resource, name, namespace)
                if current.spec.replicas != args.current_replicas:
                    was = current.spec.replicas
                    raise CommandError(f"Expected replicas to be {args.current_replicas}, was {was}")
                version = version or current.metadata.resource_version
            try:
                await ctx.client.scale(resource, name, namespace, args.replicas, version)
                break
            except errors.Conflict:
                # A version the user gave is theirs to check; one read here is checked again.
                if args.resource_version or attempt == ATTEMPTS - 1:
                    raise
        ctx.print(f"{target.title} scaled")

    return await for_each(ctx, await targets(args, ctx), act)
