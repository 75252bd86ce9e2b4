"""The node's presence at the master: registration, the lease heartbeat and the status report,
each on its own timer and task so that a slow Docker call never delays them.

- Register: the full Node (labels, capacity, nodeInfo, addresses, the agent API's port, usage).
- Lease: ``RenewLease`` every ``next_renew_seconds`` of the master's reply (the master sets the
  heartbeat, swarmkit style). NOT_FOUND means the master lost or deleted the node: register
  again. An unreachable master is retried with capped, jittered back-off (0.2 s .. 10 s).
- Status: ``ReportNodeStatus`` every ``--status-interval`` with a fresh psutil reading.

Capacity and allocatable (equal: the agent reserves nothing for the system and has no eviction
threshold) are the host's cpu and memory, its ephemeral-storage (the size of the file system
holding ``--root-dir``, as the kubelet reports its root dir's), ``--max-pods`` and the
``--extended-resource`` counts; extended resources an admin set on the node are kept by the master
(the agent never reports them), and the agent's own win.

UNAUTHENTICATED means the master no longer accepts the node's certificate (expired, revoked,
node deleted): the reporter tells the certificate manager (``on_unauthenticated``), which renews
or joins again, and keeps retrying meanwhile.

Node conditions are the master's: it marks the node Ready when it hears from the agent and
Unknown when the lease runs out, so the agent reports none.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from pykubelet import node_info
from pykubelet.backoff import Backoff
from pymaster.api import errors, objects_pb2
from pymaster.api.network import NetworkConfig
from pymaster.api.nodes import KUBELET_NOT_READY, READY
from pymaster.client import Client

log = logging.getLogger(__name__)


@dataclass
class NodeConfig:
    """What the node reports about itself, from the flags and the start-up checks."""

    name: str
    labels: dict[str, str]
    max_pods: int
    internal_ip: str
    api_port: int
    root_dir: str
    runtime_version: str
    agent_version: str
    lease_interval: float = 10.0
    status_interval: float = 10.0
    hostname: str = field(default_factory=socket.gethostname)
    # --extended-resource: name -> whole count, advertised in capacity and allocatable.
    extended_resources: dict[str, str] = field(default_factory=dict)
    # --register-with-taints: what a node the master does not know yet is created with.
    taints: list[objects_pb2.Taint] = field(default_factory=list)


def node_labels(name: str, extra: dict[str, str], arch: str) -> dict[str, str]:
    """The node's labels: ``--node-labels`` plus the well-known ones, which win (the kubelet
    does not let a flag fake its hostname, OS or architecture)."""
    labels = dict(extra)
    labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch})
    return labels


class NodeStatusReporter:
    """Registers the node, keeps its lease and reports its status.

    Args:
        client: the master's client.
        config: the node's facts.
        counts: the running pod/container counts of the last relist.
        on_unauthenticated: called with the master's message when it refuses the node's
            certificate.
    """

    def __init__(
        self,
        client: Client,
        config: NodeConfig,
        counts: Callable[[], node_info.PodCounts],
        on_unauthenticated: Callable[[str], None] | None = None,
        not_ready: Callable[[], str | None] = lambda: None,
    ):
        self._client = client
        self._config = config
        self._counts = counts
        self._not_ready = not_ready
        self._on_unauthenticated = on_unauthenticated
        self._cpu = node_info.CpuSampler()
        self._registered = asyncio.Event()
        self._allocatable: dict[str, str] | None = None  # as the master last answered it
        # The cluster's address plan and this node's pod CIDR, from the registration's reply
        # (the pod network waits for ``registered``).
        self.network = NetworkConfig()
        self.pod_cidr = ""
        self._register_lock = asyncio.Lock()

    @property
    def registered(self) -> asyncio.Event:
        """Set while the master is believed to know the node."""
        return self._registered

    def build_status(self, now: datetime | None = None) -> objects_pb2.NodeStatus:
        """A complete NodeStatus, read now."""
        cfg = self._config
        now = now or datetime.now(UTC)
        capacity = {**node_info.capacity(cfg.max_pods, cfg.root_dir), **cfg.extended_resources}
        return objects_pb2.NodeStatus(
            capacity=capacity,
            allocatable=capacity,
            addresses=[
                objects_pb2.NodeAddress(type="InternalIP", address=cfg.internal_ip),
                objects_pb2.NodeAddress(type="Hostname", address=cfg.hostname),
            ],
            daemon_endpoints=objects_pb2.NodeDaemonEndpoints(
                kubelet_endpoint=objects_pb2.DaemonEndpoint(port=cfg.api_port)
            ),
            node_info=node_info.system_info(cfg.runtime_version, cfg.agent_version),
            usage=node_info.usage(cfg.root_dir, self._cpu, self._counts(), now),
            conditions=self._conditions(),
        )

    def _conditions(self) -> list[objects_pb2.NodeCondition]:
        """Ready=False (KubeletNotReady) while the agent cannot see its runtime, else nothing:
        the master marks a node that reports Ready."""
        message = self._not_ready()
        if message is None:
            return []
        return [
            objects_pb2.NodeCondition(type=READY, status="False", reason=KUBELET_NOT_READY, message=message)
        ]

    def build_node(self, now: datetime | None = None) -> objects_pb2.Node:
        """The Node to register."""
        node = objects_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = self._config.name
        labels = node_labels(self._config.name, self._config.labels, node_info.architecture())
        node.metadata.labels.update(labels)
        node.spec.taints.extend(self._config.taints)
        node.status.CopyFrom(self.build_status(now))
        return node

    async def allocatable(self, fresh: bool = False) -> dict[str, str]:
        """The node's allocatable as the master has it (with the extended resources an admin
        added), else as this agent reports it. ``fresh``: reports the status now and takes the
        master's answer (the last known one if the master cannot be reached)."""
        if fresh and self._registered.is_set():
            try:
                node = await self._client.report_node_status(self._config.name, self.build_status())
                self._allocatable = dict(node.status.allocatable)
            except errors.ApiError as err:
                log.warning("node status report failed node=%s code=%s error=%s", self._config.name,
                            err.code.name, err.message)
        if self._allocatable is not None:
            return dict(self._allocatable)
        return dict(self.build_status().allocatable)

    async def ensure_registered(self) -> None:
        """Registers the node unless registered, retrying with back-off until the master takes it."""
        async with self._register_lock:
            backoff = Backoff()
            while not self._registered.is_set():
                try:
                    reply = await self._client.register_node(self.build_node())
                except errors.ApiError as err:
                    self._check_refused(err)
                    delay = backoff.next_delay()
                    log.warning("node registration failed node=%s code=%s error=%s retry_in=%.2fs",
                                self._config.name, err.code.name, err.message, delay)
                    await asyncio.sleep(delay)
                    continue
                log.info("node registered node=%s uid=%s pod_cidr=%s", self._config.name,
                         reply.node.metadata.uid, reply.node.spec.pod_cidr or "none")
                self._allocatable = dict(reply.node.status.allocatable)
                self.network = NetworkConfig.from_proto(reply.network)
                self.pod_cidr = reply.node.spec.pod_cidr
                self._registered.set()

    async def run_lease(self) -> None:
        """Renews the lease until cancelled."""
        backoff = Backoff()
        while True:
            await self.ensure_registered()
            try:
                reply = await self._client.renew_lease(self._config.name, self._config.lease_interval)
            except errors.NotFound:
                log.warning("master does not know the node, registering again node=%s", self._config.name)
                self._registered.clear()
                # Back off too: a master that keeps forgetting the node must not be hammered.
                await asyncio.sleep(backoff.next_delay())
                continue
            except errors.ApiError as err:
                self._check_refused(err)
                delay = backoff.next_delay()
                log.warning("lease renewal failed node=%s code=%s error=%s retry_in=%.2fs", self._config.name,
                            err.code.name, err.message, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await asyncio.sleep(reply.next_renew_seconds or self._config.lease_interval)

    async def run_status(self) -> None:
        """Reports the node's status every status interval until cancelled."""
        while True:
            await self.ensure_registered()
            await asyncio.sleep(self._config.status_interval)
            try:
                node = await self._client.report_node_status(self._config.name, self.build_status())
                self._allocatable = dict(node.status.allocatable)
            except errors.NotFound:
                log.warning("master does not know the node, registering again node=%s", self._config.name)
                self._registered.clear()
            except errors.ApiError as err:
                log.warning("node status report failed node=%s code=%s error=%s", self._config.name,
                            err.code.name, err.message)

    def _check_refused(self, err: errors.ApiError) -> None:
        if err.code == grpc.StatusCode.UNAUTHENTICATED and self._on_unauthenticated is not None:
            self._on_unauthenticated(err.message)
