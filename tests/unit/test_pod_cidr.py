"""Pod CIDRs for nodes (kube-controller-manager's range allocator): the next free /24 of the
cluster CIDR after the last one taken, around to the start, none when the range is full; through
node registration in-process, a deleted node's CIDR is taken again once the cursor comes round."""

from __future__ import annotations

import pytest
from master_fixtures import Resources, admin_channel, node_manifest, start_master

from pymaster.api import services_pb2_grpc
from pymaster.api.network import NetworkConfig, next_pod_cidr


@pytest.mark.parametrize(
    ("cluster", "used", "start", "expected"),
    [
        ("10.244.0.0/16", set(), 0, ("10.244.0.0/24", 0)),
        ("10.244.0.0/16", {"10.244.0.0/24"}, 0, ("10.244.1.0/24", 1)),
        ("10.244.0.0/16", set(), 5, ("10.244.5.0/24", 5)),
        ("10.244.0.0/16", {"10.244.255.0/24"}, 255, ("10.244.0.0/24", 0)),  # around to the start
        ("10.244.0.0/16", set(), 256, ("10.244.0.0/24", 0)),  # a cursor past the end wraps
        ("10.0.0.0/8", set(), 300, ("10.1.44.0/24", 300)),
        ("192.168.4.0/24", set(), 0, ("192.168.4.0/24", 0)),
        ("192.168.4.0/24", {"192.168.4.0/24"}, 0, None),  # full
        ("10.9.0.0/22", {"10.9.0.0/24", "10.9.2.0/24"}, 2, ("10.9.3.0/24", 3)),
    ],
)
def test_next_pod_cidr(cluster: str, used: set[str], start: int, expected) -> None:
    assert next_pod_cidr(cluster, used, start) == expected


async def test_registered_nodes_get_the_next_free_cidr_and_a_deleted_one_is_reused(tmp_path) -> None:
    app = await start_master(tmp_path / "data", network=NetworkConfig(cluster_cidr="10.9.0.0/22"))
    try:
        async with admin_channel(app) as channel:
            agent, resources = services_pb2_grpc.NodeAgentStub(channel), Resources(channel)

            async def register(name: str) -> str:
                await agent.RegisterNode(node_manifest(name))
                return (await resources.get("nodes", name, "")).spec.pod_cidr

            first = ["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"]
            assert [await register(n) for n in ("a", "b", "c")] == first
            await resources.delete("nodes", "b", "")
            # The cursor goes on to the last free one, then comes round to b's.
            assert [await register(n) for n in ("d", "e", "f")] == ["10.9.3.0/24", "10.9.1.0/24", ""]
    finally:
        await app.stop()
