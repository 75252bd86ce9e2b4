"""Routes to other nodes' pod CIDRs via their InternalIP (flannel's host-gw model), kept in step
with the cluster's nodes.

``wanted_routes`` is the pure rule: every other node with a podCIDR and an InternalIP gets a
route, except nodes whose InternalIP is an address of this host (several agents on one engine:
their bridges' connected routes already reach them). Routes are installed with
``ip route replace ... proto ROUTE_PROTO``; that protocol number is the record of what this
component added, so only those routes are ever removed (never the kernel's or the admin's).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
from collections.abc import Callable, Iterable, Mapping

import psutil

from pykubelet.cluster_view import WatchedKind
from pymaster.api import objects_pb2

log = logging.getLogger(__name__)

ROUTE_PROTO = "199"  # our mark on the routes we add (free in /etc/iproute2/rt_protos)


def local_addresses() -> set[str]:
    """Every IPv4 address of this host's interfaces."""
    return {
        addr.address
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family.name == "AF_INET"
    }


def _internal_ip(node: objects_pb2.Node) -> str:
    return next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")


def _is_local(address: str, local: set[str]) -> bool:
    try:
        return address in local or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def wanted_routes(nodes: Iterable[objects_pb2.Node], own_pod_cidr: str, local: set[str]) -> dict[str, str]:
    """The routes this node needs: pod CIDR -> gateway (the node's InternalIP).

    Args:
        nodes: every node of the cluster (this one included).
        own_pod_cidr: this node's pod CIDR (skipped: it is the bridge's connected route).
        local: this host's addresses (``local_addresses()``).
    """
    routes: dict[str, str] = {}
    for node in nodes:
        cidr, via = node.spec.pod_cidr, _internal_ip(node)
        if not cidr or not via or cidr == own_pod_cidr or _is_local(via, local):
            continue
        try:
            ipaddress.ip_network(cidr)
            ipaddress.ip_address(via)
        except ValueError:
            continue  # the master validates these; a bad one must not stop the others
        routes[cidr] = via
    return routes


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def installed_routes() -> dict[str, str]:
    """The routes this component added (proto ROUTE_PROTO): destination -> gateway. Blocking."""
    result = _ip("-j", "route", "show", "proto", ROUTE_PROTO)
    if result.returncode != 0 or not result.stdout.strip():
        return {}
    return {r["dst"]: r.get("gateway", "") for r in json.loads(result.stdout)}


def apply_routes(wanted: Mapping[str, str], installed: Mapping[str, str]) -> None:
    """Replaces the routes that are missing or changed, deletes ours that are no longer wanted.
    A route the kernel refuses (gateway not on a connected network) is logged and skipped. Blocking."""
    for cidr, via in wanted.items():
        if installed.get(cidr) == via:
            continue
        result = _ip("route", "replace", cidr, "via", via, "proto", ROUTE_PROTO)
        if result.returncode != 0:
            log.warning("pod route refused cidr=%s via=%s error=%s", cidr, via, result.stderr.strip())
        else:
            log.info("pod route set cidr=%s via=%s", cidr, via)
    for cidr in installed.keys() - wanted.keys():
        _ip("route", "del", cidr, "proto", ROUTE_PROTO)
        log.info("pod route removed cidr=%s", cidr)


class RouteManager:
    """Keeps the routes to other nodes' pod CIDRs.

    Args:
        nodes: the cluster view's nodes (``ClusterView.nodes``).
        own_pod_cidr: returns this node's pod CIDR ("" until known).
        resync_interval: seconds between full resyncs (a route someone deleted comes back).
    """

    def __init__(self, nodes: WatchedKind, own_pod_cidr: Callable[[], str], resync_interval: float = 30.0):
        self._nodes = nodes
        self._own = own_pod_cidr
        self._interval = resync_interval
        self._dirty = asyncio.Event()
        nodes.add_listener(lambda _resource: self._dirty.set())

    async def sync(self) -> None:
        """One pass: compute the wanted routes and apply them."""
        local = await asyncio.to_thread(local_addresses)
        nodes = [n for n in self._nodes.objects.values() if isinstance(n, objects_pb2.Node)]
        wanted = wanted_routes(nodes, self._own(), local)
        installed = await asyncio.to_thread(installed_routes)
        await asyncio.to_thread(apply_routes, wanted, installed)

    async def run(self) -> None:
        """Syncs after every change of the nodes (and every resync interval), until cancelled."""
        await self._nodes.synced.wait()
        while True:
            self._dirty.clear()
            try:
                await self.sync()
            except (OSError, ValueError) as err:
                log.warning("pod routes sync failed error=%s", err)
            try:
                await asyncio.wait_for(self._dirty.wait(), self._interval)
            except TimeoutError:
                pass
