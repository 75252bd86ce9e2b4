"""Node lease renewals across masters: an agent renewing on a master that does not lead keeps its
node Ready on the leader (through pymaster.registry.lease_relay); when it stops, the leader marks
the node Unknown; renewing again on the follower makes it Ready again. Two real masters on a real
etcd on loopback."""

from __future__ import annotations

import asyncio
import shutil
import time

from master_fixtures import node_manifest, start_master

from pymaster.api.kinds import NODES
from pymaster.api.nodes import ready_status
from pymaster.leader import LeaderElectionConfig
from pymaster.main import init_data_dir
from tests.etcd_fixture import running_etcd

GRACE = 2.0
FAST = LeaderElectionConfig(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)


async def _wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_renewals_on_a_follower_keep_the_node_ready_on_the_leader(tmp_path):
    with running_etcd(workdir=tmp_path) as etcd:
        await _renewals_reach_the_leader(etcd, tmp_path)


async def _renewals_reach_the_leader(etcd, tmp_path) -> None:
    shared = tmp_path / "shared"
    init_data_dir(str(shared), [], "127.0.0.1:6443")
    apps = []
    for name in ("m1", "m2"):
        shutil.copytree(shared, tmp_path / name)
        app = await start_master(tmp_path / name, grace=GRACE, store_url=etcd.url, leader_election=FAST)
        apps.append(app)
    try:
        await _wait(lambda: any(app.leading for app in apps), 15)
        leader, follower = apps if apps[0].leading else apps[::-1]
        await follower.api.nodes.register(node_manifest("n1"))

        def ready_on_leader() -> str:
            try:
                return ready_status(leader.store.get(NODES.resource, "", "n1"))
            except Exception:
                return ""

        await _wait(lambda: ready_on_leader() == "True", 10)
        # Renewals only on the follower, for twice the grace period: the leader keeps it Ready.
        until = time.monotonic() + 2 * GRACE
        while time.monotonic() < until:
            await follower.api.nodes.renew_lease("n1", 0.3)
            assert ready_on_leader() == "True"
            await asyncio.sleep(0.3)
        # Silence: the leader's lifecycle controller marks it Unknown ...
        await _wait(lambda: ready_on_leader() == "Unknown", GRACE + 5)
        # ... and a renewal on the follower brings it back, through the leader's lease table.
        await follower.api.nodes.renew_lease("n1", 0.3)
        await _wait(lambda: ready_on_leader() == "True", 5)
    finally:
        for app in apps:
            await app.stop()
