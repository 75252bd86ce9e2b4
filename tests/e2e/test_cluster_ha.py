"""Several masters end to end (issue 13): a real 3-member etcd on loopback, two pymaster replicas
started from copies of one ``pymaster init`` directory with ``--store etcd://<all three>
--leader-elect`` (short durations: lease 3 s, renew deadline 2 s, retry 0.5 s), and one real
pykubelet given both masters (``--server m1,m2``), the first being the leader.

- The leader is killed (SIGKILL) while 200 pods are being created, 16 at a time, through a client
  that lists both masters: every create that returned success exists afterwards; a watch opened
  before the first create sees each pod's spec.nodeName set once and never changed, and no pod
  has more than one Scheduled event (exactly one for the pods created after the kill, which only
  the new leader can have bound); the other master leads within the lease duration plus a retry
  period (plus slack) and binds the rest promptly. Meanwhile the agent keeps its pods (the same
  containers, none restarted), reaches the surviving master by itself (its node is Ready there
  past a node monitor grace period counted from the takeover) and starts a new pod bound to it.
- One etcd member (a raft follower, the first endpoint every master dials) is killed: creates,
  lists and binds keep working on the other two, also past a lease duration (the election went
  on through another member).
- The killed master starts again from its directory: it serves every stored pod (also those
  written while it was down), one master leads, and a pod created through it is bound.

The 200 pods go to a "hollow" node (registered and kept alive through the API by the test, like
bench/scheduler.py's: no containers), so the test measures the control plane, not Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from pymaster.api import errors, objects_pb2
from pymaster.client import Client
from tests.etcd_fixture import EtcdCluster, EtcdMember, running_etcd

from .harness import (
    BUSYBOX,
    Agent,
    Master,
    init_masters,
    leading,
    node_containers,
    node_ready,
    remove_node_containers,
    remove_node_networks,
    unique,
    wait_for,
    wait_nodes_ready,
    wait_pod_gone,
)

pytestmark = pytest.mark.e2e

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5
GRACE = 4.0  # --node-monitor-grace-period
PODS, IN_FLIGHT, KILL_AFTER = 200, 16, 40
# A candidate notices the expiry within a retry period; etcd checks expiries every ~0.5 s and the
# test polls the metric: allowance on top of lease + retry period.
ELECTION_SLACK = 1.5
# From the later of "a new leader" and "the last create acknowledged" to every pod bound: the new
# leader's scheduler lists the store and binds what is pending (batched binds, two cores shared).
BIND_SLACK = 5.0
CLUSTER_CIDR = "10.246.0.0/16"


@dataclass
class HA:
    etcd: EtcdCluster
    masters: list[Master]
    agent: Agent

    def client(self, timeout: float = 5.0) -> Client:
        """A client listing every master (as admin.yaml does), failing over on UNAVAILABLE."""
        servers = ",".join(m.address for m in self.masters)
        return Client(servers, timeout=timeout, config=self.masters[0].config())

    def alive(self) -> list[Master]:
        return [m for m in self.masters if m.exited() is None]


def _start_masters(masters: list[Master]) -> None:
    """Starts the replicas one by one; the first is the leader before the second starts."""
    for index, master in enumerate(masters):
        master.start()
        asyncio.run(master.wait_serving())
        if index == 0:
            asyncio.run(wait_for(lambda: leading(masters[0]), 30, "the first master to lead"))


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    workdir = tmp_path_factory.mktemp("ha")
    with running_etcd(3, workdir=workdir) as etcd:
        masters = init_masters(workdir, 2, [
            "--store", etcd.url, "--leader-elect",
            "--leader-elect-lease-duration", str(LEASE), "--leader-elect-renew-deadline", str(RENEW),
            "--leader-elect-retry-period", str(RETRY), "--node-monitor-grace-period", str(GRACE),
            # Pod networks of their own: another cluster on this host's Docker keeps 10.244/16's.
            "--cluster-cidr", CLUSTER_CIDR,
        ])
        agent = Agent(workdir, masters[0], unique("node-ha"),
                      ["--server", ",".join(m.address for m in masters)])
        try:
            _start_masters(masters)
            agent.start()
            asyncio.run(wait_nodes_ready(masters[0], [agent.node_name]))
            yield HA(etcd, masters, agent)
        finally:
            for process in [agent, *masters]:
                process.stop()
            remove_node_containers(agent.node_name)
            remove_node_networks(agent.node_name)
            cleanup = agent.cleanup() if agent.proc is not None else None
    assert node_containers(agent.node_name) == [], "containers left behind"
    assert cleanup is None or cleanup.returncode == 0, f"pykubelet --cleanup failed: {cleanup.stderr}"


def _pod(name: str, node: str, run: str) -> objects_pb2.Pod:
    """A busybox pod that sleeps, held to ``node`` by its hostname label, labelled ``run``."""
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name=name, namespace="default"))
    pod.metadata.labels["run"] = run
    pod.spec.node_selector["kubernetes.io/hostname"] = node
    pod.spec.containers.add(name="main", image=BUSYBOX, command=["sleep", "3600"])
    pod.spec.termination_grace_period_seconds = 1  # sleep ignores SIGTERM: no 30 s wait at deletion
    return pod


@contextlib.asynccontextmanager
async def hollow_node(ha: HA) -> AsyncIterator[str]:
    """A node with no agent (room for every test pod), kept Ready by renewing its lease every
    second through both masters while the block runs."""
    name = unique("hollow")
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"})
    resources = {"cpu": "64", "memory": "256Gi", "pods": str(2 * PODS), "ephemeral-storage": "100Gi"}
    node.status.capacity.update(resources)
    node.status.allocatable.update(resources)

    async def renew(client: Client) -> None:
        while True:
            with contextlib.suppress(errors.ApiError):
                await client.renew_lease(name, 1.0)
            await asyncio.sleep(1.0)

    async with ha.client() as client:
        await client.register_node(node)
        renewing = asyncio.create_task(renew(client))
        try:
            yield name
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)


@dataclass
class Binds:
    """What a watch of the test's pods saw: each pod's spec.nodeName values in order ("" first)
    and when each pod was first seen bound (monotonic seconds)."""

    history: dict[str, list[str]] = field(default_factory=dict)
    bound_at: dict[str, float] = field(default_factory=dict)
    relists: int = 0

    def see(self, pod: objects_pb2.Pod) -> None:
        name, node = pod.metadata.name, pod.spec.node_name
        values = self.history.setdefault(name, [""])
        if node != values[-1]:
            values.append(node)
        if node and name not in self.bound_at:
            self.bound_at[name] = time.monotonic()

    async def watch(self, client: Client, selector: str, opened: asyncio.Event) -> None:
        """Lists, then watches from the list's resourceVersion; a broken stream is reopened from
        the last event seen (on the next master), a "too old" one listed again."""
        rv = ""
        while True:
            try:
                if not rv:
                    listed = await client.list_pods("default", label_selector=selector)
                    for pod in listed.items:
                        self.see(pod)
                    rv = listed.resource_version
                    opened.set()
                async for event in client.watch_pods("default", label_selector=selector, resource_version=rv):
                    self.see(event.object)
                    rv = event.object.metadata.resource_version
            except errors.TooOld:
                rv, self.relists = "", self.relists + 1
            except errors.ApiError:
                await asyncio.sleep(0.1)  # back-off before reopening on the next master


async def _create(client: Client, pod: objects_pb2.Pod) -> bool:
    """Creates ``pod``, retrying what failed with the dead master; True when this create was
    acknowledged, False when a retry found that an unanswered attempt had written it."""
    last: errors.ApiError | None = None
    for _ in range(60):
        try:
            await client.create_pod(pod)
            return True
        except errors.AlreadyExists:
            assert last is not None, f"{pod.metadata.name} existed before it was created"
            return False
        except errors.ApiError as err:
            last = err
            await asyncio.sleep(0.2)
    raise AssertionError(f"create of {pod.metadata.name} kept failing: {last!r}")


async def _scheduled_count(client: Client, name: str) -> int:
    events = await client.list("events", field_selector=f"involvedObject.name={name}")
    return sum(e.count for e in events.items if e.reason == "Scheduled")


async def _running_containers(ha: HA, client: Client, names: list[str]) -> dict[str, str]:
    """Container id -> pod name of the running containers of pods ``names`` on the agent."""
    found = {}
    for name in names:
        pod = await client.get_pod(name)
        for container in node_containers(ha.agent.node_name, pod.metadata.uid):
            if container.status == "running":
                found[container.id] = name
    return found


async def test_leader_killed_while_creating_loses_nothing_binds_once_and_the_agent_carries_on(ha: HA) -> None:
    leader, survivor = ha.masters
    assert leading(leader) and not leading(survivor)
    run = unique("ha")
    async with ha.client() as client, hollow_node(ha) as hollow:
        # The agent's pods, running before the kill.
        kept = [unique("kept") for _ in range(2)]
        for name in kept:
            await client.create_pod(_pod(name, ha.agent.node_name, unique("kept")))

        async def all_running() -> bool:
            pods = [await client.get_pod(name) for name in kept]
            return all(p.status.phase == "Running" for p in pods)

        await wait_for(all_running, 90, "the agent's pods Running")
        containers_before = await _running_containers(ha, client, kept)
        assert len(containers_before) >= len(kept)

        binds, opened = Binds(), asyncio.Event()
        watcher = asyncio.create_task(binds.watch(client, f"run={run}", opened))
        await asyncio.wait_for(opened.wait(), 30)

        names = [f"{run}-{i:03d}" for i in range(PODS)]
        acknowledged: set[str] = set()
        started_after_kill: set[str] = set()
        enough, killed = asyncio.Event(), asyncio.Event()
        last_ack = 0.0
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def create(name: str) -> None:
            nonlocal last_ack
            async with gate:
                if killed.is_set():
                    started_after_kill.add(name)
                if await _create(client, _pod(name, hollow, run)):
                    acknowledged.add(name)
                last_ack = time.monotonic()
                if len(acknowledged) >= KILL_AFTER:
                    enough.set()

        creating = asyncio.gather(*(create(name) for name in names))
        await asyncio.wait_for(enough.wait(), 60)
        leader.kill9()
        killed_at = time.monotonic()
        killed.set()
        await wait_for(lambda: leading(survivor), LEASE + RETRY + 10, "the surviving master to lead",
                       interval=0.05)
        elected_after = time.monotonic() - killed_at
        await asyncio.wait_for(creating, 120)
        await wait_for(lambda: len(binds.bound_at) == PODS, 60, f"all {PODS} pods bound")
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

        # Every acknowledged create (indeed every pod) exists, and on the hollow node.
        stored = {p.metadata.name: p for p in (await client.list_pods("default", f"run={run}")).items}
        assert acknowledged <= set(stored), f"acknowledged but lost: {sorted(acknowledged - set(stored))}"
        assert set(stored) == set(names)
        assert {p.spec.node_name for p in stored.values()} == {hollow}
        # Bound once: nodeName went from "" to the node and never changed.
        changed = {name: values for name, values in binds.history.items() if values != ["", hollow]}
        assert not changed, f"nodeName transitions other than once ({binds.relists} relists): {changed}"
        # The new leader took over within lease + retry period, and bound the rest promptly.
        assert elected_after <= LEASE + RETRY + ELECTION_SLACK, f"new leader after {elected_after:.2f} s"
        last_bound = max(binds.bound_at.values())
        settled = max(killed_at + elected_after, last_ack)
        assert last_bound - settled <= BIND_SLACK, (
            f"last bind {last_bound - settled:.2f} s after the new leader / the last create")
        # One Scheduled event per pod at most; exactly one for those only the new leader bound
        # (events of the old leader's last binds may have died with it).
        assert started_after_kill, "no create started after the kill"

        async def scheduled_once() -> bool:
            counts = {name: await _scheduled_count(client, name) for name in names}
            twice = {n: c for n, c in counts.items() if c > 1}
            assert not twice, f"Scheduled more than once: {twice}"
            return all(counts[name] == 1 for name in started_after_kill)

        await wait_for(scheduled_once, 30, "one Scheduled event per pod bound by the new leader")

        # The agent kept its containers, is Ready on the survivor past a grace period counted
        # from the takeover (a new leader's node lifecycle counts every node as renewed when it
        # starts), and starts a new pod bound to it.
        async def agent_ready_past_grace() -> bool:
            node = await client.get_node(ha.agent.node_name)
            return time.monotonic() > killed_at + elected_after + GRACE + 1 and node_ready(node)

        await wait_for(agent_ready_past_grace, 60, "the agent's node Ready after the kill")
        assert await _running_containers(ha, client, kept) == containers_before
        for name in kept:
            pod = await client.get_pod(name)
            assert [s.restart_count for s in pod.status.container_statuses] == [0], pod.status
        fresh = unique("fresh")
        await client.create_pod(_pod(fresh, ha.agent.node_name, unique("fresh")))

        async def fresh_running() -> bool:
            return (await client.get_pod(fresh)).status.phase == "Running"

        await wait_for(fresh_running, 90, "a new pod on the agent Running")
        for name in [*kept, fresh]:
            await client.delete_pod(name)
        for name in [*kept, fresh]:
            await wait_pod_gone(client, name)


def _etcd_call(member: EtcdMember, path: str, body: dict) -> dict:
    """One call of etcd's JSON gateway (``/v3/...``) on ``member``."""
    request = urllib.request.Request(f"http://{member.endpoint}{path}", data=json.dumps(body).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def _make_follower(etcd: EtcdCluster, member: EtcdMember) -> None:
    """Moves etcd's raft leadership away from ``member`` if it holds it (etcdctl move-leader)."""
    own = _etcd_call(member, "/v3/maintenance/status", {})
    if own["leader"] == own["header"]["member_id"]:
        other = next(m for m in etcd.members if m is not member)
        target = _etcd_call(other, "/v3/maintenance/status", {})["header"]["member_id"]
        _etcd_call(member, "/v3/maintenance/transfer-leadership", {"targetID": target})
    status = _etcd_call(member, "/v3/maintenance/status", {})
    assert status["leader"] != status["header"]["member_id"], status


async def test_one_etcd_member_killed_the_cluster_keeps_working(ha: HA) -> None:
    # Every master's first endpoint (the elector's, the store's), as a follower: losing etcd's
    # raft leader fails the writes in flight after etcd's own request timeout (7 s), which no
    # client of etcd can avoid; losing any member must cost nothing more.
    first = ha.etcd.members[0]
    _make_follower(ha.etcd, first)
    first.kill()
    killed_at = time.monotonic()
    run = unique("etcd")
    async with ha.client() as client, hollow_node(ha) as hollow:

        async def create_and_bind(names: list[str]) -> None:
            for name in names:
                await client.create_pod(_pod(name, hollow, run))

            async def bound() -> bool:
                listed = {p.metadata.name: p for p in (await client.list_pods("default", f"run={run}")).items}
                return all(name in listed and listed[name].spec.node_name == hollow for name in names)

            await wait_for(bound, 30, f"{len(names)} pods listed and bound with one etcd member down")

        await create_and_bind([f"{run}-{i:02d}" for i in range(10)])

        # Past a lease duration the election has had to renew (or acquire) through another
        # member: a master leads, and it still schedules.
        async def led_past_a_lease() -> bool:
            return time.monotonic() > killed_at + LEASE + RETRY and any(leading(m) for m in ha.alive())

        await wait_for(led_past_a_lease, 30, "a master leading a lease duration after the kill")
        await create_and_bind([f"{run}-{i:02d}" for i in range(10, 20)])


async def test_a_killed_master_restarts_on_etcd_with_everything(ha: HA) -> None:
    restarted, other = ha.masters
    run = unique("back")
    async with other.client() as peer, hollow_node(ha) as hollow:
        # Written while the master is down (it is after the first test; killed here otherwise).
        restarted.kill9()
        await peer.create_pod(_pod(f"{run}-before", hollow, run))
        restarted.start()
        await restarted.wait_serving()
        async with restarted.client() as own:

            async def same_pods() -> bool:
                mine, theirs = await own.list_pods("default"), await peer.list_pods("default")
                seen = {(p.metadata.name, p.spec.node_name) for p in mine.items}
                return f"{run}-before" in {name for name, _ in seen} and seen == {
                    (p.metadata.name, p.spec.node_name) for p in theirs.items}

            await wait_for(same_pods, 30, "the restarted master serving every stored pod")
            await wait_for(lambda: [leading(m) for m in ha.masters].count(True) == 1, 30,
                           "exactly one leader")
            # A write through the restarted master is seen through the other and bound by the leader.
            await own.create_pod(_pod(f"{run}-after", hollow, run))

            async def bound() -> bool:
                pods = (await peer.list_pods("default", f"run={run}")).items
                return len(pods) == 2 and all(p.spec.node_name == hollow for p in pods)

            await wait_for(bound, 30, "both pods bound, the one created through the restarted master too")
