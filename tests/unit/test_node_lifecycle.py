"""The node lifecycle controller (pymaster.controllers.node_lifecycle and eviction_rate): zone
states, rates and the token bucket as tables, and the controller over a real SQLite store putting
and taking off the condition taints, rate limited."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2
from pymaster.api.nodes import ready_status
from pymaster.controllers.eviction_rate import (
    FULL_DISRUPTION,
    NORMAL,
    PARTIAL_DISRUPTION,
    EvictionPolicy,
    TokenBucket,
    zone_key,
    zone_rate,
    zone_state,
)
from pymaster.controllers.node_lifecycle import NodeLifecycleController, no_execute_taint, no_schedule_taints
from pymaster.main import build_parser
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store import open_store, sqlite_url

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], (0, NORMAL)),
        (["True"], (0, NORMAL)),
        (["Unknown"], (1, FULL_DISRUPTION)),
        (["False", "Unknown", ""], (3, FULL_DISRUPTION)),
        (["True", "Unknown"], (1, NORMAL)),  # half down, but not more than two
        (["True", "Unknown", "Unknown"], (2, NORMAL)),
        (["True", "Unknown", "Unknown", "Unknown"], (3, PARTIAL_DISRUPTION)),
        (["True"] * 3 + ["Unknown"] * 3, (3, NORMAL)),  # 0.5 < 0.55
        (["True"] * 9 + ["False"] * 11, (11, PARTIAL_DISRUPTION)),  # 0.55
    ],
)
def test_zone_state(statuses, expected):
    assert zone_state(statuses, 0.55) == expected


@pytest.mark.parametrize(
    ("state", "size", "expected"),
    [
        (NORMAL, 10, 0.1),
        (FULL_DISRUPTION, 10, 0.1),  # one zone down while others are up: normal rate
        (PARTIAL_DISRUPTION, 50, 0.0),  # small cluster: stop
        (PARTIAL_DISRUPTION, 51, 0.01),  # large cluster: slow down
    ],
)
def test_zone_rate(state, size, expected):
    assert zone_rate(state, size, EvictionPolicy()) == expected


def test_zone_key():
    node = objects_pb2.Node()
    assert zone_key(node) == ""
    node.metadata.labels["topology.kubernetes.io/zone"] = "a"
    assert zone_key(node) == ":\x00:a"
    node.metadata.labels["topology.kubernetes.io/region"] = "r"
    assert zone_key(node) == "r:\x00:a"


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_bucket():
    clock = Clock()
    bucket = TokenBucket(0.1, clock=clock)
    assert bucket.try_take()
    assert not bucket.try_take()
    assert bucket.seconds_to_token() == pytest.approx(10)
    clock.now = 5
    assert not bucket.try_take()
    clock.now = 10
    assert bucket.try_take()
    bucket.set_rate(0.0)
    clock.now = 1000
    assert bucket.seconds_to_token() is None and not bucket.try_take()
    bucket.set_rate(1.0)
    clock.now = 1001
    assert bucket.try_take()
    clock.now = 2000  # the burst caps what idle time earns
    assert bucket.try_take() and not bucket.try_take()


def test_rate_zero_leaves_no_token_to_take():
    # Entering master disruption mode with a full bucket must not taint one node after all.
    bucket = TokenBucket(0.1, clock=Clock())
    bucket.set_rate(0.0)
    assert not bucket.try_take() and bucket.seconds_to_token() is None
    bucket.set_rate(0.1)  # leaving it: a fresh limiter, full
    assert bucket.try_take()


@pytest.mark.parametrize(
    ("ready", "unschedulable", "no_schedule", "no_execute"),
    [
        ("True", False, set(), None),
        ("True", True, {(UNSCHEDULABLE, "NoSchedule")}, None),
        ("False", False, {(NOT_READY, "NoSchedule")}, (NOT_READY, "NoExecute")),
        ("Unknown", True, {(UNREACHABLE, "NoSchedule"), (UNSCHEDULABLE, "NoSchedule")},
         (UNREACHABLE, "NoExecute")),
        ("", False, set(), None),
    ],
)
def test_condition_taints(ready, unschedulable, no_schedule, no_execute):
    assert no_schedule_taints(ready, unschedulable) == no_schedule
    assert no_execute_taint(ready) == no_execute


# ---- the controller over a real store ----

GRACE = 0.3


@pytest.fixture
async def registry(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    await store.open()
    yield Registry(store, NodeLeases(GRACE))
    await store.close()


async def register(registry: Registry, name: str) -> None:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    await registry.nodes.register(node)


def taints(registry: Registry, name: str) -> set[str]:
    return {f"{t.key}:{t.effect}" for t in registry.nodes.get("", name).spec.taints}


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def keep_alive(registry: Registry, names: list[str]) -> None:
    while True:
        for name in names:
            await registry.nodes.renew_lease(name, 0.05)
        await asyncio.sleep(0.05)


async def test_unreachable_node_is_tainted_and_untainted_when_back(registry):
    await register(registry, "n1")
    await register(registry, "n2")
    metrics = CollectorRegistry()
    controller = NodeLifecycleController(registry, metrics_registry=metrics)
    controller.start()
    alive = asyncio.get_running_loop().create_task(keep_alive(registry, ["n2"]))
    try:
        both = {f"{UNREACHABLE}:NoExecute", f"{UNREACHABLE}:NoSchedule"}
        await until(lambda: taints(registry, "n1") == both)
        assert ready_status(registry.nodes.get("", "n1")) == "Unknown"
        (no_execute,) = [t for t in registry.nodes.get("", "n1").spec.taints if t.effect == "NoExecute"]
        assert no_execute.time_added.seconds >= time.time() - 5
        assert taints(registry, "n2") == set()
        await until(lambda: metrics.get_sample_value("node_collector_evictions_total", {"zone": ""}) == 1)
        assert metrics.get_sample_value("node_collector_zone_health", {"zone": ""}) == 50

        await registry.nodes.renew_lease("n1", 1)
        await until(lambda: taints(registry, "n1") == set())
    finally:
        alive.cancel()
        await controller.stop()


async def test_cordoned_node_gets_the_unschedulable_taint(registry):
    await register(registry, "n1")
    controller = NodeLifecycleController(registry)
    controller.start()
    alive = asyncio.get_running_loop().create_task(keep_alive(registry, ["n1"]))
    try:
        node = registry.nodes.get("", "n1")
        node.spec.unschedulable = True
        await registry.nodes.update(node)
        await until(lambda: taints(registry, "n1") == {f"{UNSCHEDULABLE}:NoSchedule"})
        node = registry.nodes.get("", "n1")
        node.spec.unschedulable = False
        await registry.nodes.update(node)
        await until(lambda: taints(registry, "n1") == set())
    finally:
        alive.cancel()
        await controller.stop()


async def test_all_nodes_down_is_a_master_partition_no_noexecute_taint(registry):
    await register(registry, "n1")
    await register(registry, "n2")
    controller = NodeLifecycleController(registry)
    controller.start()
    try:
        both = {f"{UNREACHABLE}:NoSchedule"}
        await until(lambda: taints(registry, "n1") == both and taints(registry, "n2") == both)
        await until(lambda: controller.zone_states == {"": FULL_DISRUPTION})
        await controller.reconcile()
        assert taints(registry, "n1") == taints(registry, "n2") == both
    finally:
        await controller.stop()


async def test_tainting_is_rate_limited(registry):
    names = [f"n{i}" for i in range(5)]
    for name in names:
        await register(registry, name)
    clock = Clock(time.monotonic())
    # One node per 100 s: the first taint spends the burst, the next waits.
    controller = NodeLifecycleController(registry, EvictionPolicy(rate=0.01), clock=clock)
    controller.start()
    alive = asyncio.get_running_loop().create_task(keep_alive(registry, names[2:]))
    try:
        def tainted() -> list[str]:
            return [n for n in names if f"{UNREACHABLE}:NoExecute" in taints(registry, n)]

        await until(lambda: all(f"{UNREACHABLE}:NoSchedule" in taints(registry, n) for n in names[:2]))
        await until(lambda: len(tainted()) == 1)
        await controller.reconcile()
        assert len(tainted()) == 1
        clock.now += 100
        await controller.reconcile()
        await until(lambda: len(tainted()) == 2)
    finally:
        alive.cancel()
        await controller.stop()


async def test_partial_disruption_of_a_small_cluster_stops_tainting(registry):
    names = [f"n{i}" for i in range(4)]
    for name in names:
        await register(registry, name)
    controller = NodeLifecycleController(registry)
    controller.start()
    alive = asyncio.get_running_loop().create_task(keep_alive(registry, names[3:]))
    try:
        await until(lambda: controller.zone_states == {"": PARTIAL_DISRUPTION})
        await until(lambda: all(f"{UNREACHABLE}:NoSchedule" in taints(registry, n) for n in names[:3]))
        await controller.reconcile()
        # At most the first node to fail, before the zone turned unhealthy, has its NoExecute taint.
        assert sum(f"{UNREACHABLE}:NoExecute" in taints(registry, n) for n in names[:3]) <= 1
    finally:
        alive.cancel()
        await controller.stop()


# ---- the master's flags ----


def test_master_flags():
    args = build_parser().parse_args([
        "--node-eviction-rate", "0.5", "--secondary-node-eviction-rate", "0",
        "--unhealthy-zone-threshold", "0.7",
        "--large-cluster-size-threshold", "10", "--default-not-ready-toleration-seconds", "30",
        "--default-unreachable-toleration-seconds", "0",
    ])
    assert (args.node_eviction_rate, args.secondary_node_eviction_rate, args.unhealthy_zone_threshold,
            args.large_cluster_size_threshold) == (0.5, 0.0, 0.7, 10)
    assert (args.default_not_ready_toleration_seconds, args.default_unreachable_toleration_seconds) == (30, 0)
    defaults = build_parser().parse_args([])
    assert (defaults.node_eviction_rate, defaults.default_unreachable_toleration_seconds) == (0.1, 300)
    for bad in (["--unhealthy-zone-threshold", "0"], ["--node-eviction-rate", "-1"],
                ["--default-unreachable-toleration-seconds", "1.5"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)
