"""The pod network end to end (issue 12): a real pymaster and two real pykubelets sharing this
host's Docker Engine, each node with its own Docker bridge network on its podCIDR.

- each node gets a podCIDR and its own network ``pykube-<node>`` (subnet = podCIDR, gateway =
  its first address, Docker's masquerade off);
- pods on node A and node B get addresses from their nodes' podCIDRs (status.podIP, podIPs);
- a pod on A reaches an httpd pod on B by pod IP, and the server sees the client's pod IP (no NAT
  between the two bridges: the pod network's DOCKER-USER rule lets the traffic through Docker's
  isolation);
- hostPort is still published on the node (127.0.0.1:<hostPort> from this process);
- an app container's /etc/resolv.conf has the ClusterFirst content (node DNS server = the
  gateway, ``<ns>.svc.cluster.local svc.cluster.local cluster.local`` + the host's search
  domains, ``ndots:5``); dnsPolicy Default gets the host's nameservers; a hostNetwork pod's podIP
  is the node's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import textwrap
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from pykubelet.network.iptables_rules import cleanup_pod_network_rules
from pykubelet.network.pod_dns import parse_resolv_conf
from pymaster.api.network import pod_gateway

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    free_port,
    pod_exec,
    pyctl,
    running_cluster,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e

# busybox-static's `wget -T` crashes (SIGSEGV): bound each request with `timeout` instead.
WGET = ["timeout", "5", "wget", "-qO-"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("podnet"), prefixes=("node-a", "node-b"),
        master_extra=["--allow-host-network"], agent_extra=["--allow-host-network"],
    ) as running:
        yield running
    # The host's rules outlive the agents by design (pods keep running): remove them, as
    # `pykubelet --cleanup` would.
    cleanup_pod_network_rules()


def apply(cluster: Cluster, manifest: str) -> None:
    result = pyctl(cluster.master, "apply", "-f", "-", stdin=textwrap.dedent(manifest))
    assert result.returncode == 0, result.stderr


def run_pod(cluster: Cluster, name: str, node: str, command: str, extra: str = "") -> None:
    """A busybox pod on ``node`` running ``command`` (sh -c); ``extra``: more spec lines."""
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          nodeName: {node}
          terminationGracePeriodSeconds: 1
{textwrap.indent(textwrap.dedent(extra), " " * 10)}
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sh, -c, "{command}"]
        """)


async def running_pod(cluster: Cluster, name: str):  # -> objects_pb2.Pod
    async with cluster.client() as client:
        async def running():
            pod = await client.get_pod(name)
            return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

        return await wait_for(running, 60, f"pod {name} Running with an IP")


async def pod_cidr(cluster: Cluster, node: str) -> str:
    async with cluster.client() as client:
        return (await client.get("nodes", node)).spec.pod_cidr


def test_each_node_has_its_own_network(cluster: Cluster) -> None:
    cidrs = {node: asyncio.run(pod_cidr(cluster, node)) for node in cluster.node_names}
    assert all(cidrs.values()) and len(set(cidrs.values())) == 2, cidrs
    engine = docker.from_env()
    try:
        for node, cidr in cidrs.items():
            network = asyncio.run(wait_for(lambda n=node: _network(engine, n), 30, f"network of {node}"))
            assert network.attrs["Driver"] == "bridge"
            assert network.attrs["IPAM"]["Config"] == [{"Subnet": cidr, "Gateway": pod_gateway(cidr)}]
            options = network.attrs["Options"]
            assert options["com.docker.network.bridge.enable_ip_masquerade"] == "false"
            assert len(options["com.docker.network.bridge.name"]) <= 15
            assert network.attrs["Labels"] == {"pykube.node.name": node}
    finally:
        engine.close()


def _network(engine: docker.DockerClient, node: str):  # -> docker Network | None
    found = engine.networks.list(names=[f"pykube-{node}"])
    return found[0] if found else None


def test_pod_to_pod_across_nodes_without_nat(cluster: Cluster) -> None:
    server, client_pod = unique("server"), unique("client")
    run_pod(cluster, server, cluster.b.node_name,
            "mkdir -p /www && echo hello-from-b > /www/index.html && exec httpd -f -vv -p 8080 -h /www")
    run_pod(cluster, client_pod, cluster.a.node_name, "exec sleep 3600")
    try:
        server_ip = asyncio.run(running_pod(cluster, server)).status.pod_ip
        client = asyncio.run(running_pod(cluster, client_pod))
        client_ip = client.status.pod_ip
        assert [p.ip for p in client.status.pod_ips] == [client_ip]
        for ip, node in ((server_ip, cluster.b.node_name), (client_ip, cluster.a.node_name)):
            cidr = asyncio.run(pod_cidr(cluster, node))
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr), (ip, cidr)

        def fetched() -> bool:
            result = pod_exec(cluster.master, client_pod, *WGET, f"http://{server_ip}:8080/")
            return result.returncode == 0 and "hello-from-b" in result.stdout

        asyncio.run(wait_for(fetched, 30, "the client pod fetching from the server pod", interval=1))

        def logged() -> bool:  # httpd -vv logs each client as [::ffff:<ip>]:<port>: the pod IP, not NATed
            return f":{client_ip}]:" in pyctl(cluster.master, "logs", server).stdout

        asyncio.run(wait_for(logged, 10, f"the server's log naming the client {client_ip}"))
    finally:
        asyncio.run(_delete(cluster, server, client_pod))


def test_host_port_is_published_on_the_node(cluster: Cluster) -> None:
    name, port = unique("hostport"), free_port()
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          nodeName: {cluster.a.node_name}
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {BUSYBOX}
            command: [sh, -c, "mkdir -p /www && echo via-host-port > /www/index.html
                               && exec httpd -f -p 80 -h /www"]
            ports: [{{containerPort: 80, hostPort: {port}}}]
        """)
    try:
        asyncio.run(running_pod(cluster, name))

        def fetched() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as response:
                return b"via-host-port" in response.read()

        asyncio.run(wait_for(fetched, 30, f"127.0.0.1:{port} answering"))
    finally:
        asyncio.run(_delete(cluster, name))


def test_cluster_first_resolv_conf(cluster: Cluster) -> None:
    name = unique("dns")
    run_pod(cluster, name, cluster.a.node_name, "exec sleep 3600")
    try:
        asyncio.run(running_pod(cluster, name))
        cidr = asyncio.run(pod_cidr(cluster, cluster.a.node_name))
        result = pod_exec(cluster.master, name, "cat", "/etc/resolv.conf")  # the app container's view
        assert result.returncode == 0, result.stderr
        searches = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local",
                    *_host_resolv_conf().searches]
        expected = f"nameserver {pod_gateway(cidr)}\nsearch {' '.join(searches)}\noptions ndots:5\n"
        assert result.stdout == expected
    finally:
        asyncio.run(_delete(cluster, name))


def test_dns_policy_default_gets_the_hosts(cluster: Cluster) -> None:
    name = unique("dns-default")
    run_pod(cluster, name, cluster.b.node_name, "exec sleep 3600", extra="dnsPolicy: Default")
    try:
        asyncio.run(running_pod(cluster, name))
        result = pod_exec(cluster.master, name, "cat", "/etc/resolv.conf")
        assert result.returncode == 0, result.stderr
        assert parse_resolv_conf(result.stdout) == _host_resolv_conf()
    finally:
        asyncio.run(_delete(cluster, name))


def test_host_network_pod_has_the_node_ip(cluster: Cluster) -> None:
    name = unique("hostnet")
    run_pod(cluster, name, cluster.a.node_name, "exec sleep 3600", extra="hostNetwork: true")
    try:
        pod = asyncio.run(running_pod(cluster, name))
        assert pod.status.pod_ip == pod.status.host_ip
        assert [p.ip for p in pod.status.pod_ips] == [pod.status.host_ip]
    finally:
        asyncio.run(_delete(cluster, name))


def _host_resolv_conf():  # -> ResolvConf
    with open("/etc/resolv.conf", encoding="utf-8") as f:
        return parse_resolv_conf(f.read())


async def _delete(cluster: Cluster, *names: str) -> None:
    async with cluster.client() as client:
        await delete_pods(client, *names)
