"""Nodes end to end, in one cluster of a real pymaster and three real pykubelets sharing this
host's Docker Engine (status reported every 2 s):

- the scheduler spreads equal pods evenly (least-allocated scoring) and gives a node with less
  free cpu fewer of them;
- the usage a node reports on its timer follows the host: the cpu figure rises within two status
  intervals of a cpu-burning pod starting, the running-pods count follows pods starting and
  stopping;
- a node's own admission check, with the master's flags open (the master runs with
  --allow-host-network, the agents without): a hostNetwork pod is admitted by the master and
  rejected by its node, with no container created;
- the agents renew their leases on the master's lease lane (its own port and process);
- deleting a node (pyctl delete node) revokes its certificate, which stays revoked after the
  agent joins again with its token, on the API port and on the lease lane.

The tests run in file order and each leaves the cluster without pods.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import psutil
import pytest

from pymaster.api import errors, objects_pb2, pki, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import ClientConfig, channel_credentials, channel_options
from pymaster.api.manifest import load_pods
from pymaster.api.quantity import cpu_millis
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Agent,
    Cluster,
    container_events,
    metric_samples,
    node_containers,
    node_ready,
    pyctl,
    running_cluster,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e

STATUS_INTERVAL = 2.0
CALL_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("nodes"),
        prefixes=("node-a", "node-b", "node-c"),
        master_extra=["--allow-host-network"],
        agent_extra=["--status-interval", str(STATUS_INTERVAL)],
    ) as cluster:
        yield cluster


def _pod(
    name: str,
    node: str = "",
    cpu: str = "100m",
    scripts: dict[str, str] | None = None,
    host_network: bool = False,
) -> objects_pb2.Pod:
    """A busybox pod, one container per ``scripts`` entry (default: one that sleeps)."""
    containers = "".join(
        f"    - name: {cname}\n"
        f"      image: {BUSYBOX}\n"
        f"      command: [sh, -c, {script!r}]\n"
        f"      resources: {{requests: {{cpu: {cpu}, memory: 16Mi}}}}\n"
        for cname, script in (scripts or {"main": "sleep 3600"}).items()
    )
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          hostNetwork: {str(host_network).lower()}
          containers:
        """) + containers
    pod = load_pods(manifest)[0]
    pod.spec.node_name = node
    return pod


async def _remove_all_pods(cluster: Cluster, client: Client) -> None:
    """Force-deletes every pod and waits until the nodes run no container."""
    for pod in (await client.list_pods()).items:
        try:
            await client.delete_pod(pod.metadata.name, grace_period_seconds=0, force=True)
        except errors.NotFound:
            pass

    async def clean() -> bool:
        if (await client.list_pods()).items:
            return False
        return all(node_containers(name) == [] for name in cluster.node_names)

    await wait_for(clean, 60, "no pod and no container left")


async def _bound(client: Client, names: list[str]) -> dict[str, str]:
    """Waits until every pod in ``names`` is bound; returns pod name -> node name."""

    async def all_bound() -> dict[str, str] | None:
        placed = {n: (await client.get_pod(n)).spec.node_name for n in names}
        return placed if all(placed.values()) else None

    return await wait_for(all_bound, 30, f"{len(names)} pods bound")


def _spread(cluster: Cluster, placed: dict[str, str]) -> dict[str, int]:
    """Pods per node, every node of the cluster included."""
    counts = Counter(placed.values())
    return {name: counts.get(name, 0) for name in cluster.node_names}


# ---- scheduling ----


async def test_equal_pods_spread_evenly_over_the_nodes(nodes: Cluster) -> None:
    async with nodes.client() as client:
        assert (await client.list_pods()).items == []
        names = [unique("spread") for _ in range(6)]
        try:
            for name in names:
                await client.create_pod(_pod(name))
            spread = _spread(nodes, await _bound(client, names))
            assert max(spread.values()) - min(spread.values()) <= 1, spread
            assert sorted(spread.values()) == [2, 2, 2], spread
        finally:
            await _remove_all_pods(nodes, client)


async def test_a_node_with_less_free_cpu_gets_fewer_pods(nodes: Cluster) -> None:
    busy = nodes.agents[2].node_name
    async with nodes.client() as client:
        assert (await client.list_pods()).items == []
        # Take most of one node's cpu with a pod bound to it.
        capacity = cpu_millis((await client.get_node(busy)).status.allocatable["cpu"])
        hog = unique("hog")
        names = [unique("spread") for _ in range(6)]
        try:
            await client.create_pod(_pod(hog, node=busy, cpu=f"{capacity - 400}m"))
            for name in names:
                await client.create_pod(_pod(name))
            spread = _spread(nodes, await _bound(client, names))
            others = [count for node, count in spread.items() if node != busy]
            assert spread[busy] < min(others), spread
            assert max(others) - min(others) <= 1, spread
        finally:
            await _remove_all_pods(nodes, client)


# ---- node status on a timer ----


async def _fresh_usage(client: Client, node_name: str, newer_than: float) -> objects_pb2.NodeUsage:
    """The node's next status report taken after ``newer_than`` (epoch seconds)."""

    async def fresh() -> objects_pb2.NodeUsage | None:
        usage = (await client.get_node(node_name)).status.usage
        taken = usage.timestamp.seconds + usage.timestamp.nanos / 1e9
        return usage if taken > newer_than else None

    return await wait_for(fresh, 4 * STATUS_INTERVAL, f"a status report of {node_name}", interval=0.1)


async def _wait_running_pods(client: Client, node_name: str, count: int) -> None:
    async def reported() -> bool:
        return (await client.get_node(node_name)).status.usage.running_pods == count

    await wait_for(reported, 5 * STATUS_INTERVAL, f"{node_name} to report {count} running pods")


async def test_running_pods_count_follows_pods(nodes: Cluster) -> None:
    node = nodes.agents[0].node_name
    async with nodes.client() as client:
        assert (await client.list_pods()).items == []
        names = [unique("counted") for _ in range(2)]
        try:
            await _wait_running_pods(client, node, 0)
            for name in names:
                await client.create_pod(_pod(name, node=node))
            await _wait_running_pods(client, node, 2)
            await client.delete_pod(names[0], grace_period_seconds=0, force=True)
            await _wait_running_pods(client, node, 1)
            await client.delete_pod(names[1], grace_period_seconds=0, force=True)
            await _wait_running_pods(client, node, 0)
        finally:
            await _remove_all_pods(nodes, client)


async def test_reported_cpu_usage_rises_with_the_host_load(nodes: Cluster) -> None:
    node = nodes.agents[1].node_name
    burners = psutil.cpu_count() or 1  # one busy loop per cpu
    async with nodes.client() as client:
        assert (await client.list_pods()).items == []
        # What the node reports while idle: the lower of two consecutive reports.
        first = await _fresh_usage(client, node, time.time())
        second = await _fresh_usage(client, node, first.timestamp.seconds + first.timestamp.nanos / 1e9)
        idle = min(first.cpu_percent, second.cpu_percent)
        rise_to = min(idle + 30.0, 95.0)
        name = unique("burn")
        try:
            scripts = {f"burn{i}": "while :; do :; done" for i in range(burners)}
            await client.create_pod(_pod(name, node=node, cpu="10m", scripts=scripts))

            async def running() -> bool:
                return (await client.get_pod(name)).status.phase == "Running"

            await wait_for(running, 60, f"pod {name} Running", interval=0.1)
            started = time.monotonic()

            async def risen() -> objects_pb2.NodeUsage | None:
                usage = (await client.get_node(node)).status.usage
                return usage if usage.cpu_percent >= rise_to else None

            # Within two status intervals (plus a second for the report's round trip).
            usage = await wait_for(risen, 2 * STATUS_INTERVAL + 1.0,
                                   f"cpuPercent >= {rise_to} (idle: {idle})", interval=0.1)
            assert usage.cpu_percent <= 100.0
            assert time.monotonic() - started <= 2 * STATUS_INTERVAL + 1.0
        finally:
            await _remove_all_pods(nodes, client)


# ---- the node's own admission ----


async def test_node_rejects_host_network_the_master_allows(nodes: Cluster) -> None:
    name = unique("hostnet")
    async with nodes.client() as client:
        since = time.time()
        created = await client.create_pod(_pod(name, host_network=True))  # admitted by the master
        try:
            async def rejected() -> objects_pb2.Pod | None:
                pod = await client.get_pod(name)
                return pod if pod.status.phase == "Failed" else None

            pod = await wait_for(rejected, 30, f"pod {name} rejected by its node")
            assert pod.spec.node_name in nodes.node_names and pod.spec.host_network
            assert pod.status.reason == "Forbidden"
            assert pod.status.message == (
                "Pod was rejected: spec.hostNetwork: host networking is not allowed on this node "
                "(pykubelet --allow-host-network)"
            )
            assert not any(s.state.HasField("running") for s in pod.status.container_statuses)
            # Docker never created a container for it.
            assert node_containers(pod.spec.node_name, created.metadata.uid) == []
            assert container_events(since, {"label": f"pykube.pod.uid={created.metadata.uid}"}) == []
        finally:
            await _remove_all_pods(nodes, client)


# ---- leases ----


async def test_agents_renew_their_leases_on_the_lease_lane(nodes: Cluster) -> None:
    labels = (("grpc_code", "OK"), ("grpc_method", "RenewLease"), ("grpc_service", "pykube.v1.NodeLease"),
              ("grpc_type", "unary"))

    def lane_renewals() -> float:
        return metric_samples(nodes.master.metrics_port).get(("grpc_server_handled_total", labels), 0.0)

    before = lane_renewals()
    wanted = before + 2 * len(nodes.agents)  # the agents renew every second
    await wait_for(lambda: lane_renewals() >= wanted, 30, "renewals on the lease lane")


# ---- node deletion revokes the node's certificate ----


def _serial(agent: Agent) -> str | None:
    try:
        return pki.cert_info((agent.pki_dir / "node.crt").read_bytes()).serial
    except (OSError, ValueError):
        return None  # not written yet, or being replaced


async def _refused(agent: Agent, config) -> errors.Unauthenticated:
    async with Client(config=config, timeout=CALL_TIMEOUT) as as_node:
        with pytest.raises(errors.Unauthenticated) as caught:
            await as_node.get_node(agent.node_name)
        with pytest.raises(errors.Unauthenticated):
            await as_node.renew_lease(agent.node_name, 10)
    await _lane_refuses(agent, config)
    return caught.value


async def _lane_refuses(agent: Agent, config: ClientConfig) -> None:
    """The lease lane stops renewing with ``config``'s certificate (its copy of the identity
    bindings follows the master's store): UNAUTHENTICATED, or UNAVAILABLE while the node has no
    binding, which sends a client to the API port (where ``_refused`` saw it refused)."""
    lane = f"127.0.0.1:{agent.master.lease_port}"
    renewal = services_pb2.RenewLeaseRequest(node_name=agent.node_name, requested_seconds=10)
    async with grpc.aio.secure_channel(lane, channel_credentials(config), channel_options(config)) as channel:
        stub = services_pb2_grpc.NodeLeaseStub(channel)

        async def refused() -> bool:
            try:
                await stub.RenewLease(renewal, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                assert err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE), err
                return True
            return False

        await wait_for(refused, 10, "the lease lane refusing the certificate")


async def test_deleting_a_node_revokes_its_certificate(nodes: Cluster) -> None:
    agent = nodes.agents[2]
    # The node's own identity, read before the delete (the agent joins again and replaces it).
    old = agent.node_config()
    old_serial = pki.cert_info(old.cert_pem).serial
    async with Client(config=old, timeout=CALL_TIMEOUT) as as_node:
        assert (await as_node.get_node(agent.node_name)).metadata.name == agent.node_name

    result = pyctl(nodes.master, "delete", "node", agent.node_name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'node "{agent.node_name}" deleted'
    refusal = await _refused(agent, old)
    assert refusal.message == (
        f"certificate of node {agent.node_name} is revoked or the node was deleted; join again"
    )

    # The agent still has the join token: it joins again, with a new certificate...
    await wait_for(lambda: _serial(agent) not in (None, old_serial), 60, "a new node certificate")

    async def ready_again() -> bool:
        async with nodes.client() as client:
            return node_ready(await client.get_node(agent.node_name))

    await wait_for(ready_again, 60, f"node {agent.node_name} Ready again")
    async with Client(config=agent.node_config(), timeout=CALL_TIMEOUT) as as_node:
        assert (await as_node.get_node(agent.node_name)).metadata.name == agent.node_name
    # ...and the certificate issued before the delete stays revoked, though the key is the same.
    assert agent.node_config().key_pem == old.key_pem
    await _refused(agent, old)
