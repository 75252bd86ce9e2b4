"""The node proxy's sync loop (kube-proxy's iptables Proxier): level-triggered, like the kubelet.

A change of a Service or EndpointSlice only marks the proxier dirty; the loop then syncs at most
once per ``min_sync_period`` (a burst of endpoint changes costs one sync), and every
``full_sync_period`` anyway (rules someone else removed come back). A sync recomputes every
chain from the cluster view (``rules.build_rules``) and applies one ``iptables-restore
--noflush`` input holding the nat transaction and the filter one:

- the first sync (and the first after a failure, and the periodic one) is full: every chain is
  written, service chains left on the host by an earlier agent and no longer wanted are deleted,
  the jumps from the builtin chains are ensured (``-C || -I``) and route_localnet is turned on
  (NodePorts on 127.0.0.1, as kube-proxy does);
- the others write KUBE-SERVICES, KUBE-NODEPORTS and the chains whose rules changed, delete the
  chains gone, and rewrite the (small) filter table only when it changed.

The agent stopping leaves the rules in place (the data path survives an agent restart; the next
agent's first, full, sync takes them over). Only one agent per host proxies: each holds an
exclusive ``flock`` on ``lock_path`` while it programs the host, the others wait for it (several
agents on one host share one set of tables, as the e2e clusters do).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time

from pykubelet.cluster_view import ClusterView
from pykubelet.proxy import rules
from pykubelet.proxy.iptables import Iptables, IptablesError
from pykubelet.proxy.metrics import ProxyMetrics
from pymaster.api.kinds import ENDPOINT_SLICES, SERVICES
from pymaster.api.network import NetworkConfig

log = logging.getLogger(__name__)

DEFAULT_LOCK_PATH = "/run/pykube-proxy.lock"
_LOCK_RETRY = 1.0  # seconds between tries of a standby agent for the host lock


class Proxier:
    """Keeps this host's iptables in step with the cluster's Services and EndpointSlices.

    Args:
        view: the agent's cluster view (services and endpointslices are read).
        node_name: this node (for the Local traffic policies).
        network: the cluster's address plan (cluster CIDR for the masquerade rules).
        iptables: where the rules go (default: the host's tables).
        metrics: kube-proxy's metrics (None: not exported).
        min_sync_period: seconds between two syncs at least.
        full_sync_period: seconds between two full syncs at most.
        lock_path: the host-wide lock file; None: no lock (a namespace of its own).
    """

    def __init__(self, view: ClusterView, node_name: str, network: NetworkConfig, *,
                 iptables: Iptables | None = None, metrics: ProxyMetrics | None = None,
                 min_sync_period: float = 1.0, full_sync_period: float = 30.0,
                 lock_path: str | None = DEFAULT_LOCK_PATH):
        self.view = view
        self.node_name = node_name
        self.network = network
        self.iptables = iptables or Iptables()
        self.metrics = metrics
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.lock_path = lock_path
        self.applied: rules.ProxyRules | None = None  # what the host has, as of the last sync
        self._cache: rules.BuildCache = {}
        self.syncs = 0
        self._next_full = 0.0
        self._dirty = asyncio.Event()
        self._lock_fd: int | None = None
        view.add_listener(self.mark_dirty)

    def mark_dirty(self, resource: str = SERVICES.resource) -> None:
        """A cluster view listener: a service or slice changed, sync soon."""
        if resource in (SERVICES.resource, ENDPOINT_SLICES.resource):
            self._dirty.set()

    def _try_lock(self) -> bool:
        if self.lock_path is None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    async def sync(self) -> None:
        """Recomputes every chain and applies what changed (everything on a full sync).

        Raises:
            IptablesError: iptables-restore failed; the next sync is a full one.
        """
        start = time.monotonic()
        full = self.applied is None or start >= self._next_full
        view = self.view
        new = rules.build_rules(view.services.objects.values(), view.endpoint_slices.objects.values(),
                                self.node_name, self.network, self._cache)
        old = None if full else self.applied
        existing = await self.iptables.chains("nat") if full else []
        write, delete = rules.plan_nat(new.nat, old.nat if old else None, existing)
        text = rules.restore_text("nat", new.nat, write, delete)
        if old is None or old.filter != new.filter:
            text += rules.restore_text("filter", new.filter, new.filter)
        try:
            if full:
                # The jumps first, into chains made empty if they are new, and then the rules: a
                # packet to a ClusterIP is DNATed from the moment the restore commits (the other
                # way round, it left by the default route until the jumps were added).
                await self._ensure_base(existing)
            await self.iptables.restore(text)
        except IptablesError:
            self.applied = None
            if self.metrics:
                self.metrics.restore_failures.inc()
            raise
        self.applied = new
        self.syncs += 1
        if full:
            self._next_full = start + self.full_sync_period
        elapsed = time.monotonic() - start
        log.info("proxy rules synced full=%s chains_written=%d chains_deleted=%d seconds=%.3f", full,
                 len(write), len(delete), elapsed)
        if self.metrics:
            self.metrics.sync_duration.observe(elapsed)
            (self.metrics.full_sync_duration if full else self.metrics.partial_sync_duration).observe(elapsed)
            self.metrics.last_sync_timestamp.set(time.time())
            for table in ("nat", "filter"):
                self.metrics.iptables_total.labels(table=table).set(new.rule_count(table))

    async def _ensure_base(self, nat_chains: list[str]) -> None:
        """The chains the base jumps lead to (once each; the nat ones unless ``nat_chains``, just
        listed, has them), then the jumps."""
        targets = dict.fromkeys((table, args[-1]) for table, _, args in rules.BASE_JUMPS)
        for table, target in targets:
            if not (table == "nat" and target in nat_chains):
                await self.iptables.ensure_chain(table, target)
        for table, chain, args in rules.BASE_JUMPS:
            if await self.iptables.ensure_rule(table, chain, args):
                log.info("proxy jump added table=%s chain=%s target=%s", table, chain, args[-1])
        try:
            await self.iptables.sysctl("net.ipv4.conf.all.route_localnet", "1")
        except IptablesError as err:
            log.warning("cannot enable route_localnet (NodePorts on 127.0.0.1 will not answer): %s", err)

    async def run(self) -> None:
        """Waits for the host lock and the cluster view, then syncs until cancelled (rules stay)."""
        waiting_logged = False
        while not self._try_lock():
            if not waiting_logged:
                log.info("proxy standing by: another agent on this host holds %s", self.lock_path)
                waiting_logged = True
            await asyncio.sleep(_LOCK_RETRY)
        try:
            await self.view.wait_synced()
            self._dirty.set()
            last = -self.min_sync_period
            while True:
                timeout = max(0.0, self._next_full - time.monotonic()) if self.applied else 0.0
                try:
                    await asyncio.wait_for(self._dirty.wait(), timeout)
                except TimeoutError:
                    pass
                delay = last + self.min_sync_period - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._dirty.clear()
                last = time.monotonic()
                try:
                    await self.sync()
                except IptablesError as err:
                    log.error("proxy sync failed (full sync next): %s", err)
                    self._dirty.set()
        finally:
            self._unlock()
