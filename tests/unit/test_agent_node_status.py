"""The node's registration and lease loop against a scripted master."""

from __future__ import annotations

import asyncio
import os
import tempfile

import psutil
import pytest

from pykubelet.downward import node_allocatable
from pykubelet.node_info import PodCounts
from pykubelet.node_status import NodeConfig, NodeStatusReporter
from pymaster.api import errors, objects_pb2, services_pb2
from pymaster.api.quantity import memory_bytes


def config(tmp_path) -> NodeConfig:
    return NodeConfig(
        name="n1", labels={"disk": "ssd"}, max_pods=7, internal_ip="10.0.0.5", api_port=10250,
        root_dir=str(tmp_path), runtime_version="20.10.24", agent_version="0.1.0", lease_interval=0.01,
        status_interval=0.01, hostname="host-1",
        taints=[objects_pb2.Taint(key="dedicated", effect="NoSchedule")],  # --register-with-taints
    )


class FakeMaster:
    """Answers RenewLease from a script of replies/errors; counts registrations."""

    def __init__(self, renewals: list[float | Exception]):
        self.renewals = renewals
        self.registered: list[objects_pb2.Node] = []
        self.renewed = 0
        self.reports = 0

    async def register_node(self, node: objects_pb2.Node) -> services_pb2.RegisterNodeResponse:
        self.registered.append(node)
        return services_pb2.RegisterNodeResponse(node=node)

    async def renew_lease(self, node_name: str, requested_seconds: float) -> services_pb2.RenewLeaseResponse:
        reply = self.renewals.pop(0) if self.renewals else 0.01
        if isinstance(reply, Exception):
            raise reply
        self.renewed += 1
        return services_pb2.RenewLeaseResponse(next_renew_seconds=reply)

    async def report_node_status(self, node_name: str, status: objects_pb2.NodeStatus) -> objects_pb2.Node:
        self.reports += 1
        if self.reports == 1:
            raise errors.NotFound("node n1 not found")
        return objects_pb2.Node()


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def test_build_node(tmp_path) -> None:
    reporter = NodeStatusReporter(None, config(tmp_path), lambda: PodCounts(1, 2))  # type: ignore[arg-type]
    node = reporter.build_node()
    assert node.metadata.name == "n1"
    assert node.metadata.labels["disk"] == "ssd" and node.metadata.labels["kubernetes.io/hostname"] == "n1"
    assert [(t.key, t.effect) for t in node.spec.taints] == [("dedicated", "NoSchedule")]
    status = node.status
    assert status.capacity["pods"] == "7" and dict(status.allocatable) == dict(status.capacity)
    addresses = [(a.type, a.address) for a in status.addresses]
    assert addresses == [("InternalIP", "10.0.0.5"), ("Hostname", "host-1")]
    assert status.daemon_endpoints.kubelet_endpoint.port == 10250
    assert status.node_info.container_runtime_version == "docker://20.10.24"
    assert (status.usage.running_pods, status.usage.running_containers) == (1, 2)
    assert not status.conditions  # conditions are the master's


def test_an_agent_that_cannot_see_its_runtime_reports_not_ready(tmp_path) -> None:
    reasons = ["PLEG is not healthy: pleg was last seen active 4.0s ago; threshold is 3s", None]
    reporter = NodeStatusReporter(None, config(tmp_path), PodCounts, not_ready=reasons.pop)  # type: ignore[arg-type]
    assert list(reporter.build_status().conditions) == []
    (condition,) = reporter.build_status().conditions
    assert (condition.type, condition.status, condition.reason) == ("Ready", "False", "KubeletNotReady")
    assert condition.message.startswith("PLEG is not healthy")


def test_build_status_advertises_extended_resources(tmp_path) -> None:
    cfg = config(tmp_path)
    cfg.extended_resources = {"example.com/dongle": "2", "example.org/fpga": "1"}
    status = NodeStatusReporter(None, cfg, PodCounts).build_status()  # type: ignore[arg-type]
    for resources in (status.capacity, status.allocatable):
        assert resources["example.com/dongle"] == "2" and resources["example.org/fpga"] == "1"
        assert set(resources) == {
            "cpu", "memory", "ephemeral-storage", "pods", "example.com/dongle", "example.org/fpga"
        }


def test_ephemeral_storage_is_the_root_dirs_file_system() -> None:
    # A root dir on a tmpfs, whose size differs from that of "/": the root dir's file system counts.
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root_dir:
        st = os.statvfs(root_dir)
        size = st.f_blocks * st.f_frsize
        assert size != psutil.disk_usage("/").total
        status = NodeStatusReporter(None, config(root_dir), PodCounts).build_status()  # type: ignore[arg-type]
        for resources in (status.capacity, status.allocatable):
            assert memory_bytes(resources["ephemeral-storage"]) == size
        assert status.capacity["ephemeral-storage"][-2:] in ("Ki", "Mi", "Gi", "Ti")  # the kubelet's notation
        # The downward API's default for an unset limit is the same file system's size.
        assert node_allocatable(root_dir)["ephemeral-storage"] == str(size)


async def test_lease_registers_again_on_not_found_and_retries_unavailable(tmp_path) -> None:
    master = FakeMaster([0.01, errors.Unavailable("down"), errors.NotFound("unknown node"), 0.01])
    reporter = NodeStatusReporter(master, config(tmp_path), PodCounts)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run_lease())
    try:
        await wait_for(lambda: master.renewed >= 3)
    finally:
        task.cancel()
    assert len(master.registered) == 2
    assert reporter.registered.is_set()


async def test_status_report_registers_again_on_not_found(tmp_path) -> None:
    master = FakeMaster([])
    reporter = NodeStatusReporter(master, config(tmp_path), PodCounts)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run_status())
    try:
        await wait_for(lambda: master.reports >= 2)
    finally:
        task.cancel()
    assert len(master.registered) == 2


async def test_a_refused_certificate_asks_for_a_new_one(tmp_path) -> None:
    master = FakeMaster([errors.Unauthenticated("certificate revoked"), errors.Unavailable("down"), 0.01])
    refused: list[str] = []
    reporter = NodeStatusReporter(master, config(tmp_path), PodCounts, on_unauthenticated=refused.append)  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run_lease())
    try:
        await wait_for(lambda: master.renewed >= 1)
    finally:
        task.cancel()
    assert refused == ["certificate revoked"]  # not for UNAVAILABLE
