"""The node's pod network on the Docker Engine: one bridge network per node on the node's pod
CIDR, and the pod's resolv.conf written into its infra container.

The network is checked and reused when it already matches (an agent restart keeps its pods
running on it), re-created when its subnet or gateway differ and no container uses it, and
refused otherwise (pods would get addresses outside the node's pod CIDR).

resolv.conf: on a user-defined network Docker writes its embedded DNS server (127.0.0.11) into
a container's resolv.conf and forwards to the servers given; a pod must see its own nameservers
(the node's DNS server), so the file is rewritten after the infra container starts, as
Kubernetes' dockershim did. Containers joining the infra container's network namespace share
that file; Docker leaves a file it did not write last alone.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import docker
import docker.errors
import docker.types

from pykubelet.runtime import labels
from pykubelet.runtime.base import BridgeNetwork, ContainerRuntimeError, PodDNS
from pykubelet.runtime.docker.engine import Engine

log = logging.getLogger(__name__)


class NetworkConflict(ContainerRuntimeError):
    """The network exists with another address plan and containers still use it."""

    reason = "NetworkConflict"


def _matches(attrs: dict[str, Any], want: BridgeNetwork) -> bool:
    configs = (attrs.get("IPAM") or {}).get("Config") or []
    plans = {(c.get("Subnet"), c.get("Gateway")) for c in configs}
    options = attrs.get("Options") or {}
    return (
        attrs.get("Driver") == "bridge"
        and plans == {(want.subnet, want.gateway)}
        and all(options.get(k) == v for k, v in want.options.items())
    )


async def ensure_bridge_network(engine: Engine, want: BridgeNetwork) -> bool:
    """Makes the Docker network ``want.name`` match ``want``. Returns True when it was created
    (or re-created), False when the existing one was kept.

    Raises:
        NetworkConflict: it differs and containers are attached to it.
        ContainerRuntimeError: Docker refused (e.g. the subnet overlaps another network).
        RuntimeUnavailable: the engine did not answer.
    """

    def ensure(api: docker.APIClient) -> bool:
        try:
            attrs = api.inspect_network(want.name)
        except docker.errors.NotFound:
            attrs = None
        if attrs is not None:
            if _matches(attrs, want):
                return False
            if attrs.get("Containers"):
                raise NetworkConflict(
                    f"network {want.name} exists with another address plan and containers use it; "
                    f"wanted subnet {want.subnet}"
                )
            api.remove_network(attrs["Id"])
        pool = docker.types.IPAMPool(subnet=want.subnet, gateway=want.gateway)

        def create() -> None:
            api.create_network(
                want.name, driver="bridge", options=want.options, labels=want.labels,
                ipam=docker.types.IPAMConfig(pool_configs=[pool]), check_duplicate=True,
            )

        try:
            create()
        except docker.errors.APIError as err:
            if "overlaps" not in str(err) or not _remove_stale_overlapping(api, want):
                raise
            create()
        return True

    return await engine.run("ensure_network", ensure)


def _remove_stale_overlapping(api: docker.APIClient, want: BridgeNetwork) -> bool:
    """Removes the pod networks of other nodes (by the pykube.node.name label) whose subnet
    overlaps ``want``'s and that no container uses: what a node of another cluster on this host
    left behind (the master handed its CIDR out again). True when one was removed; a network in
    use, or not one of ours, is never touched."""
    wanted = ipaddress.ip_network(want.subnet)
    removed = False
    for summary in api.networks(filters={"label": labels.NODE_NAME}):
        attrs = api.inspect_network(summary["Id"])
        subnets = [c.get("Subnet") for c in (attrs.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
        if attrs.get("Name") == want.name or attrs.get("Containers"):
            continue
        if any(ipaddress.ip_network(subnet).overlaps(wanted) for subnet in subnets):
            log.info("removing a stale pod network network=%s subnet=%s", attrs.get("Name"),
                     ",".join(subnets))
            api.remove_network(attrs["Id"])
            removed = True
    return removed


async def remove_network(engine: Engine, name: str) -> None:
    """Removes a Docker network; a missing one is fine."""

    def remove(api: docker.APIClient) -> None:
        try:
            api.remove_network(name)
        except docker.errors.NotFound:
            pass

    await engine.run("remove_network", remove)


def resolv_conf_text(dns: PodDNS) -> str:
    """A resolv.conf's text: nameserver lines, then search, then options (the kubelet's order)."""
    lines = [f"nameserver {server}" for server in dns.nameservers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(f"{line}\n" for line in lines)


def write_resolv_conf(path: str, dns: PodDNS) -> None:
    """Rewrites the file at ``path`` (a container's ResolvConfPath on this host) in place: the
    running infra container has it bind-mounted, so its inode must stay.

    Raises:
        OSError: it could not be written (e.g. the engine is not on this host).
    """
    with open(path, "w", encoding="utf-8") as f:
        f.write(resolv_conf_text(dns))
