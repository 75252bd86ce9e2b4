"""The node's pod network: a Docker bridge network ``pykube-<node>`` on the node's pod CIDR
(``spec.podCIDR``, given at registration), which every pod's infra container joins (not under
``hostNetwork``), plus the iptables rules of ``iptables_rules``; and each pod's sandbox settings
(``sandbox_config``: that network and the pod's DNS, ``pod_dns``).

The bridge: gateway = ``pod_gateway(podCIDR)`` (the node's address on it, where the node's DNS
server listens), Docker's masquerade off (``iptables_rules`` masquerades only traffic leaving the
cluster CIDR), a short Linux bridge name ``pk<hash of the node name>`` (15 characters at most),
label ``pykube.node.name``. It is checked every resync (an agent restart reuses it, its pods keep
running), re-created when its address plan differs and no container uses it.

A node the master gave no pod CIDR (an older master, the cluster CIDR full) runs its pods on the
engine's default bridge, as before, and ClusterFirst DNS falls back to Default (both logged once).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Protocol

from pykubelet.backoff import Backoff
from pykubelet.network import iptables_rules
from pykubelet.network.pod_dns import ResolvConf, effective_policy, parse_resolv_conf, pod_dns
from pykubelet.runtime import labels
from pykubelet.runtime.base import BridgeNetwork, ContainerRuntimeError, PodDNS, SandboxConfig
from pymaster.api import objects_pb2
from pymaster.api.dns_validation import DEFAULT
from pymaster.api.network import NetworkConfig, pod_gateway

log = logging.getLogger(__name__)

NODE_LABEL = labels.NODE_NAME  # the same label as the containers'
HOST_RESOLV_CONF = "/etc/resolv.conf"


class NetworkNotReady(ContainerRuntimeError):
    """The node's pod network is not set up yet (the kubelet's NetworkPluginNotReady)."""

    reason = "NetworkNotReady"
    temporary = True


class Registration(Protocol):
    """What the node's registration tells the pod network (``NodeStatusReporter``)."""

    @property
    def registered(self) -> asyncio.Event: ...

    network: NetworkConfig
    pod_cidr: str


class NetworkRuntime(Protocol):
    async def ensure_bridge_network(self, want: BridgeNetwork) -> bool: ...


def network_name(node_name: str) -> str:
    """The node's Docker network: ``pykube-<node>``."""
    return f"pykube-{node_name}"


def bridge_name(node_name: str) -> str:
    """A Linux bridge name for the node's network: ``pk`` + 10 hex digits of its name's hash (an
    interface name has at most 15 characters; node names are longer)."""
    return "pk" + hashlib.sha256(node_name.encode()).hexdigest()[:10]


def bridge_network(node_name: str, pod_cidr: str) -> BridgeNetwork:
    """The Docker network the node's pods join."""
    return BridgeNetwork(
        name=network_name(node_name),
        subnet=pod_cidr,
        gateway=pod_gateway(pod_cidr),
        options={
            "com.docker.network.bridge.name": bridge_name(node_name),
            # Docker's own masquerade would NAT pod-to-pod traffic between two nodes' bridges.
            "com.docker.network.bridge.enable_ip_masquerade": "false",
        },
        labels={NODE_LABEL: node_name},
    )


class PodNetwork:
    """Sets up and keeps the node's pod network; gives each pod its sandbox settings.

    Args:
        runtime: the Docker runtime (``ensure_bridge_network``).
        node_name: this node.
        registration: the node status reporter (``registered``, ``network``, ``pod_cidr``).
        resolv_conf: the host's resolv.conf (the kubelet's ``--resolv-conf``), for Default DNS and
            the host's search domains.
        manage_rules: install the iptables rules (off in tests that only exercise Docker).
        resync_interval: seconds between checks of the network and the rules.
        ready_timeout: how long a pod's sandbox waits for the network before failing with
            NetworkNotReady (retried by the next sync).
    """

    def __init__(
        self,
        runtime: NetworkRuntime,
        node_name: str,
        registration: Registration,
        resolv_conf: str = HOST_RESOLV_CONF,
        manage_rules: bool = True,
        resync_interval: float = 30.0,
        ready_timeout: float = 10.0,
    ):
        self._runtime = runtime
        self._node_name = node_name
        self._registration = registration
        self._resolv_conf = resolv_conf
        self._manage_rules = manage_rules
        self._interval = resync_interval
        self._ready_timeout = ready_timeout
        self._ready = asyncio.Event()
        self._ready_cidr = ""  # the pod CIDR the network was last made for
        self._last_error = "not set up yet"
        self._warned_no_cidr = False
        self._warned_dns_fallback = False

    @property
    def pod_cidr(self) -> str:
        """The pod CIDR of the network in use ("" while none)."""
        return self._ready_cidr

    async def sync(self) -> None:
        """One pass: makes the network and the rules match the registration's pod CIDR.

        Raises:
            ContainerRuntimeError: Docker refused the network.
            iptables_rules.IptablesError: a rule could not be added.
        """
        cidr = self._registration.pod_cidr
        if not cidr:
            if not self._warned_no_cidr:
                log.warning("node has no podCIDR: pods use the engine's default bridge node=%s",
                            self._node_name)
                self._warned_no_cidr = True
            self._ready_cidr = ""
            self._ready.set()
            return
        created = await self._runtime.ensure_bridge_network(bridge_network(self._node_name, cidr))
        if created:
            log.info("pod network created node=%s network=%s subnet=%s bridge=%s", self._node_name,
                     network_name(self._node_name), cidr, bridge_name(self._node_name))
        if self._manage_rules:
            cluster_cidr = self._registration.network.cluster_cidr
            added = await asyncio.to_thread(iptables_rules.ensure_pod_network_rules, cluster_cidr, cidr)
            if added:
                log.info("pod network rules added count=%d cluster_cidr=%s pod_cidr=%s", added,
                         cluster_cidr, cidr)
        self._ready_cidr = cidr
        self._ready.set()

    async def run(self) -> None:
        """Waits for the registration, then syncs every resync interval (with back-off after a
        failure) until cancelled."""
        await self._registration.registered.wait()
        backoff = Backoff()
        while True:
            try:
                await self.sync()
                backoff.reset()
                delay = self._interval
            except (ContainerRuntimeError, iptables_rules.IptablesError, OSError) as err:
                self._last_error = str(err)
                delay = backoff.next_delay()
                log.warning("pod network sync failed node=%s error=%s retry_in=%.2fs", self._node_name,
                            err, delay)
            await asyncio.sleep(delay)

    async def sandbox_config(self, pod: objects_pb2.Pod) -> SandboxConfig:
        """The network and DNS of ``pod``'s infra container.

        Raises:
            NetworkNotReady: the node's network is not set up within ``ready_timeout``.
        """
        try:
            await asyncio.wait_for(self._ready.wait(), self._ready_timeout)
        except TimeoutError:
            raise NetworkNotReady(f"network is not ready: {self._last_error}") from None
        cidr = self._ready_cidr
        host = self._host_resolv_conf()
        if effective_policy(pod, bool(cidr)) == DEFAULT and effective_policy(pod, True) != DEFAULT:
            if not self._warned_dns_fallback:
                log.warning("no node DNS server (no podCIDR): ClusterFirst pods get the host's DNS node=%s",
                            self._node_name)
                self._warned_dns_fallback = True
        nameservers, searches, options = pod_dns(pod, self._registration.network, cidr, host)
        dns = PodDNS(tuple(nameservers), tuple(searches), tuple(options))
        return SandboxConfig(network=network_name(self._node_name) if cidr else "", dns=dns)

    def _host_resolv_conf(self) -> ResolvConf:
        try:
            with open(self._resolv_conf, encoding="utf-8") as f:
                return parse_resolv_conf(f.read())
        except OSError as err:
            log.warning("cannot read the host's resolv.conf path=%s error=%s", self._resolv_conf, err)
            return ResolvConf()
