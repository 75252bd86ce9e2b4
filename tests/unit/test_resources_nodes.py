"""Extended resources of a node's status (pymaster.registry.nodes): the agent's reports keep what
the admin set, the admin's updates change only extended resources, as pure rules and through the
node registry on a real SQLite store."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.registry.leases import NodeLeases
from pymaster.registry.nodes import NodeRegistry, apply_status_report, merge_registration, merge_update
from pymaster.store.sqlite import SQLiteStore

DONGLE, FPGA = "example.com/dongle", "example.org/fpga"
NATIVE = {"cpu": "4", "memory": "8Gi", "pods": "110"}
NOW = 1_000_000


def reported(extended: dict[str, str] | None = None, name: str = "n1") -> objects_pb2.Node:
    """A node as its agent registers or reports it (capacity = allocatable)."""
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    for resources in (node.status.capacity, node.status.allocatable):
        resources.update({**NATIVE, **(extended or {})})
    node.status.addresses.add(type="InternalIP", address="10.0.0.5")
    return node


def stored(capacity: dict[str, str], allocatable: dict[str, str] | None = None) -> objects_pb2.Node:
    """A stored node whose extended resources are ``capacity`` / ``allocatable`` (default: same)."""
    node = merge_registration(None, reported(), "uid-1", NOW)
    node.status.capacity.update(capacity)
    node.status.allocatable.update(capacity if allocatable is None else allocatable)
    return node


def extended(node: objects_pb2.Node) -> tuple[dict[str, str], dict[str, str]]:
    status = node.status
    return (
        {k: v for k, v in status.capacity.items() if k not in NATIVE},
        {k: v for k, v in status.allocatable.items() if k not in NATIVE},
    )


# ---- the agent's reports ----


@pytest.mark.parametrize(
    ("before", "report", "after"),
    [
        pytest.param(({DONGLE: "4"}, {DONGLE: "3"}), {}, ({DONGLE: "4"}, {DONGLE: "3"}), id="admin's kept"),
        pytest.param(({DONGLE: "4"}, {}), {}, ({DONGLE: "4"}, {DONGLE: "4"}), id="allocatable from capacity"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {DONGLE: "2"}, ({DONGLE: "2"}, {DONGLE: "2"}),
                     id="the agent's own wins"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {FPGA: "1"},
                     ({DONGLE: "4", FPGA: "1"}, {DONGLE: "4", FPGA: "1"}), id="both"),
        pytest.param(({}, {}), {FPGA: "1"}, ({FPGA: "1"}, {FPGA: "1"}), id="agent only"),
    ],
)
def test_status_report_keeps_extended_resources_the_agent_does_not_name(before, report, after):
    node = stored(*before)
    apply_status_report(node, reported(report).status, NOW + 1)
    assert extended(node) == after
    assert node.status.capacity["cpu"] == "4"


def test_status_report_without_resources_changes_none():
    node = stored({DONGLE: "4"})
    bare = objects_pb2.NodeStatus()
    bare.addresses.add(type="InternalIP", address="10.0.0.6")
    apply_status_report(node, bare, NOW + 1)
    assert extended(node) == ({DONGLE: "4"}, {DONGLE: "4"})
    assert node.status.addresses[0].address == "10.0.0.6"


def test_registration_keeps_the_admins_extended_resources():
    node = merge_registration(stored({DONGLE: "4"}), reported({FPGA: "2"}), "uid-2", NOW + 60)
    assert extended(node) == ({DONGLE: "4", FPGA: "2"}, {DONGLE: "4", FPGA: "2"})


# ---- the admin's updates ----


def desired_from(current: objects_pb2.Node, capacity: dict, allocatable: dict) -> objects_pb2.Node:
    """``current`` as a client sends it back after changing the status' extended resources (a
    value None removes the entry, like a JSON merge patch's null)."""
    desired = objects_pb2.Node()
    desired.CopyFrom(current)
    for resources, change in ((desired.status.capacity, capacity), (desired.status.allocatable, allocatable)):
        for name, value in change.items():
            if value is None:
                del resources[name]
            else:
                resources[name] = value
    return desired


@pytest.mark.parametrize(
    ("before", "capacity", "allocatable", "after"),
    [
        pytest.param(({}, {}), {DONGLE: "4"}, {}, ({DONGLE: "4"}, {DONGLE: "4"}), id="capacity alone"),
        pytest.param(({}, {}), {DONGLE: "4"}, {DONGLE: "3"}, ({DONGLE: "4"}, {DONGLE: "3"}), id="both"),
        pytest.param(({DONGLE: "2"}, {DONGLE: "2"}), {DONGLE: "4"}, {}, ({DONGLE: "4"}, {DONGLE: "4"}),
                     id="allocatable left as it was follows"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {}, {DONGLE: "1"}, ({DONGLE: "4"}, {DONGLE: "1"}),
                     id="allocatable alone"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {DONGLE: None}, {DONGLE: None}, ({}, {}), id="removed"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {DONGLE: None}, {}, ({}, {}),
                     id="removed from capacity: from allocatable too"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {FPGA: "1"}, {},
                     ({DONGLE: "4", FPGA: "1"}, {DONGLE: "4", FPGA: "1"}), id="another added"),
        pytest.param(({DONGLE: "4"}, {DONGLE: "4"}), {"cpu": "64", "pods": None}, {"memory": "1Ti"},
                     ({DONGLE: "4"}, {DONGLE: "4"}), id="native resources stay the agent's"),
    ],
)
def test_merge_update_takes_the_admins_extended_resources(before, capacity, allocatable, after):
    current = stored(*before)
    merged = merge_update(current, desired_from(current, capacity, allocatable))
    assert extended(merged) == after
    assert {k: merged.status.capacity[k] for k in NATIVE} == NATIVE
    assert {k: merged.status.allocatable[k] for k in NATIVE} == NATIVE


def test_merge_update_without_a_status_leaves_the_resources_alone():
    current = stored({DONGLE: "4"})
    desired = objects_pb2.Node()
    desired.metadata.CopyFrom(current.metadata)
    desired.spec.unschedulable = True
    merged = merge_update(current, desired)
    assert merged.spec.unschedulable
    assert extended(merged) == ({DONGLE: "4"}, {DONGLE: "4"})
    assert merged.status == current.status


# ---- through the registry, on SQLite ----


@pytest.fixture
async def registry(tmp_path):
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield NodeRegistry(store, NodeLeases(40))
    await store.close()


async def test_admin_resources_survive_reports_and_restarts(registry):
    node = await registry.register(reported({FPGA: "1"}))
    patched = await registry.update(desired_from(node, {DONGLE: "4"}, {}))
    assert extended(patched) == ({DONGLE: "4", FPGA: "1"}, {DONGLE: "4", FPGA: "1"})

    after_report = await registry.report_status("n1", reported({FPGA: "1"}).status)
    assert extended(after_report) == extended(patched)
    restarted = await registry.register(reported({FPGA: "2"}))  # the agent's flag changed
    assert extended(restarted) == ({DONGLE: "4", FPGA: "2"}, {DONGLE: "4", FPGA: "2"})
    assert extended(registry.get("", "n1")) == extended(restarted)

    removed = await registry.update(desired_from(restarted, {DONGLE: None}, {DONGLE: None}))
    assert extended(removed) == ({FPGA: "2"}, {FPGA: "2"})
    same = await registry.update(removed)  # nothing changed: no write
    assert same.metadata.resource_version == removed.metadata.resource_version


@pytest.mark.parametrize(
    ("capacity", "allocatable", "error"),
    [
        ({DONGLE: "1.5"}, {}, f'status.capacity[{DONGLE}]: invalid value "1.5": must be an integer'),
        ({DONGLE: "2"}, {DONGLE: "3"}, f"status.allocatable[{DONGLE}]: invalid value"),
        ({}, {DONGLE: "1"}, f"status.allocatable[{DONGLE}]: {DONGLE} must also be in status.capacity"),
        ({"nvidia/gpu": "1"}, {}, "status.capacity[nvidia/gpu]: unsupported resource name"),
    ],
)
async def test_invalid_admin_resources_are_refused(registry, capacity, allocatable, error):
    node = await registry.register(reported())
    with pytest.raises(ValidationError) as exc:
        await registry.update(desired_from(node, capacity, allocatable))
    assert str(exc.value).startswith(error)
    assert extended(registry.get("", "n1")) == ({}, {})


async def test_an_agent_reporting_a_fraction_is_refused(registry):
    await registry.register(reported())
    with pytest.raises(ValidationError, match=r"must be an integer"):
        await registry.report_status("n1", reported({DONGLE: "0.5"}).status)
    with pytest.raises(ValidationError, match=r"must be an integer"):
        await registry.register(reported({DONGLE: "0.5"}))
