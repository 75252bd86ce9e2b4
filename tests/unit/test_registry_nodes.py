"""Table tests of the node registry's pure rules (pymaster.registry.nodes), the node facts
(pymaster.api.nodes) and the in-memory lease table (pymaster.registry.leases)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.nodes import kubelet_address, mark_ready, mark_unknown, ready_status
from pymaster.registry.leases import NodeLeases, next_renew_seconds
from pymaster.registry.nodes import apply_status_report, merge_registration, merge_update

NOW = 1_000_000


def reported_node(name: str = "n1", labels: dict[str, str] | None = None) -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.metadata.labels.update(labels or {})
    node.status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    node.status.allocatable.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="10.0.0.5")
    node.status.daemon_endpoints.kubelet_endpoint.port = 10250
    node.status.conditions.add(type="MemoryPressure", status="True")  # ignored: the master's
    return node


def test_an_agent_that_reports_not_ready_makes_its_node_not_ready():
    node = merge_registration(None, reported_node(), "uid-1", NOW)
    report = objects_pb2.NodeStatus()
    report.conditions.add(type="Ready", status="False", reason="x", message="PLEG is not healthy")
    apply_status_report(node, report, NOW + 5)
    ready = find_condition(node.status.conditions, "Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", "KubeletNotReady", "PLEG is not healthy")
    assert ready.last_heartbeat_time.seconds == NOW + 5
    apply_status_report(node, objects_pb2.NodeStatus(), NOW + 6)
    assert find_condition(node.status.conditions, "Ready").status == "True"
    assert [c.type for c in node.status.conditions] == ["Ready"]


def test_merge_registration_new_node():
    node = merge_registration(None, reported_node(labels={"zone": "a"}), "uid-1", NOW)
    assert (node.api_version, node.kind) == ("v1", "Node")
    assert node.metadata.uid == "uid-1"
    assert node.metadata.creation_timestamp.seconds == NOW
    assert dict(node.metadata.labels) == {"zone": "a"}
    assert node.status.allocatable["cpu"] == "4"
    ready = find_condition(node.status.conditions, "Ready")
    assert (ready.status, ready.reason) == ("True", "KubeletReady")
    assert ready.last_heartbeat_time.seconds == ready.last_transition_time.seconds == NOW
    assert len(node.status.conditions) == 1


def test_merge_registration_existing_node_keeps_admin_state():
    existing = merge_registration(None, reported_node(labels={"zone": "a"}), "uid-1", NOW)
    existing.spec.unschedulable = True
    existing.metadata.labels["team"] = "infra"  # set by an admin
    mark_unknown(existing, NOW + 50)

    node = merge_registration(existing, reported_node(labels={"zone": "b"}), "uid-2", NOW + 60)

    assert node.metadata.uid == "uid-1"
    assert node.spec.unschedulable
    # Only the first registration takes the agent's labels: the admin's (and the first) stay.
    assert dict(node.metadata.labels) == {"zone": "a", "team": "infra"}
    ready = find_condition(node.status.conditions, "Ready")
    assert ready.status == "True"
    assert ready.last_transition_time.seconds == NOW + 60


def test_a_node_sets_restricted_labels_never_and_its_own_labels_always():
    restricted = {
        "node-restriction.pykube.io/dedicated": "gpu",
        "node-restriction.kubernetes.io/pool": "x",
        "zone": "a",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": "n1",
    }
    first = merge_registration(None, reported_node(labels=restricted), "uid-1", NOW)
    assert dict(first.metadata.labels) == {
        "zone": "a", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": "n1"
    }
    first.metadata.labels["node-restriction.pykube.io/dedicated"] = "web"  # the admin's
    again = {**restricted, "zone": "z", "kubernetes.io/arch": "arm64", "extra": "x"}
    node = merge_registration(first, reported_node(labels=again), "uid-2", NOW + 60)
    assert dict(node.metadata.labels) == {
        "zone": "a",
        "kubernetes.io/arch": "arm64",  # a fact about itself: kept up to date
        "kubernetes.io/hostname": "n1",
        "node-restriction.pykube.io/dedicated": "web",
    }


def test_apply_status_report_updates_only_reported_fields():
    node = merge_registration(None, reported_node(), "uid-1", NOW)
    status = objects_pb2.NodeStatus()
    status.allocatable.update({"cpu": "3500m", "memory": "7Gi", "pods": "110"})
    status.usage.cpu_percent = 12.5

    apply_status_report(node, status, NOW + 10)

    assert node.status.allocatable["cpu"] == "3500m"
    assert node.status.capacity["cpu"] == "4"  # not in the report: kept
    assert node.status.addresses[0].address == "10.0.0.5"
    assert node.status.usage.cpu_percent == 12.5
    ready = find_condition(node.status.conditions, "Ready")
    assert ready.last_heartbeat_time.seconds == NOW + 10
    assert ready.last_transition_time.seconds == NOW


def test_mark_unknown_then_ready():
    node = merge_registration(None, reported_node(), "uid-1", NOW)
    assert mark_unknown(node, NOW + 40)
    ready = find_condition(node.status.conditions, "Ready")
    assert (ready.status, ready.reason, ready.message) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert ready.last_heartbeat_time.seconds == NOW  # the last time the agent was heard
    assert ready.last_transition_time.seconds == NOW + 40
    assert not mark_unknown(node, NOW + 80)
    assert mark_ready(node, NOW + 90)
    assert ready_status(node) == "True"


def test_merge_update_only_takes_metadata_and_spec():
    current = merge_registration(None, reported_node(labels={"zone": "a"}), "uid-1", NOW)
    desired = objects_pb2.Node()
    desired.CopyFrom(current)
    desired.metadata.labels["team"] = "infra"
    desired.spec.unschedulable = True
    desired.status.allocatable["cpu"] = "64"  # ignored: status is the agent's
    desired.metadata.uid = "forged"

    merged = merge_update(current, desired)

    assert dict(merged.metadata.labels) == {"zone": "a", "team": "infra"}
    assert merged.spec.unschedulable
    assert merged.status.allocatable["cpu"] == "4"
    assert merged.metadata.uid == "uid-1"
    assert merged.metadata.generation == 2


@pytest.mark.parametrize(
    ("addresses", "port", "expected"),
    [
        ([("InternalIP", "10.0.0.5")], 10250, "10.0.0.5:10250"),
        ([("Hostname", "h1"), ("InternalIP", "10.0.0.6")], 1, "10.0.0.6:1"),
        ([("InternalIP", "::1")], 10250, "[::1]:10250"),
        ([("Hostname", "h1")], 10250, None),
        ([("InternalIP", "10.0.0.5")], 0, None),
    ],
)
def test_kubelet_address(addresses, port, expected):
    node = objects_pb2.Node()
    for kind, address in addresses:
        node.status.addresses.add(type=kind, address=address)
    node.status.daemon_endpoints.kubelet_endpoint.port = port
    assert kubelet_address(node) == expected


@pytest.mark.parametrize(
    ("requested", "grace", "jitter", "expected"),
    [
        (0, 40, 0.0, 10.0),  # default
        (5, 40, 0.0, 5.0),
        (30, 40, 0.0, 40 / 3),  # at most a third of the grace period
        (0.01, 40, 0.0, 0.1),  # at least 0.1 s
        (10, 40, 0.5, 9.5),  # jitter: up to 10% shorter
        (1, 0.1, 0.0, 0.1),
    ],
)
def test_next_renew_seconds(requested, grace, jitter, expected):
    assert next_renew_seconds(requested, grace, jitter) == pytest.approx(expected)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_leases_expire_after_grace_and_come_back():
    clock = FakeClock()
    leases = NodeLeases(40, clock)
    assert not leases.renew("n1")
    clock.now += 20
    leases.renew("n1")
    clock.now += 30  # 50 s since registration, 30 s since renewal
    assert leases.pop_expired() == []
    assert leases.seconds_to_next_deadline() == pytest.approx(10)
    clock.now += 10
    assert leases.pop_expired() == ["n1"]
    assert leases.pop_expired() == []  # once per expiry
    assert leases.seconds_to_next_deadline() is None
    assert leases.renew("n1")  # back: the caller sets Ready=True
    assert not leases.renew("n1")


def test_leases_seed_and_remove():
    clock = FakeClock()
    leases = NodeLeases(10, clock)
    leases.seed(["n1", "n2"], unknown=["n2"])
    assert "n1" in leases and "n2" in leases
    assert leases.renew("n2")  # stored as Unknown: the first renewal restores Ready
    leases.remove("n1")
    clock.now += 10
    assert leases.pop_expired() == ["n2"]
    assert not leases.is_expired("n1")
