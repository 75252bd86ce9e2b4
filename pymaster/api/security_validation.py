"""Validation of security contexts: a container's ``securityContext`` and the pod's
``spec.securityContext``, with Kubernetes' field paths.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError


def check_container_security(path: str, context: objects_pb2.SecurityContext) -> None:
    """Check a container's ``securityContext`` at ``path``."""
    for field, _ in context.ListFields():
        if field.name != "privileged":
            raise ValidationError(f"{path}.{field.json_name}", "not supported yet")


def check_pod_security(spec: objects_pb2.PodSpec) -> None:
    """Check the pod's ``spec.securityContext``."""
    for field, _ in spec.security_context.ListFields():
        raise ValidationError(f"spec.securityContext.{field.json_name}", "not supported yet")
