"""``pyctl expose TYPE NAME|TYPE/NAME [--port P] [--target-port T] [--type ClusterIP|NodePort]
[--name N] [--protocol TCP|UDP] [--selector SEL]``: kubectl's expose, a Service in front of a
pod, a Deployment, a ReplicaSet or an existing Service.

As kubectl: the selector is the Deployment's or ReplicaSet's ``spec.selector.matchLabels`` (one
with matchExpressions is refused), the pod's labels, or the Service's selector; the Service takes
the object's labels and its name unless ``--name``; without ``--port`` the ports are the pod
(template)'s container ports, named ``port-1``, ``port-2`` ... when there are several; prints
``service/NAME exposed``.
"""

from __future__ import annotations

import argparse

from pymaster.api import objects_pb2
from pymaster.api.kinds import DEPLOYMENTS, PODS, REPLICA_SETS, SERVICES
from pymaster.api.selectors import LabelSelector
from pymaster.api.workloads import int_or_string
from pymaster.cli.context import CommandError, Context
from pymaster.cli.targets import UsageError, resolve_targets

EXPOSABLE = (PODS.resource, DEPLOYMENTS.resource, REPLICA_SETS.resource, SERVICES.resource)
USAGE = ("pyctl expose (deployment|pod|replicaset|service) NAME [--port P] [--target-port T] "
         "[--type ClusterIP|NodePort] [--name N] [--protocol TCP|UDP]")


def add_parser(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The ``expose`` command of pyctl's command line."""
    cmd = sub.add_parser("expose", parents=common, help="make a service in front of a pod or workload",
                         usage=USAGE)
    cmd.add_argument("targets", nargs="+", metavar="RESOURCE", help="TYPE NAME or TYPE/NAME")
    cmd.add_argument("--port", type=int, default=0, help="the service's port")
    cmd.add_argument("--target-port", default="", metavar="T", help="the pods' port: a number or a name")
    cmd.add_argument("--type", default="", help="ClusterIP (default) or NodePort")
    cmd.add_argument("--name", default="", help="the service's name (default: the object's)")
    cmd.add_argument("--protocol", default="", help="TCP (default) or UDP")
    cmd.add_argument("--selector", default="", help="the service's selector (default: the object's)")
    cmd.set_defaults(handler=expose_command)


def check(args: argparse.Namespace) -> None:
    """The resource argument into args.resource and args.name.

    Raises:
        UsageError: not one object of an exposable kind.
    """
    args.resource, names = resolve_targets(args.targets, "expose")
    if args.resource not in EXPOSABLE:
        raise UsageError(f"cannot expose a {args.resource}: only {', '.join(EXPOSABLE)} can be exposed",
                         "expose")
    if len(names) != 1:
        raise UsageError("exactly one NAME is required", "expose")
    args.name_ = names[0]


def selector_of(obj) -> dict[str, str]:
    """kubectl's selector for an exposed object."""
    if isinstance(obj, objects_pb2.Pod):
        return dict(obj.metadata.labels)
    if isinstance(obj, objects_pb2.Service):
        return dict(obj.spec.selector)
    if obj.spec.selector.match_expressions:
        raise CommandError(f"couldn't convert expressions - \"{obj.spec.selector}\" to map-based selector "
                           "format".replace("\n", " "))
    return dict(obj.spec.selector.match_labels)


def container_ports(obj) -> list[objects_pb2.ContainerPort]:
    if isinstance(obj, objects_pb2.Service):
        return []
    spec = obj.spec if isinstance(obj, objects_pb2.Pod) else obj.spec.template.spec
    return [port for container in spec.containers for port in container.ports]


def build_service(obj, args: argparse.Namespace, namespace: str) -> objects_pb2.Service:
    """The Service ``expose`` creates for ``obj`` (see the module docstring)."""
    service = objects_pb2.Service(api_version="v1", kind="Service")
    service.metadata.name = args.name or obj.metadata.name
    service.metadata.namespace = namespace
    service.metadata.labels.update(obj.metadata.labels)
    if args.selector:
        selector = LabelSelector.parse(args.selector)
        service.spec.selector.update({r.key: next(iter(r.values)) for r in selector.requirements
                                      if r.operator == "="})
    else:
        service.spec.selector.update(selector_of(obj))
    if not service.spec.selector:
        raise CommandError(f"couldn't retrieve selectors via --selector flag or introspection: the "
                           f"{obj.kind.lower()} {obj.metadata.name} has no labels to select its pods")
    service.spec.type = args.type
    if args.port:
        port = service.spec.ports.add(port=args.port, protocol=args.protocol)
        if args.target_port:
            target = int(args.target_port) if args.target_port.isdigit() else args.target_port
            port.target_port.CopyFrom(int_or_string(target))
    else:
        found = container_ports(obj)
        if isinstance(obj, objects_pb2.Service):
            found_ports = [(p.port, p.protocol) for p in obj.spec.ports]
        else:
            found_ports = [(p.container_port, p.protocol) for p in found]
        if not found_ports:
            raise CommandError("couldn't find port via --port flag or introspection")
        for i, (number, protocol) in enumerate(found_ports, start=1):
            port = service.spec.ports.add(port=number, protocol=args.protocol or protocol)
            if len(found_ports) > 1:
                port.name = f"port-{i}"
            if args.target_port:
                target = int(args.target_port) if args.target_port.isdigit() else args.target_port
                port.target_port.CopyFrom(int_or_string(target))
    return service


async def expose_command(args: argparse.Namespace, ctx: Context) -> int:
    namespace = ctx.namespace or "default"
    obj = await ctx.client.get(args.resource, args.name_, namespace)
    created = await ctx.client.create(build_service(obj, args, namespace))
    ctx.print(f"service/{created.metadata.name} exposed")
    return 0
