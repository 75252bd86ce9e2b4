"""The cluster's network settings (the master's ``--cluster-cidr``, ``--service-cluster-ip-range``,
``--service-node-port-range`` and ``--cluster-domain``), which the master hands every agent at
registration (``RegisterNodeResponse.network``), and the node IPAM rule: each node gets the next
free ``/24`` (``NODE_CIDR_MASK``) of the cluster CIDR, as kube-controller-manager's range
allocator does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container
from dataclasses import dataclass

from pymaster.api import services_pb2
from pymaster.api.errors import ValidationError

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
NODE_CIDR_MASK = 24


@dataclass(frozen=True)
class NetworkConfig:
    """The cluster's address plan."""

    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    node_port_range: str = DEFAULT_NODE_PORT_RANGE
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    def check(self) -> None:
        """Raises ValidationError naming the flag when a setting is malformed or the ranges overlap."""
        cluster = _network("--cluster-cidr", self.cluster_cidr)
        if cluster.prefixlen > NODE_CIDR_MASK:
            raise ValidationError("--cluster-cidr", f"must hold at least one /{NODE_CIDR_MASK}")
        services = _network("--service-cluster-ip-range", self.service_cidr)
        if services.overlaps(cluster):
            raise ValidationError("--service-cluster-ip-range",
                                  f"overlaps --cluster-cidr {self.cluster_cidr}")
        if services.num_addresses < 8:
            raise ValidationError("--service-cluster-ip-range", "too small: at least a /29")
        low, high = self.node_ports
        if not 1 <= low <= high <= 65535:
            raise ValidationError("--service-node-port-range", f"invalid range {self.node_port_range!r}")
        if not self.cluster_domain or " " in self.cluster_domain:
            raise ValidationError("--cluster-domain", f"invalid domain {self.cluster_domain!r}")

    @property
    def node_ports(self) -> tuple[int, int]:
        """The NodePort range, inclusive."""
        low, sep, high = self.node_port_range.partition("-")
        try:
            return int(low), int(high if sep else low)
        except ValueError:
            raise ValidationError("--service-node-port-range",
                                  f"invalid range {self.node_port_range!r}: expected LOW-HIGH") from None

    def to_proto(self) -> services_pb2.ClusterNetwork:
        return services_pb2.ClusterNetwork(
            cluster_cidr=self.cluster_cidr, service_cidr=self.service_cidr,
            cluster_domain=self.cluster_domain, node_port_range=self.node_port_range,
        )

    @classmethod
    def from_proto(cls, message: services_pb2.ClusterNetwork) -> NetworkConfig:
        """The settings a master sent (its defaults for what an older master left empty)."""
        return cls(
            cluster_cidr=message.cluster_cidr or DEFAULT_CLUSTER_CIDR,
            service_cidr=message.service_cidr or DEFAULT_SERVICE_CIDR,
            node_port_range=message.node_port_range or DEFAULT_NODE_PORT_RANGE,
            cluster_domain=message.cluster_domain or DEFAULT_CLUSTER_DOMAIN,
        )


def _network(flag: str, value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValidationError(flag, f"invalid CIDR {value!r}: {exc}") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValidationError(flag, "only IPv4 is supported")
    return network


def next_pod_cidr(cluster_cidr: str, used: Container[str], start: int = 0) -> tuple[str, int] | None:
    """The first ``/NODE_CIDR_MASK`` of the (IPv4) cluster CIDR no node holds, looking from the
    ``start``-th one on and around, and its position; None when all are taken. Callers start after
    the last one they took (kube's range allocator keeps the same cursor), so that taking every
    CIDR of a large cluster one by one does not look at the taken ones again each time."""
    network = ipaddress.IPv4Network(cluster_cidr)
    if network.prefixlen > NODE_CIDR_MASK:
        raise ValueError(f"{cluster_cidr} holds no /{NODE_CIDR_MASK}")
    count = 1 << (NODE_CIDR_MASK - network.prefixlen)
    size = 1 << (32 - NODE_CIDR_MASK)
    base = int(network.network_address)
    for offset in range(count):
        position = (start + offset) % count
        cidr = f"{ipaddress.IPv4Address(base + position * size)}/{NODE_CIDR_MASK}"
        if cidr not in used:
            return cidr, position
    return None


def pod_gateway(pod_cidr: str) -> str:
    """The node's own address on its pod network (the CIDR's first host): the Docker bridge's
    gateway, where the node's DNS server listens and pods' default route goes."""
    return str(next(ipaddress.ip_network(pod_cidr).hosts()))
