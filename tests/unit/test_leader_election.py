"""Leader election (pymaster.leader) against a real etcd (Debian's etcd-server, started on loopback
with random ports in a temp dir): one of two candidates leads; a leader whose renewals fail stops
leading before its lease can expire and the other takes over within lease + retry period; a
stopped leader hands over at once; the durations are checked with client-go's wording."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator

import aetcd
import aetcd.exceptions
import pytest
from master_fixtures import start_master
from prometheus_client import CollectorRegistry

from pymaster.leader import LEASE_NAME, LeaderElectionConfig, LeaderElector
from pymaster.main import init_data_dir
from pymaster.metrics import MasterMetrics
from pymaster.store.etcd_client import parse_endpoints
from tests.etcd_fixture import free_port, running_etcd

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
pytestmark = pytest.mark.skipif(not shutil.which(ETCD), reason="etcd-server is not installed")

# Short durations (the flags allow them): lease 3 s, renew deadline 2 s, retry 0.5 s.
FAST = LeaderElectionConfig(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)


@pytest.fixture
def etcd(tmp_path) -> Iterator[str]:
    """A one-member etcd on loopback; yields its store URL "etcd://127.0.0.1:PORT"."""
    with running_etcd(workdir=tmp_path) as cluster:
        yield cluster.url


class PartitionableClient(aetcd.Client):
    """A real etcd client that can be cut off from etcd (every call then fails as if unreachable)."""

    def __init__(self, host: str, port: int, candidate: Candidate):
        super().__init__(host, port)
        self._candidate = candidate

    def _check(self) -> None:
        if self._candidate.partitioned:
            raise aetcd.exceptions.ConnectionFailedError("partitioned by the test")

    async def lease(self, *args, **kwargs):
        self._check()
        return await super().lease(*args, **kwargs)

    async def transaction(self, *args, **kwargs):
        self._check()
        return await super().transaction(*args, **kwargs)

    async def refresh_lease(self, *args, **kwargs):
        self._check()
        return await super().refresh_lease(*args, **kwargs)

    async def revoke_lease(self, *args, **kwargs):
        self._check()
        return await super().revoke_lease(*args, **kwargs)


class Candidate:
    """A LeaderElector whose "leading" work is recorded with times, on a PartitionableClient."""

    def __init__(self, endpoint: str, name: str, metrics: MasterMetrics | None = None):
        self.name = name
        self.partitioned = False
        self.started: list[float] = []
        self.stopped: list[float] = []
        self.elector = LeaderElector(
            parse_endpoints(endpoint), FAST, self._start, self._stop, identity=name,
            on_change=(lambda identity, leading: metrics.set_leader(LEASE_NAME, identity, leading))
            if metrics else None,
            client_factory=lambda host, port: PartitionableClient(host, port, self),
        )

    async def _start(self) -> None:
        self.started.append(time.monotonic())

    async def _stop(self) -> None:
        self.stopped.append(time.monotonic())


async def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def pair(etcd) -> AsyncIterator[tuple[Candidate, Candidate]]:
    a, b = Candidate(etcd, "a"), Candidate(etcd, "b")
    a.elector.start()
    await _wait(lambda: a.elector.leading)
    b.elector.start()
    yield a, b
    await asyncio.gather(a.elector.stop(), b.elector.stop())


async def test_one_of_two_candidates_leads(pair):
    a, b = pair
    await asyncio.sleep(FAST.lease_duration)  # b keeps trying all along
    assert a.elector.leading and not b.elector.leading
    assert b.started == []
    assert await b.elector.leader() == "a"


async def test_leader_that_cannot_renew_steps_down_before_the_lease_expires(pair):
    a, b = pair
    cut = time.monotonic()
    a.partitioned = True
    await _wait(lambda: a.stopped)
    # Renewals count from the last one sent before the cut, so the lease outlives the step-down.
    assert a.stopped[0] - cut <= FAST.renew_deadline + 0.3
    await _wait(lambda: b.elector.leading)
    assert b.started[0] > a.stopped[0], "two leaders at once"
    assert b.started[0] - cut <= FAST.lease_duration + FAST.retry_period + 1.0
    assert not a.elector.leading and len(a.started) == 1


async def test_stopped_leader_releases_the_lease_at_once(pair):
    a, b = pair
    await a.elector.stop()
    assert a.stopped and not a.elector.leading
    await _wait(lambda: b.elector.leading, timeout=FAST.retry_period + 1.5)
    assert await b.elector.leader() == "b"


async def test_candidate_keeps_campaigning_while_etcd_is_unreachable(etcd):
    host, port = parse_endpoints(etcd)[0]
    dead = free_port()
    lonely = Candidate(f"etcd://127.0.0.1:{dead},{host}:{port}", "c")
    lonely.elector.start()
    try:
        await _wait(lambda: lonely.elector.leading)
    finally:
        await lonely.elector.stop()


async def test_metrics_say_who_leads(etcd):
    registry = CollectorRegistry()
    metrics = MasterMetrics(registry)
    a = Candidate(etcd, "a", metrics)
    a.elector.start()
    try:
        status = {"name": "pymaster"}
        await _wait(lambda: registry.get_sample_value("leader_election_master_status", status) == 1)
        assert registry.get_sample_value("pymaster_leader", {"identity": "a"}) == 1
    finally:
        await a.elector.stop()
    assert registry.get_sample_value("leader_election_master_status", {"name": "pymaster"}) == 0
    assert registry.get_sample_value("pymaster_leader", {"identity": "a"}) == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (LeaderElectionConfig(10, 10, 2), "--leader-elect-lease-duration must be greater than "
                                          "--leader-elect-renew-deadline"),
        (LeaderElectionConfig(15, 2, 2), "--leader-elect-renew-deadline must be greater than "
                                         "--leader-elect-retry-period*1.2"),
    ],
)
def test_unsafe_durations_are_refused(config, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        config.check()


async def test_only_the_elected_master_runs_the_scheduler_and_controllers(etcd, tmp_path):
    shared = tmp_path / "shared"
    init_data_dir(str(shared), [], "127.0.0.1:6443")
    apps = []
    for name in ("m1", "m2"):
        shutil.copytree(shared, tmp_path / name)
        apps.append(await start_master(tmp_path / name, store_url=etcd, leader_election=FAST))
    try:
        await _wait(lambda: any(app.leading for app in apps))
        leader, follower = apps if apps[0].leading else apps[::-1]
        assert not follower.leading and follower._scheduler._tasks == []
        assert leader._scheduler._tasks
        assert leader.registry.get_sample_value("pymaster_leader", {"identity": leader.identity}) == 1
        status = follower.registry.get_sample_value("leader_election_master_status", {"name": "pymaster"})
        assert status in (0, None)
        await leader.stop()
        apps.remove(leader)
        await _wait(lambda: follower.leading, timeout=FAST.retry_period + 3)
        assert follower._scheduler._tasks
    finally:
        for app in apps:
            await app.stop()
