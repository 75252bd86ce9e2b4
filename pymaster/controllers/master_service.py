"""The ``kubernetes`` Service of namespace ``default`` (kube-apiserver's
``pkg/controlplane/reconcilers``): how pods find the master. The master keeps, at start:

- Service ``kubernetes``: ClusterIP, clusterIP = the first host of ``--service-cluster-ip-range``
  (10.96.0.1 by default; the registry never hands it out dynamically), port 443 named ``https``
  with targetPort = the master's listen port, no selector, label ``component: apiserver``,
  ``provider: kubernetes``;
- EndpointSlice ``kubernetes`` (no managed-by label: the EndpointSlice controller leaves it
  alone, as a selector-less Service's) with the master's address: its ``--listen`` host, or for a
  wildcard listen (0.0.0.0, ::, empty) the host's first non-loopback IPv4 address.

Both are created when missing and corrected when they differ (a user's edit, a new listen port);
a ``kubernetes`` Service holding another clusterIP is deleted and made again, as Kubernetes does.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

import psutil

from pymaster.api import objects_pb2
from pymaster.api.errors import NotFound
from pymaster.registry import Registry

log = logging.getLogger(__name__)

NAME = "kubernetes"
NAMESPACE = "default"
PORT = 443
PORT_NAME = "https"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]", "*")


def master_address(listen_host: str) -> str:
    """The IPv4 address pods reach the master at, for its ``--listen`` host."""
    if listen_host not in _WILDCARDS:
        try:
            return str(ipaddress.IPv4Address(listen_host))
        except ValueError:
            return socket.gethostbyname(listen_host)  # a name such as "localhost"
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    return "127.0.0.1"


def first_service_ip(service_cidr: str) -> str:
    return str(next(ipaddress.ip_network(service_cidr).hosts()))


def desired_service(service_cidr: str, target_port: int) -> objects_pb2.Service:
    ip = first_service_ip(service_cidr)
    service = objects_pb2.Service(api_version="v1", kind="Service")
    service.metadata.name, service.metadata.namespace = NAME, NAMESPACE
    service.metadata.labels.update({"component": "apiserver", "provider": "kubernetes"})
    service.spec.type = "ClusterIP"
    service.spec.cluster_ip = ip
    service.spec.cluster_ips.append(ip)
    port = service.spec.ports.add(name=PORT_NAME, protocol="TCP", port=PORT)
    port.target_port.int_value = target_port
    return service


def desired_slice(address: str, port: int) -> objects_pb2.EndpointSlice:
    endpoint_slice = objects_pb2.EndpointSlice(api_version="discovery.k8s.io/v1", kind="EndpointSlice",
                                               address_type="IPv4")
    endpoint_slice.metadata.name, endpoint_slice.metadata.namespace = NAME, NAMESPACE
    endpoint_slice.metadata.labels["kubernetes.io/service-name"] = NAME
    endpoint = endpoint_slice.endpoints.add(addresses=[address])
    endpoint.conditions.ready = True
    endpoint.conditions.serving = True
    endpoint.conditions.terminating = False
    endpoint_slice.ports.add(name=PORT_NAME, protocol="TCP", port=port)
    return endpoint_slice


class MasterService:
    """Keeps the ``kubernetes`` Service and its EndpointSlice (see the module docstring).

    Args:
        registry: The registry both are written through.
        listen_host: The host of the master's ``--listen``.
    """

    def __init__(self, registry: Registry, listen_host: str):
        self._registry = registry
        self._listen_host = listen_host

    async def ensure(self, port: int) -> None:
        """Creates or corrects both objects for the master's bound ``port``."""
        services = self._registry.services
        want = desired_service(self._registry.network.service_cidr, port)
        try:
            current = services.get(NAMESPACE, NAME)
        except NotFound:
            current = None
        if current is not None and current.spec.cluster_ip != want.spec.cluster_ip:
            log.info("kubernetes service has the wrong clusterIP, recreating cluster_ip=%s want=%s",
                     current.spec.cluster_ip, want.spec.cluster_ip)
            await services.delete(NAMESPACE, NAME)
        _, action = await services.apply(want, record=False)
        address = master_address(self._listen_host)
        slices = self._registry.endpoint_slices
        _, slice_action = await slices.apply(desired_slice(address, port), record=False)
        log.info("kubernetes service ensured service=%s endpointslice=%s address=%s port=%d", action,
                 slice_action, address, port)
