"""Services end to end (issue 12's "Done means"): a real pymaster and two real pykubelets sharing
this host's Docker Engine, each node with its own pod network, the node proxy's iptables rules and
the node-local DNS server; requests made by busybox in pods (through ``pyctl exec``) and by this
test process on the host.

- a pod on node A reaches a pod on node B by its pod IP (each from its node's podCIDR);
- a Deployment of 3 busybox httpd pods, each serving its own hostname, behind a ClusterIP Service
  ``web`` (targetPort by container port name) and a NodePort Service made by ``pyctl expose``:
  300 requests from a client pod through the ClusterIP reach all 3 backends; the NodePort
  answers on 127.0.0.1, on the node's InternalIP and on its pod network gateway, from the host;
- a backend that turns unready (its readiness file removed) stops receiving traffic within one
  probe period plus the proxy's sync, and gets it back once ready again;
- a ClientIP ``sessionAffinity`` Service sends one client's requests to one backend;
- a NodePort answers a client outside the cluster CIDR (a container on Docker's default bridge);
  with ``externalTrafficPolicy: Local`` only from the node's own pods;
- ``web.default.svc.cluster.local`` and ``web`` (search path) resolve from a pod;
- a pod started after the services has ``WEB_SERVICE_HOST``/``WEB_SERVICE_PORT``;
- with the agents stopped the data path keeps working (the rules stay), a Service created
  meanwhile works once they are back (the proxy resyncs);
- ``pykubelet --cleanup`` leaves no KUBE-*/PYKUBE-* chain or jump in the nat and filter tables.

The proxy programs the host's tables, which the agents of one host share (one of them holds the
host's proxy lock, the others stand by): node B runs with ``--proxy-mode none`` so that stopping
node A's agent leaves no proxy at all, and the rules staying is the rules staying (every node's
pods go through the host's tables anyway). Requests to a ClusterIP wait until the proxy has
programmed it, and name lookups until the pod's resolv.conf points at the node's DNS server: no
packet and no query may leave this machine. The tests run in file order: the last two stop the
agents.
"""

from __future__ import annotations

import asyncio
import ipaddress
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.network import pod_gateway
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    docker_exec,
    iptables_save,
    pod_exec,
    pyctl,
    running_cluster,
    service_proxied,
    unique,
    wait_for,
    wait_nodes_ready,
)

pytestmark = pytest.mark.e2e

REPLICAS = 3
PROBE_PERIOD = 1  # seconds, failureThreshold 1: unready one period after the file goes
PROXY_MIN_SYNC = 1  # the proxy's minimum sync interval (seconds)
OWNED_CHAIN_MARK = "KUBE-"  # in KUBE-* and PYKUBE-* chain names
# busybox-static's `wget -T` crashes (SIGSEGV): bound each request with `timeout` instead.
WGET = "timeout 3 wget -qO-"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("services"), prefixes=("node-a", "node-b"),
        agent_extra_by_prefix={"node-b": ["--proxy-mode", "none"]},
    ) as running:
        yield running


@dataclass
class Web:
    """The ``web`` Deployment's pods and its two Services."""

    backends: set[str]
    cluster_ip: str
    node_port: int


def apply(cluster: Cluster, manifest: str) -> None:
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=textwrap.dedent(manifest))
    assert result.returncode == 0, result.stderr


def pod_ready(pod: objects_pb2.Pod) -> bool:
    condition = find_condition(pod.status.conditions, "Ready")
    return condition is not None and condition.status == "True"


async def ready_backends(client: Client) -> set[str]:
    pods = (await client.list("pods", "default", label_selector="app=web")).items
    return {p.metadata.name for p in pods if pod_ready(p) and not p.metadata.HasField("deletion_timestamp")}


@pytest.fixture(scope="module")
def web(cluster: Cluster) -> Web:
    """3 httpd pods answering their hostname on port 8080 (named "http"), Ready while
    /tmp/ready exists; Service ``web`` (ClusterIP, port 80 -> "http") and ``web-np`` (NodePort)."""
    apply(cluster, f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          replicas: {REPLICAS}
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: httpd
                image: {BUSYBOX}
                command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready
                                   && exec httpd -f -p 8080 -h /www"]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  exec: {{command: [test, -f, /tmp/ready]}}
                  periodSeconds: {PROBE_PERIOD}
                  failureThreshold: 1
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web}}
        spec:
          selector: {{app: web}}
          ports: [{{port: 80, targetPort: http}}]
        """)
    exposed = pyctl(cluster.master, "expose", "deployment", "web", "--name", "web-np", "--port", "80",
                    "--target-port", "8080", "--type", "NodePort")
    assert exposed.returncode == 0 and "service/web-np exposed" in exposed.stdout, exposed.stderr

    async def ready() -> Web:
        async with cluster.client() as client:
            backends = await wait_for(lambda: _all_ready(client), 90, "3 ready web pods")
            svc = await client.get("services", "web")
            np = await client.get("services", "web-np")
            assert np.spec.type == "NodePort" and np.spec.ports[0].node_port
        # Not a packet to a ClusterIP before the proxy has programmed it: unDNATed, it would follow
        # the host's default route off this machine.
        ip = svc.spec.cluster_ip
        await wait_for(lambda: service_proxied(ip), 30, f"the proxy's rules for {ip}")
        return Web(backends, ip, np.spec.ports[0].node_port)

    return asyncio.run(ready())


async def _all_ready(client: Client) -> set[str]:
    backends = await ready_backends(client)
    return backends if len(backends) == REPLICAS else set()


@pytest.fixture(scope="module")
def client_pod(cluster: Cluster, web: Web) -> str:
    """A busybox pod that sleeps, started after the Services (for their env vars), to make
    requests from."""
    name = unique("client")
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{{name: main, image: {BUSYBOX}, command: [sleep, "3600"]}}]
        """)

    async def running() -> None:
        async with cluster.client() as client:
            await wait_for(lambda: _phase(client, name, "Running"), 60, f"pod {name} Running")

    asyncio.run(running())
    return name


async def _phase(client: Client, name: str, phase: str) -> bool:
    return (await client.get_pod(name)).status.phase == phase


def fetch(cluster: Cluster, pod: str, url: str, count: int) -> list[str]:
    """What ``count`` requests to ``url`` from ``pod`` answered, one line each ("FAIL" for a failed
    one): busybox wget in a shell loop, a new connection per request."""
    script = f"i=0; while [ $i -lt {count} ]; do {WGET} {url} || echo FAIL; i=$((i+1)); done"
    result = pod_exec(cluster.master, pod, "sh", "-c", script, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def host_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode().strip()


async def test_pod_to_pod_across_nodes_by_ip(cluster: Cluster) -> None:
    server, caller = unique("p2p-server"), unique("p2p-caller")
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {server}}}
        spec:
          nodeName: {cluster.a.node_name}
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sh, -c, "mkdir /www && echo from-a >/www/index.html && exec httpd -f -p 8080 -h /www"]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {caller}}}
        spec:
          nodeName: {cluster.b.node_name}
          terminationGracePeriodSeconds: 1
          containers: [{{name: main, image: {BUSYBOX}, command: [sleep, "3600"]}}]
        """)
    async with cluster.client() as client:
        for name in (server, caller):
            await wait_for(lambda n=name: _phase(client, n, "Running"), 60, f"pod {name} Running")
        cidr_a = (await client.get_node(cluster.a.node_name)).spec.pod_cidr
        cidr_b = (await client.get_node(cluster.b.node_name)).spec.pod_cidr
        assert cidr_a and cidr_b and cidr_a != cidr_b
        server_ip = (await client.get_pod(server)).status.pod_ip
        caller_ip = (await client.get_pod(caller)).status.pod_ip
        assert ipaddress.ip_address(server_ip) in ipaddress.ip_network(cidr_a)
        assert ipaddress.ip_address(caller_ip) in ipaddress.ip_network(cidr_b)

        def answered() -> bool:
            return fetch(cluster, caller, f"http://{server_ip}:8080/", 1) == ["from-a"]

        await wait_for(answered, 30, f"{caller} on B to reach {server} on A at {server_ip}", interval=0.5)
        await delete_pods(client, server, caller)


async def test_cluster_ip_spreads_over_all_backends_and_node_port_answers(
    cluster: Cluster, web: Web, client_pod: str
) -> None:
    answers = fetch(cluster, client_pod, f"http://{web.cluster_ip}:80/", 300)
    assert len(answers) == 300 and set(answers) <= web.backends, set(answers) - web.backends
    assert set(answers) == web.backends, f"reached {set(answers)} of {web.backends}"
    # Random balancing: 100 each on average; 60 is about 5 standard deviations below.
    counts = Counter(answers)
    assert min(counts.values()) >= 60, counts

    async with cluster.client() as client:
        node = await client.get_node(cluster.a.node_name)
    internal_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    for address in ("127.0.0.1", internal_ip, pod_gateway(node.spec.pod_cidr)):
        answered = {host_get(f"http://{address}:{web.node_port}/") for _ in range(10)}
        assert answered <= web.backends, f"{address}:{web.node_port} answered {answered}"


async def test_unready_backend_stops_receiving_traffic(cluster: Cluster, web: Web, client_pod: str) -> None:
    victim = sorted(web.backends)[0]
    url = f"http://{web.cluster_ip}:80/"
    removed = pod_exec(cluster.master, victim, "rm", "/tmp/ready")
    assert removed.returncode == 0, removed.stderr
    unready_at = time.monotonic()
    # One failed probe makes it unready, the EndpointSlice follows at once, the proxy within its
    # minimum sync interval; the rest is process and network latency (generous, for a busy CI).
    deadline = PROBE_PERIOD + PROXY_MIN_SYNC + 5

    def victim_left() -> bool:
        return victim not in fetch(cluster, client_pod, url, 10)

    await wait_for(victim_left, deadline, f"{victim} out of the ClusterIP's rotation", interval=0.1)
    elapsed = time.monotonic() - unready_at
    answers = fetch(cluster, client_pod, url, 100)
    assert victim not in answers and "FAIL" not in answers, answers
    assert set(answers) == web.backends - {victim}, f"after {elapsed:.1f}s: {set(answers)}"

    # Ready again: back in the rotation.
    assert pod_exec(cluster.master, victim, "touch", "/tmp/ready").returncode == 0
    await wait_for(lambda: victim in fetch(cluster, client_pod, url, 20), 20, f"{victim} back in rotation")


async def test_client_ip_session_affinity_sticks_to_one_backend(
    cluster: Cluster, web: Web, client_pod: str
) -> None:
    apply(cluster, """\
        apiVersion: v1
        kind: Service
        metadata: {name: sticky}
        spec:
          selector: {app: web}
          sessionAffinity: ClientIP
          ports: [{port: 80, targetPort: 8080}]
        """)
    async with cluster.client() as client:
        ip = (await client.get("services", "sticky")).spec.cluster_ip
    await wait_for(lambda: service_proxied(ip), 30, f"the proxy's rules for {ip}")
    answers = fetch(cluster, client_pod, f"http://{ip}/", 30)
    assert len(set(answers)) == 1 and set(answers) <= web.backends, Counter(answers)
    assert pyctl(cluster.master, "delete", "svc", "sticky").returncode == 0


def outside_get(docker_client: docker.DockerClient, node: str, port: int, count: int) -> list[str]:
    """What ``count`` requests to ``port`` of the host answered, made from a container on Docker's
    default bridge: a client outside the cluster CIDR (and not the host itself) reaching a
    NodePort on the host's address on that bridge. The container carries the node's label so
    the cluster's teardown removes it whatever happens."""
    gateway = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    url = f"http://{gateway}:{port}/"
    script = f"i=0; while [ $i -lt {count} ]; do {WGET} {url} || echo FAIL; i=$((i+1)); done"
    container = docker_client.containers.run(
        BUSYBOX, ["sh", "-c", script], detach=True, labels={"pykube.node.name": node}
    )
    try:
        container.wait(timeout=120)
        return container.logs(stdout=True, stderr=False).decode().split()
    finally:
        container.remove(force=True)


async def test_node_port_from_outside_the_cluster_and_local_traffic_policy(
    cluster: Cluster, web: Web, docker_client: docker.DockerClient
) -> None:
    answered = Counter(outside_get(docker_client, cluster.a.node_name, web.node_port, 20))
    assert set(answered) <= web.backends and len(answered) > 1, answered
    apply(cluster, """\
        apiVersion: v1
        kind: Service
        metadata: {name: web-local}
        spec:
          type: NodePort
          selector: {app: web}
          externalTrafficPolicy: Local
          ports: [{port: 80, targetPort: 8080}]
        """)
    async with cluster.client() as client:
        svc = await client.get("services", "web-local")
        pods = (await client.list("pods", "default", label_selector="app=web")).items
    # Node A's agent is the host's proxy: "this node" is A. (From the host itself or from a pod,
    # Local does not apply: kube-proxy sends that traffic to every endpoint.)
    local = {p.metadata.name for p in pods if p.spec.node_name == cluster.a.node_name}
    assert local and local < web.backends, "the web pods are spread over both nodes"
    await wait_for(lambda: service_proxied(svc.spec.cluster_ip), 30, "the proxy's rules for web-local")
    answered = Counter(outside_get(docker_client, cluster.a.node_name, svc.spec.ports[0].node_port, 10))
    assert set(answered) == local, answered
    assert pyctl(cluster.master, "delete", "svc", "web-local").returncode == 0


async def test_service_names_resolve_from_a_pod(cluster: Cluster, web: Web, client_pod: str) -> None:
    # The node's DNS server first: a query must never go to the host's upstream resolvers.
    async with cluster.client() as client:
        pod = await client.get_pod(client_pod)
        node = await client.get_node(pod.spec.node_name)
    resolv = pod_exec(cluster.master, client_pod, "cat", "/etc/resolv.conf").stdout.split("\n")
    assert f"nameserver {pod_gateway(node.spec.pod_cidr)}" in resolv, resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in " ".join(resolv), resolv
    for url in ("http://web.default.svc.cluster.local:80/", "http://web/"):
        (answer,) = fetch(cluster, client_pod, url, 1)
        assert answer in web.backends, f"{url}: {answer}"


async def test_service_env_vars_in_a_pod_started_after_the_service(
    cluster: Cluster, web: Web, client_pod: str
) -> None:
    result = pod_exec(cluster.master, client_pod, "env")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env.get("WEB_SERVICE_HOST") == web.cluster_ip, env
    assert env.get("WEB_SERVICE_PORT") == "80"
    assert env.get("WEB_PORT") == f"tcp://{web.cluster_ip}:80"
    assert env.get("WEB_NP_SERVICE_PORT") == "80"
    assert env.get("KUBERNETES_SERVICE_HOST")


async def test_data_path_survives_agent_restart_and_resyncs(
    cluster: Cluster, web: Web, client_pod: str
) -> None:
    async with cluster.client() as client:
        client_node = (await client.get_pod(client_pod)).spec.node_name
    for agent in cluster.agents:
        agent.stop()
    assert ":KUBE-SERVICES" in iptables_save("nat")

    # No agent runs: requests from the host and from a pod (exec straight through Docker) still work.
    assert {host_get(f"http://127.0.0.1:{web.node_port}/") for _ in range(10)} <= web.backends
    code, out = docker_exec(client_node, client_pod, "main", ["sh", "-c", " ".join(
        f"{WGET} http://{web.cluster_ip}/ || echo FAIL;" for _ in range(20))])
    assert code == 0 and set(out.split()) <= web.backends, out

    # A Service made while the agents are down works once they are back.
    apply(cluster, """\
        apiVersion: v1
        kind: Service
        metadata: {name: late}
        spec:
          selector: {app: web}
          ports: [{port: 8081, targetPort: 8080}]
        """)
    for agent in cluster.agents:
        agent.start()
    await wait_nodes_ready(cluster.master, cluster.node_names)
    async with cluster.client() as client:
        late_ip = (await client.get("services", "late")).spec.cluster_ip
    await wait_for(lambda: service_proxied(late_ip), 30, f"the restarted proxy's rules for {late_ip}")

    def late_works() -> bool:
        return set(fetch(cluster, client_pod, f"http://{late_ip}:8081/", 5)) <= web.backends

    await wait_for(late_works, 30, "the Service made while the agents were down", interval=0.5)
    assert pyctl(cluster.master, "delete", "svc", "late").returncode == 0


async def test_cleanup_removes_every_owned_rule_and_chain(cluster: Cluster) -> None:
    assert ":KUBE-SERVICES" in iptables_save("nat")
    for agent in cluster.agents:
        agent.stop()
    result = cluster.a.cleanup()
    assert result.returncode == 0, result.stdout + result.stderr
    for table in ("nat", "filter"):
        left = [line for line in iptables_save(table).splitlines() if OWNED_CHAIN_MARK in line]
        assert left == [], f"{table}: {left}"
