"""Validation of resource requirements: a container's requests and limits (known resource names,
quantities, requests not above limits), and the pod-level ``spec.resources``.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.checks import check_quantities, key_path, quote
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import parse_quantity

POD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def check_resources(path: str, resources: objects_pb2.ResourceRequirements) -> None:
    """Check a container's ``resources`` at ``path``."""
    check_quantities(f"{path}.requests", resources.requests, POD_RESOURCES)
    check_quantities(f"{path}.limits", resources.limits, POD_RESOURCES)
    for name in sorted(resources.requests):
        if name in resources.limits and (
            parse_quantity(resources.requests[name]) > parse_quantity(resources.limits[name])
        ):
            raise ValidationError(
                key_path(f"{path}.requests", name),
                f"invalid value {quote(resources.requests[name])}: must be less than or equal to "
                f"{name} limit of {resources.limits[name]}",
            )


def check_pod_resources(spec: objects_pb2.PodSpec) -> None:
    """Pod-level requests and limits (``spec.resources``): not supported."""
    if spec.HasField("resources"):
        raise ValidationError("spec.resources", "not supported yet")
