"""The Service environment variables a container starts with, the kubelet's way
(``getServiceEnvVarMap`` and ``envvars.FromServices``): for every Service with a cluster IP (not
headless) of the pod's namespace when ``enableServiceLinks`` is true or unset, and always the
``kubernetes`` Service of namespace ``default`` (in-cluster clients find the master through
``KUBERNETES_SERVICE_HOST``/``_PORT``), these variables, NAME being the Service's name upper-cased
with ``-`` as ``_``:

- ``NAME_SERVICE_HOST`` (the cluster IP), ``NAME_SERVICE_PORT`` (the first port),
  ``NAME_SERVICE_PORT_<PORTNAME>`` for every named port;
- Docker links' variables: ``NAME_PORT=tcp://ip:port`` (the first port), and per port
  ``NAME_PORT_<port>_<PROTO>`` (``tcp://ip:port``) with ``_PROTO``, ``_PORT`` and ``_ADDR``.

A Service of the pod's own namespace named ``kubernetes`` replaces the master's when links are
on (as in the kubelet). The pod's own ``env``/``envFrom`` win over these (``pykubelet.env``).
Only what exists when the container starts is seen: later Services do not change a running
container, as in Kubernetes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from google.protobuf.message import Message

from pymaster.api import objects_pb2

MASTER_SERVICE_NAMESPACE = "default"
MASTER_SERVICE_NAME = "kubernetes"

# services_for(namespace) -> the Services of that namespace, as the agent's view holds them.
# It raises ServicesNotSynced before the view has listed Services once.
ServicesFor = Callable[[str], Sequence[objects_pb2.Service]]


class ServicesNotSynced(Exception):
    """The agent has not read the Services yet: building an environment now would silently
    leave out ``KUBERNETES_SERVICE_HOST`` and the rest, so the start waits (kubelet's rule)."""


class ServiceCache(Protocol):
    """What ``services_from`` reads: ``pykubelet.cluster_view.ClusterView.services``."""

    objects: Mapping[tuple[str, str], Message]
    synced: asyncio.Event


def services_from(cache: ServiceCache) -> ServicesFor:
    """A ``services_for`` reading the agent's view of Services (``ClusterView.services``)."""

    def services_for(namespace: str) -> list[objects_pb2.Service]:
        if not cache.synced.is_set():
            raise ServicesNotSynced
        return [s for (ns, _), s in cache.objects.items() if ns == namespace]  # type: ignore[misc]

    return services_for


def has_cluster_ip(service: objects_pb2.Service) -> bool:
    """``v1helper.IsServiceIPSet``: a cluster IP that is neither empty nor ``None``."""
    return service.spec.cluster_ip not in ("", "None")


def env_name(name: str) -> str:
    """A Service or port name as a variable name part (``my-svc`` -> ``MY_SVC``)."""
    return name.replace("-", "_").upper()


def service_env(
    services: Iterable[objects_pb2.Service],
    namespace: str,
    enable_service_links: bool,
    master_service: objects_pb2.Service | None,
) -> list[tuple[str, str]]:
    """The (name, value) pairs for a pod of ``namespace``.

    Args:
        services: the Services of ``namespace``.
        namespace: the pod's namespace.
        enable_service_links: the pod's ``spec.enableServiceLinks`` (unset means true).
        master_service: the ``kubernetes`` Service of namespace ``default``, None when there is none.

    Returns:
        The variables, Services in name order, each Service's in the kubelet's order.
    """
    chosen: dict[str, objects_pb2.Service] = {}
    if master_service is not None and has_cluster_ip(master_service):
        chosen[master_service.metadata.name] = master_service
    if enable_service_links:
        for service in services:
            if service.metadata.namespace in ("", namespace) and has_cluster_ip(service):
                chosen[service.metadata.name] = service
    env: list[tuple[str, str]] = []
    for name in sorted(chosen):
        env.extend(_variables(chosen[name]))
    return env


def _variables(service: objects_pb2.Service) -> list[tuple[str, str]]:
    ports = service.spec.ports
    if not ports:  # validation requires a port of every non-headless Service; nothing to say
        return []
    prefix = env_name(service.metadata.name)
    ip = service.spec.cluster_ip
    env = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0].port))]
    env.extend((f"{prefix}_SERVICE_PORT_{env_name(p.name)}", str(p.port)) for p in ports if p.name)
    for index, port in enumerate(ports):
        proto = (port.protocol or "TCP").lower()
        url = f"{proto}://{ip}:{port.port}"
        if index == 0:  # Docker special-cases the first port
            env.append((f"{prefix}_PORT", url))
        port_prefix = f"{prefix}_PORT_{port.port}_{proto.upper()}"
        env.extend([(port_prefix, url), (f"{port_prefix}_PROTO", proto),
                    (f"{port_prefix}_PORT", str(port.port)), (f"{port_prefix}_ADDR", ip)])
    return env
