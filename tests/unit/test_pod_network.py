"""The pod network's pure parts: the routes to other nodes' pod CIDRs, the iptables rules, the
node's Docker network, and each pod's sandbox settings (with a fake runtime)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agent_builders import make_pod

from pykubelet import sync
from pykubelet.executor import PodExecutor
from pykubelet.network.iptables_rules import FORWARD_CHAIN, POSTROUTING_CHAIN, wanted_rules
from pykubelet.network.pod_network import NetworkNotReady, PodNetwork, bridge_name, bridge_network
from pykubelet.network.routes import wanted_routes
from pykubelet.runtime.base import BridgeNetwork, PodDNS, SandboxConfig
from pymaster.api import objects_pb2
from pymaster.api.network import NetworkConfig
from tests.fakes import FakeRuntime


def node(name: str, cidr: str = "", ip: str = "", address_type: str = "InternalIP") -> objects_pb2.Node:
    n = objects_pb2.Node()
    n.metadata.name = name
    n.spec.pod_cidr = cidr
    if ip:
        n.status.addresses.add(type=address_type, address=ip)
    return n


def test_routes_to_other_nodes_via_their_internal_ip() -> None:
    nodes = [
        node("me", "10.244.0.0/24", "192.0.2.2"),
        node("b", "10.244.1.0/24", "192.0.2.3"),
        node("c", "10.244.2.0/24", "192.0.2.4"),
    ]
    assert wanted_routes(nodes, "10.244.0.0/24", {"192.0.2.2"}) == {
        "10.244.1.0/24": "192.0.2.3",
        "10.244.2.0/24": "192.0.2.4",
    }


@pytest.mark.parametrize(
    "other",
    [
        node("no-cidr", "", "192.0.2.3"),
        node("no-ip", "10.244.1.0/24"),
        node("external-only", "10.244.1.0/24", "198.51.100.7", address_type="ExternalIP"),
        node("same-host", "10.244.1.0/24", "192.0.2.2"),  # two agents on one engine
        node("loopback", "10.244.1.0/24", "127.0.0.1"),
        node("bad-cidr", "10.244.1.0/33", "192.0.2.3"),
    ],
    ids=lambda n: n.metadata.name,
)
def test_nodes_without_a_route(other: objects_pb2.Node) -> None:
    me = node("me", "10.244.0.0/24", "192.0.2.2")
    assert wanted_routes([me, other], "10.244.0.0/24", {"192.0.2.2"}) == {}


def test_iptables_rules() -> None:
    from_pods, to_pods, masquerade = wanted_rules("10.244.0.0/16", "10.244.3.0/24")
    for rule, direction in ((from_pods, "-s"), (to_pods, "-d")):
        assert (rule.table, rule.chain) == ("filter", FORWARD_CHAIN)
        assert rule.args[:2] == (direction, "10.244.0.0/16") and rule.args[-1] == "ACCEPT"
    assert (masquerade.table, masquerade.chain) == ("nat", POSTROUTING_CHAIN)
    assert masquerade.args[:5] == ("-s", "10.244.3.0/24", "!", "-d", "10.244.0.0/16")
    assert masquerade.args[-1] == "MASQUERADE"


def test_bridge_network() -> None:
    net = bridge_network("node-a-0123456789abcdef", "10.244.3.0/24")
    assert net.name == "pykube-node-a-0123456789abcdef"
    assert (net.subnet, net.gateway) == ("10.244.3.0/24", "10.244.3.1")
    assert net.options["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    bridge = net.options["com.docker.network.bridge.name"]
    assert bridge == bridge_name("node-a-0123456789abcdef") and len(bridge) <= 15
    assert bridge != bridge_name("node-b-0123456789abcdef")
    assert net.labels == {"pykube.node.name": "node-a-0123456789abcdef"}


class FakeRegistration:
    def __init__(self, pod_cidr: str):
        self.registered = asyncio.Event()
        self.network = NetworkConfig()
        self.pod_cidr = pod_cidr


class FakeNetworkRuntime:
    def __init__(self) -> None:
        self.ensured: list[BridgeNetwork] = []

    async def ensure_bridge_network(self, want: BridgeNetwork) -> bool:
        self.ensured.append(want)
        return len(self.ensured) == 1


def a_pod(policy: str = "", host_network: bool = False) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "p", "default"
    p.spec.dns_policy, p.spec.host_network = policy, host_network
    return p


async def test_sandbox_config_on_the_node_network(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\nsearch corp.example\n")
    runtime = FakeNetworkRuntime()
    net = PodNetwork(runtime, "n1", FakeRegistration("10.244.3.0/24"), str(resolv), manage_rules=False)
    await net.sync()
    await net.sync()  # idempotent: the runtime keeps the network
    assert [w.subnet for w in runtime.ensured] == ["10.244.3.0/24", "10.244.3.0/24"]
    assert net.pod_cidr == "10.244.3.0/24"
    config = await net.sandbox_config(a_pod())
    assert config.network == "pykube-n1"
    assert config.dns == PodDNS(
        ("10.244.3.1",),
        ("default.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"),
        ("ndots:5",),
    )
    host = await net.sandbox_config(a_pod("Default"))
    assert host.dns == PodDNS(("10.255.255.53",), ("corp.example",), ())


async def test_no_pod_cidr_uses_the_default_bridge_and_host_dns(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.255.255.53\n")
    runtime = FakeNetworkRuntime()
    net = PodNetwork(runtime, "n1", FakeRegistration(""), str(resolv), manage_rules=False)
    await net.sync()
    assert runtime.ensured == []
    config = await net.sandbox_config(a_pod())
    assert config.network == "" and config.dns == PodDNS(("10.255.255.53",), (), ())


async def test_network_not_ready_fails_the_sandbox() -> None:
    net = PodNetwork(FakeNetworkRuntime(), "n1", FakeRegistration("10.244.3.0/24"), ready_timeout=0.01)
    with pytest.raises(NetworkNotReady, match="network is not ready"):
        await net.sandbox_config(a_pod())


# ---- the executor hands each sandbox its settings ----


class SandboxRecordingRuntime(FakeRuntime):
    """The shared fake runtime, recording the sandbox settings of each infra start."""

    def __init__(self) -> None:
        super().__init__()
        self.sandboxes: list[SandboxConfig | None] = []

    async def start_infra(self, pod, node_name, infra_image, restart_count=0, sandbox=None):  # type: ignore[override]
        self.sandboxes.append(sandbox)
        return await super().start_infra(pod, node_name, infra_image, restart_count)


async def test_executor_starts_the_sandbox_with_its_network_settings() -> None:
    pod = make_pod("a")
    runtime = SandboxRecordingRuntime()
    wanted = SandboxConfig(network="pykube-n1", dns=PodDNS(("10.244.3.1",), (), ("ndots:5",)))

    async def sandbox_config(p: objects_pb2.Pod) -> SandboxConfig:
        assert p is pod
        return wanted

    executor = PodExecutor(runtime, runtime.volumes, "n1", "pause:1", "10.0.0.1",
                           sandbox_config=sandbox_config)
    assert await executor.execute(pod, sync.compute_pod_actions(pod, None), None) == []
    assert runtime.sandboxes == [wanted]


async def test_network_not_ready_fails_the_pods_containers() -> None:
    pod = make_pod("a")
    runtime = SandboxRecordingRuntime()

    async def not_ready(p: objects_pb2.Pod) -> SandboxConfig:
        raise NetworkNotReady("network is not ready: not set up yet")

    executor = PodExecutor(runtime, runtime.volumes, "n1", "pause:1", "10.0.0.1", sandbox_config=not_ready)
    failures = await executor.execute(pod, sync.compute_pod_actions(pod, None), None)
    assert [(f.container_name, f.reason) for f in failures] == [("a", "NetworkNotReady")]
    assert runtime.sandboxes == []
