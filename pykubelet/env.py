"""A container's environment, resolved the kubelet's way (``makeEnvironmentVariables``) just
before each start, and its command and args with ``$(VAR)`` expanded against it.

0. The Service variables (``pykubelet.service_env``), when the agent is given its Services
   (``services_for``; None, as for an agent with no master, adds none).
1. ``envFrom``, in order: every key of the ConfigMap or Secret, with ``prefix``; a key that is not
   a valid environment variable name is skipped, and the skipped keys are reported in one Warning
   event per source (``InvalidEnvironmentVariableNames``).
2. ``env``, in order, each entry replacing an earlier one of its name: ``value`` with ``$(VAR)``
   expanded against what is defined so far, then the Service variables, or ``valueFrom``
   (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef).
3. The environment is 1 and 2, then every Service variable they do not define (the pod's own
   variables win).
4. ``command`` and ``args`` with ``$(VAR)`` expanded against the final environment.

A referenced ConfigMap or Secret that does not exist, or a key it lacks, fails the start
(``EnvError``: the container waits with ``CreateContainerConfigError`` and the next sync tries
again) unless the reference is ``optional``, in which case the variable (or the whole source) is
left out. Services not read yet from the master also fail the start (kubelet's "services have
not yet been read at least once"), so no pod misses ``KUBERNETES_SERVICE_HOST`` after an agent
restart. Secret values are bytes, decoded as UTF-8 (an invalid byte becomes U+FFFD, as it would
on its way to Docker's JSON API anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from google.protobuf.message import Message

from pykubelet.downward import field_value, resource_value
from pykubelet.expansion import expand, mapping
from pykubelet.service_env import (
    MASTER_SERVICE_NAME,
    MASTER_SERVICE_NAMESPACE,
    ServicesFor,
    ServicesNotSynced,
    service_env,
)
from pymaster.api import errors, objects_pb2
from pymaster.api.env_validation import is_env_var_name


class EnvError(Exception):
    """The environment could not be resolved; ``message`` is what the container status shows
    (kubelet's wording: ``configmap "x" not found``)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ObjectSource(Protocol):
    """Where ConfigMaps and Secrets are read (``pykubelet.config_objects.ConfigObjects``)."""

    async def config_map(self, namespace: str, name: str) -> objects_pb2.ConfigMap | None: ...

    async def secret(self, namespace: str, name: str) -> objects_pb2.Secret | None: ...


def _ignore(reason: str, message: str) -> None:
    pass


class _Objects:
    """The ConfigMaps and Secrets of one resolution, each read once (one consistent version for
    every reference to it)."""

    def __init__(self, source: ObjectSource | None, namespace: str):
        self._source = source
        self._namespace = namespace
        self._read: dict[tuple[str, str], Message | None] = {}

    async def get(self, kind: str, name: str) -> Message | None:
        """The object (``kind`` "configMap" or "secret"), None when it does not exist.

        Raises:
            EnvError: it could not be read.
        """
        if self._source is None:
            raise EnvError(f"couldn't get {kind} {self._namespace}/{name}, no kubeClient defined")
        key = (kind, name)
        if key not in self._read:
            read = self._source.config_map if kind == "configMap" else self._source.secret
            try:
                self._read[key] = await read(self._namespace, name)
            except errors.ApiError as err:
                raise EnvError(f"couldn't get {kind} {self._namespace}/{name}: {err.message}") from err
        return self._read[key]


def _data(kind: str, obj: Message) -> Mapping[str, str]:
    if kind == "secret":
        return {k: v.decode("utf-8", errors="replace") for k, v in obj.data.items()}  # type: ignore[attr-defined]
    return obj.data  # type: ignore[attr-defined]


def _not_found(kind: str, name: str) -> EnvError:
    return EnvError(f'{kind.lower()} "{name}" not found')


async def make_environment(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    objects: ObjectSource | None,
    pod_ip: str,
    host_ip: str,
    warn: Callable[[str, str], None] = _ignore,
    allocatable: Mapping[str, str] | None = None,
    services_for: ServicesFor | None = None,
) -> list[tuple[str, str]]:
    """The (name, value) pairs a container runs with, one per name.

    Args:
        pod: the pod (its namespace is where ConfigMaps and Secrets are read).
        container: one of its containers.
        objects: where ConfigMaps and Secrets are read; None: any reference to one fails.
        pod_ip: status.podIP for fieldRef (the sandbox's, or the node's on the host network).
        host_ip: status.hostIP for fieldRef.
        warn: called with (reason, message) for what the pod's events should say.
        allocatable: the node's resources for resourceFieldRef limits the container does not set
            (default: this machine's).
        services_for: the Services of a namespace, for the Service variables; None: none.

    Raises:
        EnvError: a source could not be resolved.
    """
    namespace = pod.metadata.namespace
    read = _Objects(objects, namespace)
    services = _service_env(pod, services_for)
    env: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        value = env.get(name)
        return value if value is not None else services.get(name)

    for source in container.env_from:
        kind, ref = ("secret", source.secret_ref) if source.HasField("secret_ref") else (
            "configMap", source.config_map_ref)
        obj = await read.get(kind, ref.name)
        if obj is None:
            if ref.optional:
                continue
            raise _not_found(kind, ref.name)
        invalid = []
        for key, value in sorted(_data(kind, obj).items()):
            name = source.prefix + key
            if is_env_var_name(name):
                env[name] = value
            else:
                invalid.append(name)
        if invalid:
            warn("InvalidEnvironmentVariableNames",
                 f"Keys [{', '.join(invalid)}] from the EnvFrom {kind} {namespace}/{ref.name} were skipped "
                 "since they are considered invalid environment variable names.")
    for var in container.env:
        if var.value or not var.HasField("value_from"):
            env[var.name] = expand(var.value, lookup)
            continue
        value = await _value_from(pod, container, var.value_from, read, pod_ip, host_ip, allocatable)
        if value is not None:
            env[var.name] = value
    return list(env.items()) + [(k, v) for k, v in services.items() if k not in env]


def _service_env(pod: objects_pb2.Pod, services_for: ServicesFor | None) -> dict[str, str]:
    """The pod's Service variables by name.

    Raises:
        EnvError: the agent has not read the Services yet.
    """
    if services_for is None:
        return {}
    namespace = pod.metadata.namespace
    links = not pod.spec.HasField("enable_service_links") or pod.spec.enable_service_links
    try:
        defaults = services_for(MASTER_SERVICE_NAMESPACE)
        masters = [s for s in defaults if s.metadata.name == MASTER_SERVICE_NAME]
        own = services_for(namespace) if links else []
    except ServicesNotSynced:
        raise EnvError("services have not yet been read at least once, cannot construct envvars") from None
    return dict(service_env(own, namespace, links, masters[0] if masters else None))


async def _value_from(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    source: objects_pb2.EnvVarSource,
    read: _Objects,
    pod_ip: str,
    host_ip: str,
    allocatable: Mapping[str, str] | None,
) -> str | None:
    """One ``valueFrom``; None: an optional reference to what does not exist (left out)."""
    try:
        if source.HasField("field_ref"):
            ref = source.field_ref
            if ref.api_version not in ("", "v1"):
                raise EnvError(f"unsupported pod version: {ref.api_version}")
            return field_value(pod, ref.field_path, pod_ip, host_ip)
        if source.HasField("resource_field_ref"):
            ref = source.resource_field_ref
            return resource_value(pod, ref.container_name or container.name, ref.resource, ref.divisor,
                                  allocatable)
    except ValueError as err:
        raise EnvError(str(err)) from err
    if source.HasField("secret_key_ref"):
        kind, key_ref = "secret", source.secret_key_ref
    elif source.HasField("config_map_key_ref"):
        kind, key_ref = "configMap", source.config_map_key_ref
    else:  # refused by validation; a pod from elsewhere gets a readable error rather than ""
        raise EnvError("valueFrom names no source")
    obj = await read.get(kind, key_ref.name)
    if obj is None:
        if key_ref.optional:
            return None
        raise _not_found(kind, key_ref.name)
    data = _data(kind, obj)
    if key_ref.key not in data:
        if key_ref.optional:
            return None
        title = "Secret" if kind == "secret" else "ConfigMap"
        raise EnvError(f"couldn't find key {key_ref.key} in {title} {pod.metadata.namespace}/{key_ref.name}")
    return data[key_ref.key]


async def resolve_container(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    objects: ObjectSource | None,
    pod_ip: str,
    host_ip: str,
    warn: Callable[[str, str], None] = _ignore,
    allocatable: Mapping[str, str] | None = None,
    services_for: ServicesFor | None = None,
) -> objects_pb2.Container:
    """A copy of ``container`` as it runs: ``env`` the resolved (name, value) pairs (no
    ``valueFrom``, no ``envFrom``), ``command`` and ``args`` expanded against them.

    Arguments as for ``make_environment``.

    Raises:
        EnvError: the environment could not be resolved.
    """
    env = await make_environment(pod, container, objects, pod_ip, host_ip, warn, allocatable, services_for)
    lookup = mapping(env)
    resolved = objects_pb2.Container()
    resolved.CopyFrom(container)
    del resolved.env[:]
    del resolved.env_from[:]
    resolved.env.extend(objects_pb2.EnvVar(name=name, value=value) for name, value in env)
    resolved.command[:] = [expand(part, lookup) for part in container.command]
    resolved.args[:] = [expand(part, lookup) for part in container.args]
    return resolved
