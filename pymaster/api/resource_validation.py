"""Validation of resource requirements, with Kubernetes' rules and messages: a container's requests
and limits (known resource names, quantities, requests not above limits), extended resources
(``example.com/dongle``: whole numbers, never overcommitted, so a request equals its limit), the
pod-level ``spec.resources`` (refused: alpha in Kubernetes 1.32, off by default), and the extended
resources an admin sets in a node's status.

Refused where Kubernetes would accept, because pykube does not honour them: ``hugepages-*`` (no
huge page allocation) and names under ``kubernetes.io/`` (the domain of Kubernetes' own
resources, none of which pykube has beyond cpu, memory and ephemeral-storage).
"""

from __future__ import annotations

from collections.abc import Mapping

from pymaster.api import objects_pb2
from pymaster.api.checks import check_qualified_name, key_path, quote
from pymaster.api.errors import ValidationError
from pymaster.api.pods import is_extended_resource
from pymaster.api.quantity import parse_quantity

POD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_SUPPORTED = (
    f"supported: {', '.join(POD_RESOURCES)} or an extended resource (a domain-prefixed name such as "
    "example.com/dongle)"
)


def check_resource_name(path: str, name: str) -> None:
    """A container's resource name: cpu, memory, ephemeral-storage or an extended resource.

    Raises:
        ValidationError: on ``path``.
    """
    if name in POD_RESOURCES:
        return
    if name.startswith("hugepages-"):
        raise ValidationError(path, "hugepages are not supported (pykube does not allocate huge pages)")
    if "/" not in name:
        raise ValidationError(path, f"unsupported resource name; {_SUPPORTED}")
    check_extended_resource_name(path, name)


def check_extended_resource_name(path: str, name: str) -> None:
    """An extended resource's name: a qualified name whose prefix is a domain (with a dot, as a
    node's status requires), outside kubernetes.io, and not a quota name (``requests.``).

    Raises:
        ValidationError: on ``path``.
    """
    check_qualified_name(path, name)
    prefix = name.rpartition("/")[0]
    if "kubernetes.io/" in name:
        raise ValidationError(
            path, f"unsupported resource name {quote(name)}: the kubernetes.io domain is reserved for "
            "Kubernetes' own resources; an extended resource needs a domain of its own"
        )
    if "." not in prefix or name.startswith("requests."):
        raise ValidationError(path, f"unsupported resource name {quote(name)}; {_SUPPORTED}")


def _check_quantity(path: str, name: str, value: str) -> None:
    try:
        amount = parse_quantity(value)
    except ValueError:
        raise ValidationError(path, f"invalid quantity {quote(value)}") from None
    if amount < 0:
        raise ValidationError(path, f"invalid value {quote(value)}: must be greater than or equal to 0")
    if is_extended_resource(name) and amount != amount.to_integral_value():
        raise ValidationError(path, f"invalid value {quote(value)}: must be an integer")


def _check_quantities(path: str, quantities: Mapping[str, str]) -> None:
    for name in sorted(quantities):
        entry = key_path(path, name)
        check_resource_name(entry, name)
        _check_quantity(entry, name, quantities[name])


def check_resources(path: str, resources: objects_pb2.ResourceRequirements) -> None:
    """Check a container's ``resources`` at ``path``: limits, then requests (Kubernetes' order,
    so a bad limit is named as such even after defaulting copied it into the requests).

    Raises:
        ValidationError: naming the entry, e.g. ``...resources.requests[example.com/dongle]``.
    """
    requests, limits = resources.requests, resources.limits
    _check_quantities(f"{path}.limits", limits)
    _check_quantities(f"{path}.requests", requests)
    for name in sorted(requests):
        entry = key_path(f"{path}.requests", name)
        request = requests[name]
        if name not in limits:
            if is_extended_resource(name):
                raise ValidationError(
                    key_path(f"{path}.limits", name),
                    "required: a limit must be set for non overcommitable resources (extended "
                    "resources), equal to the request",
                )
            continue
        limit = limits[name]
        if is_extended_resource(name) and parse_quantity(request) != parse_quantity(limit):
            raise ValidationError(
                entry, f"invalid value {quote(request)}: must be equal to {name} limit of {limit}"
            )
        if parse_quantity(request) > parse_quantity(limit):
            raise ValidationError(
                entry,
                f"invalid value {quote(request)}: must be less than or equal to {name} limit of {limit}",
            )


def check_pod_resources(spec: objects_pb2.PodSpec) -> None:
    """Pod-level requests and limits (``spec.resources``): refused, as Kubernetes refuses them
    unless the alpha PodLevelResources feature is switched on.

    Raises:
        ValidationError: on ``spec.resources``.
    """
    if spec.HasField("resources"):
        raise ValidationError(
            "spec.resources",
            "pod-level resources are not supported (alpha in Kubernetes 1.32, off by default)",
        )


def check_node_extended_resources(status: objects_pb2.NodeStatus) -> None:
    """The extended resources of a node's status (what an admin may set): valid names, whole
    non-negative counts, and none allocatable beyond its capacity or without one.

    Raises:
        ValidationError: naming the entry, e.g. ``status.capacity[example.com/dongle]``.
    """
    for field in ("capacity", "allocatable"):
        quantities = getattr(status, field)
        for name in sorted(quantities):
            if is_extended_resource(name):
                entry = key_path(f"status.{field}", name)
                check_extended_resource_name(entry, name)
                _check_quantity(entry, name, quantities[name])
    for name in sorted(status.allocatable):
        if not is_extended_resource(name):
            continue
        entry = key_path("status.allocatable", name)
        if name not in status.capacity:
            raise ValidationError(entry, f"{name} must also be in status.capacity")
        allocatable, capacity = status.allocatable[name], status.capacity[name]
        if parse_quantity(allocatable) > parse_quantity(capacity):
            raise ValidationError(
                entry, f"invalid value {quote(allocatable)}: must be less than or equal to {name} capacity "
                f"of {capacity}"
            )
