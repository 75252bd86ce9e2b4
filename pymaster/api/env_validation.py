"""Validation of a container's environment: ``env`` (names, values) with Kubernetes' rules and
field paths. ``container_validation.check_container`` calls it.
"""

from __future__ import annotations

import re

from pymaster.api import objects_pb2
from pymaster.api.checks import check_count, check_string_size, quote
from pymaster.api.errors import ValidationError

_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
MAX_ENV = 1000  # per container


def check_env(path: str, container: objects_pb2.Container) -> None:
    """Check the environment of the container at ``path`` (``spec.containers[0]``)."""
    env_path = f"{path}.env"
    check_count(env_path, container.env, MAX_ENV, "entries")
    for k, var in enumerate(container.env):
        if not var.name:
            raise ValidationError(f"{env_path}[{k}].name", "required")
        check_string_size(f"{env_path}[{k}].name", var.name)
        if not _ENV_VAR_NAME.fullmatch(var.name):
            raise ValidationError(
                f"{env_path}[{k}].name",
                f"invalid value {quote(var.name)}: must consist of letters, digits, '_', '-' or '.', "
                "and not start with a digit",
            )
        check_string_size(f"{env_path}[{k}].value", var.value)
        if var.HasField("value_from"):
            raise ValidationError(f"{env_path}[{k}].valueFrom", "not supported yet")
    if container.env_from:
        raise ValidationError(f"{path}.envFrom", "not supported yet")
