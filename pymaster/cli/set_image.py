"""``pyctl set image TYPE NAME|TYPE/NAME... CONTAINER=IMAGE...`` (kubectl's): changes the images of
containers (init containers included; ``*`` names them all) in the PodSpec the kind's entry in
``pymaster.cli.kinds`` points at (a pod's own, a workload's template's), prints
``deployment.apps/web image updated``; an object it does not change is left alone, silently, as
kubectl does.
"""

from __future__ import annotations

import argparse
from typing import Any

from pymaster.cli import kinds
from pymaster.cli.context import CommandError, Context
from pymaster.cli.metadata_edit import Target, edit_object, for_each, targets
from pymaster.cli.targets import UsageError, resolve_targets


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The ``set`` command (``set image``) of pyctl's command line."""
    set_cmd = sub.add_parser("set", parents=common, help="set the images of a workload's containers",
                             usage="pyctl set image TYPE NAME|TYPE/NAME... CONTAINER=IMAGE...")
    set_cmd.add_argument("what", choices=("image",), metavar="image", help="what to set: image")
    set_cmd.add_argument("words", nargs="+", metavar="WORD", help="TYPE NAME... or TYPE/NAME..., then "
                         "CONTAINER=IMAGE...")
    set_cmd.add_argument("-l", "--selector", default="", metavar="SELECTOR", help="the objects it selects")
    set_cmd.add_argument("--all", action="store_true", help="every object of the kind in the namespace")
    set_cmd.set_defaults(handler=set_image)


def check(args: argparse.Namespace) -> None:
    """Splits the words into resources (args.resource, args.names) and images (args.images).

    Raises:
        UsageError: no image, a kind without containers, names with -l/--all.
    """
    command = "set image"
    resources = [w for w in args.words if "=" not in w]
    pairs = [w for w in args.words if "=" in w]
    if not pairs:
        raise UsageError("at least one image update is required", command)
    args.images = {}
    for pair in pairs:
        container, _, image = pair.partition("=")
        if not container or not image:
            raise UsageError(f"invalid image update {pair!r}: use CONTAINER=IMAGE", command)
        args.images[container] = image
    args.resource, args.names = resolve_targets(resources, command)
    if kinds.of(args.resource).pod_spec is None:
        raise UsageError(f"{kinds.of(args.resource).qualified_resource} have no containers to set", command)
    if args.names and (args.selector or args.all):
        raise UsageError("names cannot be combined with -l or --all", command)
    if not args.names and not args.selector and not args.all:
        raise UsageError("resource(s) were provided, but no name was specified", command)


def set_images(spec: Any, images: dict[str, str]) -> None:
    """Sets the images of a PodSpec's containers by name ("*": all), in place.

    Raises:
        CommandError: a name that is no container of the spec.
    """
    containers = [*spec.init_containers, *spec.containers]
    for name, image in images.items():
        chosen = [c for c in containers if name in ("*", c.name)]
        if not chosen:
            raise CommandError(f'unable to find container named "{name}"')
        for container in chosen:
            container.image = image


async def set_image(args: argparse.Namespace, ctx: Context) -> int:
    async def act(target: Target) -> None:
        pod_spec = target.kind.pod_spec
        assert pod_spec is not None  # check() refuses kinds without containers
        before, after = await edit_object(ctx, target, lambda obj: set_images(pod_spec(obj), args.images))
        if after is not before:
            ctx.print(f"{target.title} image updated")

    return await for_each(ctx, await targets(args, ctx), act)
