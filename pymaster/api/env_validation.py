"""Validation of a container's environment with Kubernetes' rules and field paths: ``env``
(names, values, ``valueFrom``: exactly one of fieldRef, resourceFieldRef, configMapKeyRef,
secretKeyRef, the field paths and resources env may ask for, divisors, key and object names) and
``envFrom`` (exactly one of configMapRef, secretRef; the prefix). ``container_validation.
check_container`` calls it. The agent resolves what passes here (``pykubelet/env.py``).
"""

from __future__ import annotations

import re

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    DNS1123_SUBDOMAIN_MAX,
    check_count,
    check_dns_subdomain,
    check_qualified_name,
    check_string_size,
    quote,
)
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import parse_quantity

_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_ENV = 1000  # per container, env and envFrom each

# What env may ask of the pod (Kubernetes' validEnvDownwardAPIFieldPathExpressions), besides
# metadata.labels['k'] and metadata.annotations['k'].
ENV_FIELD_PATHS = (
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
)
CONTAINER_RESOURCE_FIELDS = (
    "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "requests.cpu", "requests.memory", "requests.ephemeral-storage",
)
_CPU_DIVISORS = ("1m", "1")
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
_DIVISOR_WORDS = {"cpu": "the cpu resource", "memory": "the memory resource",
                  "ephemeral-storage": "the local ephemeral storage resource"}
_SOURCES = "`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"


def check_env(path: str, container: objects_pb2.Container) -> None:
    """Check the environment of the container at ``path`` (``spec.containers[0]``)."""
    env_path = f"{path}.env"
    check_count(env_path, container.env, MAX_ENV, "entries")
    for k, var in enumerate(container.env):
        if not var.name:
            raise ValidationError(f"{env_path}[{k}].name", "required")
        check_string_size(f"{env_path}[{k}].name", var.name)
        check_env_var_name(f"{env_path}[{k}].name", var.name)
        check_string_size(f"{env_path}[{k}].value", var.value)
        if var.HasField("value_from"):
            _check_value_from(f"{env_path}[{k}].valueFrom", var)
    from_path = f"{path}.envFrom"
    check_count(from_path, container.env_from, MAX_ENV, "entries")
    for k, source in enumerate(container.env_from):
        _check_env_from(f"{from_path}[{k}]", source)


def unsupported(value: str, supported: tuple[str, ...]) -> str:
    """Kubernetes' message for a value outside a set: ``Unsupported value: "x": supported values:
    "a", "b"``."""
    return f"Unsupported value: {quote(value)}: supported values: {', '.join(quote(s) for s in supported)}"


def is_env_var_name(name: str) -> bool:
    """Kubernetes' IsEnvVarName: letters, digits, '_', '-', '.', not starting with a digit, and
    neither "." nor ".." nor starting with ".." (the agent skips envFrom keys that are not)."""
    return _ENV_VAR_NAME.fullmatch(name) is not None and name not in (".", "..") and not name.startswith("..")


def check_env_var_name(path: str, name: str) -> None:
    """Kubernetes' IsEnvVarName (also an envFrom prefix)."""
    if not _ENV_VAR_NAME.fullmatch(name):
        raise ValidationError(
            path,
            f"invalid value {quote(name)}: must consist of letters, digits, '_', '-' or '.', "
            "and not start with a digit",
        )
    _check_no_dot_dot(path, name)


def check_config_map_key(path: str, key: str) -> None:
    """Kubernetes' IsConfigMapKey: a key of a ConfigMap's or Secret's data."""
    if not key:
        raise ValidationError(path, "required")
    if len(key) > DNS1123_SUBDOMAIN_MAX:
        raise ValidationError(path, f"invalid value {quote(key)}: must be no more than 253 characters")
    if not _CONFIG_MAP_KEY.fullmatch(key):
        raise ValidationError(
            path,
            f"invalid value {quote(key)}: a valid config key must consist of alphanumeric characters, "
            "'-', '_' or '.'",
        )
    _check_no_dot_dot(path, key)


def _check_no_dot_dot(path: str, value: str) -> None:
    if value in (".", ".."):
        raise ValidationError(path, f"invalid value {quote(value)}: must not be '{value}'")
    if value.startswith(".."):
        raise ValidationError(path, f"invalid value {quote(value)}: must not start with '..'")


def _check_object_name(path: str, name: str) -> None:
    if not name:
        raise ValidationError(path, "required")
    check_dns_subdomain(path, name)


def _check_value_from(path: str, var: objects_pb2.EnvVar) -> None:
    source = var.value_from
    given = [f for f in ("field_ref", "resource_field_ref", "config_map_key_ref", "secret_key_ref")
             if source.HasField(f)]
    if not given:
        raise ValidationError(path, f"must specify one of: {_SOURCES}")
    if var.value:
        raise ValidationError(path, "may not be specified when `value` is not empty")
    if len(given) > 1:
        raise ValidationError(path, "may not have more than one field specified at a time")
    if source.HasField("field_ref"):
        _check_field_ref(f"{path}.fieldRef", source.field_ref)
    elif source.HasField("resource_field_ref"):
        _check_resource_field_ref(f"{path}.resourceFieldRef", source.resource_field_ref)
    else:
        ref, sub = ((source.config_map_key_ref, "configMapKeyRef") if source.HasField("config_map_key_ref")
                    else (source.secret_key_ref, "secretKeyRef"))
        _check_object_name(f"{path}.{sub}.name", ref.name)
        check_config_map_key(f"{path}.{sub}.key", ref.key)


def _check_field_ref(path: str, ref: objects_pb2.ObjectFieldSelector) -> None:
    # apiVersion defaults to v1 (Kubernetes fills it in; unset means v1 here).
    if ref.api_version not in ("", "v1"):
        raise ValidationError(f"{path}.apiVersion", unsupported(ref.api_version, ("v1",)))
    field_path = ref.field_path
    if not field_path:
        raise ValidationError(f"{path}.fieldPath", "required")
    check_string_size(f"{path}.fieldPath", field_path)
    subscripted = split_subscript(field_path)
    if subscripted is None:
        if field_path not in ENV_FIELD_PATHS:
            raise ValidationError(f"{path}.fieldPath", unsupported(field_path, ENV_FIELD_PATHS))
        return
    base, key = subscripted
    if base == "metadata.labels":
        check_qualified_name(f"{path}.fieldPath", key)
    elif base == "metadata.annotations":
        check_qualified_name(f"{path}.fieldPath", key.lower())  # annotations: any case, as Kubernetes
    else:
        raise ValidationError(f"{path}.fieldPath", f"invalid value {quote(base)}: does not support subscript")


def split_subscript(field_path: str) -> tuple[str, str] | None:
    """Kubernetes' SplitMaybeSubscriptedPath: ``metadata.labels['k']`` -> ("metadata.labels", "k");
    None without a subscript."""
    if not field_path.endswith("']"):
        return None
    base, opener, key = field_path[:-2].partition("['")
    if not opener or not base:
        return None
    return base, key


def _check_resource_field_ref(path: str, ref: objects_pb2.ResourceFieldSelector) -> None:
    """The resource a container's env may ask for; the container (default: itself) is found by
    the agent, as the kubelet does (its status says when it is not)."""
    if ref.container_name:
        check_string_size(f"{path}.containerName", ref.container_name)
    if not ref.resource:
        raise ValidationError(f"{path}.resource", "required")
    if ref.resource not in CONTAINER_RESOURCE_FIELDS:
        raise ValidationError(f"{path}.resource", unsupported(ref.resource, CONTAINER_RESOURCE_FIELDS))
    if ref.divisor:
        check_divisor(f"{path}.divisor", ref.resource, ref.divisor)


def check_divisor(path: str, resource: str, divisor: str) -> None:
    """A divisor Kubernetes allows for ``resource`` (limits.cpu: 1m or 1; memory and
    ephemeral-storage: 1 or one of a decimal or binary unit). Compared by value, so "1000m" is 1;
    zero means unset (1)."""
    try:
        value = parse_quantity(divisor)
    except ValueError:
        raise ValidationError(path, f"invalid quantity {quote(divisor)}") from None
    if value == 0:
        return
    name = resource.partition(".")[2]
    allowed = _CPU_DIVISORS if name == "cpu" else _BYTE_DIVISORS
    if value not in {parse_quantity(a) for a in allowed}:
        values = "1m and 1" if name == "cpu" else ", ".join(allowed)  # Kubernetes' wording
        raise ValidationError(
            path,
            f"invalid value {quote(divisor)}: only divisor's values {values} are supported with "
            f"{_DIVISOR_WORDS[name]}",
        )


def _check_env_from(path: str, source: objects_pb2.EnvFromSource) -> None:
    if source.prefix:
        check_string_size(f"{path}.prefix", source.prefix)
        check_env_var_name(f"{path}.prefix", source.prefix)
    given = [f for f in ("config_map_ref", "secret_ref") if source.HasField(f)]
    if not given:
        raise ValidationError(path, "must specify one of: `configMapRef` or `secretRef`")
    if len(given) > 1:
        raise ValidationError(path, "may not have more than one field specified at a time")
    if source.HasField("config_map_ref"):
        _check_object_name(f"{path}.configMapRef.name", source.config_map_ref.name)
    else:
        _check_object_name(f"{path}.secretRef.name", source.secret_ref.name)
