"""The probe manager and its workers on a fake clock with fake probe attempts: the schedule
(initialDelaySeconds, periodSeconds, timeoutSeconds), thresholds, startup gating, result flips
calling on_change, events, restarts resetting the results, hung attempts counted failed at their
timeout without holding anyone else up, and the bookkeeping of ``sync`` / ``remove`` / ``stop``."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from pykubelet.prober import ProbeManager, ProbeMetrics
from pykubelet.prober.results import Outcome, ProbeType, Result
from pykubelet.prober.targets import ProbeTarget
from pykubelet.runtime.base import INFRA_CONTAINER_NAME
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime, container, pod_runtime

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
OK, FAIL = Outcome(Result.SUCCESS), Outcome(Result.FAILURE, "it hurts")
LIVENESS_KILL = "Container app failed liveness probe, will be restarted"
STARTUP_KILL = "Container app failed startup probe, will be restarted"


class FakeClock:
    """Monotonic seconds that move only when told; ``sleep`` waits for them."""

    def __init__(self) -> None:
        self.now = 100.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Moves time forward, waking every sleeper due on the way, in order."""
        end = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = end
        await settle()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class FakeProber:
    """The probe attempts: scripted outcomes per (container id, probe type); records each call."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.scripts: dict[tuple[str, ProbeType], Callable[[], Outcome] | list[Outcome]] = {}
        self.calls: list[tuple[float, str, ProbeType, str]] = []  # (time, container id, type, pod ip)
        self.hang: set[tuple[str, ProbeType]] = set()

    async def __call__(self, target: ProbeTarget, timeout: float) -> Outcome:
        key = (target.container_id, target.probe_type)
        self.calls.append((self.clock.now, target.container_id, target.probe_type, target.pod_ip))
        if key in self.hang:
            await asyncio.Event().wait()
        script = self.scripts.get(key, [])
        if callable(script):
            return script()
        return script.pop(0) if script else OK

    def times(self, cid: str, probe_type: ProbeType) -> list[float]:
        return [t for t, c, p, _ in self.calls if c == cid and p == probe_type]


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def pod_event(self, pod, type_, reason, message, container=""):
        self.events.append((type_, reason, message, container))


def probe(period=10, delay=0, timeout=1, success=1, failure=3) -> objects_pb2.Probe:
    return objects_pb2.Probe(
        exec=objects_pb2.ExecAction(command=["true"]), initial_delay_seconds=delay, period_seconds=period,
        timeout_seconds=timeout, success_threshold=success, failure_threshold=failure,
    )


def make_pod(uid="u1", **probes: objects_pb2.Probe) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=f"pod-{uid}", namespace="default", uid=uid))
    app = pod.spec.containers.add(name="app", image="busybox")
    for field, value in probes.items():
        getattr(app, f"{field}_probe").CopyFrom(value)
    return pod


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.prober = FakeProber(self.clock)
        self.changes: list[str] = []
        self.events = Events()
        self.registry = CollectorRegistry()
        self.manager = ProbeManager(
            FakeRuntime(), "192.0.2.2", self.changes.append, self.events, self.clock,
            metrics=ProbeMetrics(self.registry), sleep=self.clock.sleep, wall_clock=self.clock.wall,
            runner=self.prober,
        )

    def observed(self, *apps, uid="u1", ip="10.0.0.5", started_ago=0.0):
        """The pod's infra container and app containers (id, state) started ``started_ago`` s ago."""
        started = self.clock.wall() - timedelta(seconds=started_ago)
        infra = container(f"infra-{uid}", INFRA_CONTAINER_NAME, uid=uid, ip=ip)
        apps_ = [container(cid, name, state, uid=uid, started_at=started) for cid, name, state in apps]
        return pod_runtime(*apps_, infra, uid=uid)


@pytest.fixture
async def h():
    harness = Harness()
    yield harness
    await harness.manager.stop()


async def test_readiness_first_attempt_at_initial_delay_then_every_period(h):
    pod = make_pod(readiness=probe(period=10, delay=5))
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    assert not h.manager.readiness("u1", "app")
    await h.clock.advance(4.9)
    assert h.prober.calls == []
    await h.clock.advance(0.1)
    assert h.prober.times("c1", ProbeType.READINESS) == [105.0]
    assert h.manager.readiness("u1", "app")
    assert h.changes == ["u1"]
    await h.clock.advance(25)
    assert h.prober.times("c1", ProbeType.READINESS) == [105.0, 115.0, 125.0]
    assert h.changes == ["u1"]  # no flip, no wake-up
    assert h.prober.calls[0][3] == "10.0.0.5"  # the infra container's IP


async def test_container_started_earlier_is_probed_at_once(h):
    pod = make_pod(readiness=probe(period=10, delay=5))
    h.manager.sync(pod, h.observed(("c1", "app", "running"), started_ago=7))
    await settle()
    assert h.prober.times("c1", ProbeType.READINESS) == [100.0]
    assert h.manager.readiness("u1", "app")


async def test_after_an_agent_restart_liveness_is_spread_and_readiness_is_not(h):
    pod = make_pod(liveness=probe(period=10), readiness=probe(period=10))
    h.manager.sync(pod, h.observed(("c1", "app", "running"), started_ago=3600))
    await h.clock.advance(0)
    assert h.prober.times("c1", ProbeType.READINESS) == [100.0]
    await h.clock.advance(9.99)
    [first] = h.prober.times("c1", ProbeType.LIVENESS)
    assert 100.0 <= first < 110.0


async def test_errors_and_warnings_are_recorded_but_not_counted(h):
    pod = make_pod(readiness=probe(period=1, failure=1))
    h.prober.scripts[("c1", ProbeType.READINESS)] = [
        Outcome(Result.UNKNOWN, "exec probe not run: gone"),
        Outcome(Result.WARNING, "Probe terminated redirects"),
    ]
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(0)
    assert not h.manager.readiness("u1", "app") and h.changes == []
    await h.clock.advance(1)
    assert h.manager.readiness("u1", "app") and h.changes == ["u1"]
    assert h.events.events == [
        ("Warning", "Unhealthy", "Readiness probe errored: exec probe not run: gone", "app"),
        ("Warning", "ProbeWarning", "Readiness probe warning: Probe terminated redirects", "app"),
    ]


async def test_readiness_thresholds_flip_both_ways_and_record_events(h):
    pod = make_pod(readiness=probe(period=1, success=2, failure=2))
    h.prober.scripts[("c1", ProbeType.READINESS)] = [OK, OK, FAIL, OK, FAIL, FAIL, OK]
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    ready = []
    for attempt in range(7):
        await h.clock.advance(1 if attempt else 0)
        ready.append(h.manager.readiness("u1", "app"))
    assert ready == [False, True, True, True, True, False, False]
    assert h.changes == ["u1", "u1"]
    unhealthy = ("Warning", "Unhealthy", "Readiness probe failed: it hurts", "app")
    assert h.events.events == [unhealthy] * 3
    total = h.registry.get_sample_value(
        "prober_probe_total",
        {"probe_type": "Readiness", "result": "failed", "container": "app", "pod": "pod-u1",
         "namespace": "default"},
    )
    assert total == 3


async def test_liveness_failure_reports_the_container_until_it_is_replaced(h):
    pod = make_pod(liveness=probe(period=2, failure=2))
    h.prober.scripts[("c1", ProbeType.LIVENESS)] = [FAIL, FAIL]
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(0)
    assert h.manager.liveness_failures("u1") == {}
    await h.clock.advance(2)
    assert h.manager.liveness_failures("u1") == {"app": LIVENESS_KILL}
    assert h.changes == ["u1"]
    await h.clock.advance(20)
    assert len(h.prober.times("c1", ProbeType.LIVENESS)) == 2  # on hold: no more attempts
    # The pod worker killed it: the failure goes with that container.
    h.manager.sync(pod, h.observed(("c1", "app", "exited")))
    assert h.manager.liveness_failures("u1") == {}
    # The restarted container starts from scratch (alive until proven otherwise).
    h.manager.sync(pod, h.observed(("c2", "app", "running"), ("c1", "app", "exited")))
    await h.clock.advance(0)
    assert h.manager.liveness_failures("u1") == {}
    assert h.prober.times("c2", ProbeType.LIVENESS) == [122.0]


async def test_restarted_container_resets_readiness(h):
    pod = make_pod(readiness=probe(period=10, delay=3))
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(3)
    assert h.manager.readiness("u1", "app")
    h.manager.sync(pod, h.observed(("c2", "app", "running"), ("c1", "app", "exited")))
    assert not h.manager.readiness("u1", "app")  # the new container is not ready before its probe
    await h.clock.advance(3)
    assert h.prober.times("c2", ProbeType.READINESS) == [106.0]
    assert h.manager.readiness("u1", "app")
    await h.clock.advance(30)
    assert h.prober.times("c1", ProbeType.READINESS) == [103.0]  # the old worker is gone


async def test_startup_probe_gates_liveness_and_readiness(h):
    pod = make_pod(startup=probe(period=5, failure=10), liveness=probe(period=10), readiness=probe(period=10))
    h.prober.scripts[("c1", ProbeType.STARTUP)] = [FAIL, FAIL, OK]
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(9)
    assert not h.manager.started("u1", "app")
    assert h.prober.times("c1", ProbeType.LIVENESS) == h.prober.times("c1", ProbeType.READINESS) == []
    await h.clock.advance(1)  # the third startup attempt succeeds at 110
    assert h.manager.started("u1", "app")
    assert h.changes[:2] == ["u1", "u1"]  # started, then ready
    # Both others ran at once, readiness made ready without waiting a period.
    assert h.prober.times("c1", ProbeType.READINESS) == [110.0]
    assert h.prober.times("c1", ProbeType.LIVENESS) == [110.0]
    assert h.manager.readiness("u1", "app")
    await h.clock.advance(30)
    assert h.prober.times("c1", ProbeType.STARTUP) == [100.0, 105.0, 110.0]  # done for good
    assert h.prober.times("c1", ProbeType.READINESS) == [110.0, 120.0, 130.0, 140.0]


async def test_startup_failure_asks_for_a_restart(h):
    pod = make_pod(startup=probe(period=1, failure=3), readiness=probe(period=1))
    h.prober.scripts[("c1", ProbeType.STARTUP)] = lambda: FAIL
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(2)
    assert h.manager.liveness_failures("u1") == {"app": STARTUP_KILL}
    assert not h.manager.started("u1", "app")
    assert h.prober.times("c1", ProbeType.READINESS) == []
    assert [e[2] for e in h.events.events] == ["Startup probe failed: it hurts"] * 3


async def test_hung_attempt_fails_at_its_timeout_and_holds_up_nobody(h):
    slow = make_pod("slow", liveness=probe(period=5, timeout=2, failure=2))
    fast = make_pod("fast", readiness=probe(period=1))
    h.prober.hang.add(("s1", ProbeType.LIVENESS))
    h.manager.sync(slow, h.observed(("s1", "app", "running"), uid="slow"))
    h.manager.sync(fast, h.observed(("f1", "app", "running"), uid="fast"))
    await h.clock.advance(0)
    assert h.manager.readiness("fast", "app")
    await h.clock.advance(1.9)
    assert h.prober.times("f1", ProbeType.READINESS) == [100.0, 101.0]  # the other pod goes on
    assert h.events.events == []
    await h.clock.advance(0.1)  # the timeout: a failure, recorded at once
    timed_out = 'Liveness probe failed: command "true" timed out'
    assert h.events.events == [("Warning", "Unhealthy", timed_out, "app")]
    await h.clock.advance(5)  # the next attempt starts on time (105) and hangs as well
    assert h.prober.times("s1", ProbeType.LIVENESS) == [100.0, 105.0]
    assert h.manager.liveness_failures("slow") == {"app": LIVENESS_KILL}
    assert h.clock.now == 107.0


async def test_sync_is_idempotent_and_follows_the_containers(h):
    pod = make_pod(readiness=probe(period=10), liveness=probe(period=10))
    observed = h.observed(("c1", "app", "running"))
    for _ in range(5):
        h.manager.sync(pod, observed)
    await h.clock.advance(0)
    assert len(h.prober.calls) == 2  # one worker per probe type, not one per sync
    assert {t.get_name() for t in asyncio.all_tasks()} >= {"probe-readiness-app-c1", "probe-liveness-app-c1"}
    h.manager.sync(pod, h.observed(("c1", "app", "exited")))
    await settle()
    assert not any(t.get_name().startswith("probe-") for t in asyncio.all_tasks())
    assert not h.manager.readiness("u1", "app")  # has a readiness probe and nothing runs
    h.manager.sync(pod, None)
    assert not h.manager.readiness("u1", "app")


async def test_containers_without_probes_and_unknown_pods_are_ready_and_started(h):
    h.manager.sync(make_pod(), h.observed(("c1", "app", "running")))
    assert h.manager.readiness("u1", "app") and h.manager.started("u1", "app")
    assert h.manager.readiness("nobody", "app") and h.manager.liveness_failures("nobody") == {}


async def test_probe_spec_change_restarts_the_worker(h):
    pod = make_pod(readiness=probe(period=10))
    h.manager.sync(pod, h.observed(("c1", "app", "running")))
    await h.clock.advance(1)
    pod.spec.containers[0].readiness_probe.period_seconds = 2
    h.manager.sync(pod, h.observed(("c1", "app", "running"), started_ago=1))
    await h.clock.advance(2)
    assert h.prober.times("c1", ProbeType.READINESS) == [100.0, 101.0, 103.0]
    pod.spec.containers[0].ClearField("readiness_probe")
    h.manager.sync(pod, h.observed(("c1", "app", "running"), started_ago=3))
    await h.clock.advance(10)
    assert len(h.prober.calls) == 3
    assert h.manager.readiness("u1", "app")


async def test_sidecars_are_probed_and_plain_init_containers_are_not(h):
    pod = make_pod()
    for name, policy in (("setup", ""), ("proxy", "Always")):
        init = pod.spec.init_containers.add(name=name, image="busybox", restart_policy=policy)
        init.readiness_probe.CopyFrom(probe())
    observed = h.observed(("i1", "setup", "running"), ("i2", "proxy", "running"), ("c1", "app", "running"))
    h.manager.sync(pod, observed)
    await h.clock.advance(0)
    assert [(cid, t) for _, cid, t, _ in h.prober.calls] == [("i2", ProbeType.READINESS)]
    assert h.manager.readiness("u1", "proxy")


async def test_host_network_pods_are_probed_at_the_node_address(h):
    pod = make_pod(readiness=probe())
    pod.spec.host_network = True
    h.manager.sync(pod, h.observed(("c1", "app", "running"), ip=""))
    await h.clock.advance(0)
    assert h.prober.calls[0][3] == "192.0.2.2"


async def test_deleting_pod_stops_liveness_and_keeps_readiness(h):
    pod = make_pod(liveness=probe(period=1, failure=1), readiness=probe(period=1))
    h.prober.scripts[("c1", ProbeType.LIVENESS)] = lambda: FAIL
    observed = h.observed(("c1", "app", "running"))
    pod.metadata.deletion_timestamp.GetCurrentTime()
    h.manager.sync(pod, observed)
    h.manager.sync(pod, observed)
    await h.clock.advance(3)
    assert h.prober.times("c1", ProbeType.LIVENESS) == []
    assert h.manager.liveness_failures("u1") == {}
    assert h.prober.times("c1", ProbeType.READINESS) == [100.0, 101.0, 102.0, 103.0]


async def test_remove_and_stop_end_every_worker(h):
    h.manager.sync(make_pod("a", readiness=probe()), h.observed(("a1", "app", "running"), uid="a"))
    h.manager.sync(make_pod("b", liveness=probe()), h.observed(("b1", "app", "running"), uid="b"))
    await h.clock.advance(0)
    h.manager.remove("a")
    h.manager.remove("a")
    assert h.manager.readiness("a", "app")  # forgotten
    labels = {"probe_type": "Readiness", "result": "successful", "container": "app", "pod": "pod-a",
              "namespace": "default"}
    assert h.registry.get_sample_value("prober_probe_total", labels) is None
    await h.manager.stop()
    await settle()
    assert not any(t.get_name().startswith("probe-") for t in asyncio.all_tasks())


async def test_on_change_errors_do_not_stop_probing(h):
    def broken(uid: str) -> None:
        raise RuntimeError("pod worker bug")

    h.manager._on_change = broken
    h.manager.sync(make_pod(readiness=probe(period=1)), h.observed(("c1", "app", "running")))
    await h.clock.advance(2)
    assert h.prober.times("c1", ProbeType.READINESS) == [100.0, 101.0, 102.0]


async def test_real_clock_ready_right_after_start():
    """With the real clock, a freshly started container's readiness probe runs at once."""
    changes: list[str] = []
    ready = asyncio.Event()

    async def runner(target: ProbeTarget, timeout: float) -> Outcome:
        return OK

    manager = ProbeManager(FakeRuntime(), "192.0.2.2", lambda uid: (changes.append(uid), ready.set()),
                           runner=runner)
    start = time.monotonic()
    started = datetime.now(UTC)
    infra = container("infra", INFRA_CONTAINER_NAME, ip="10.0.0.5")
    manager.sync(make_pod(readiness=probe(period=1)), pod_runtime(container("c1", started_at=started), infra))
    await asyncio.wait_for(ready.wait(), 5)
    assert manager.readiness("u1", "app") and changes == ["u1"]
    assert time.monotonic() - start < 5  # safety deadline only; the bench figure is in the report
    await manager.stop()
