"""The agent's own admission check (pykubelet.admission): the shared rules with the node's flags,
symlinks resolved on the node's disk, and the rejection message of the pod's status."""

from __future__ import annotations

from pykubelet.admission import AdmissionPolicy, Violation, check_pod, rejection_message
from pymaster.api import objects_pb2


def pod(*host_paths: str, host_network: bool = False) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "u1"
    p.spec.host_network = host_network
    p.spec.containers.add(name="c0", image="pykube/busybox:1.35")
    for i, path in enumerate(host_paths):
        p.spec.volumes.add(name=f"host{i}").host_path.path = path
    return p


def test_messages_name_the_node_and_its_flags() -> None:
    [violation] = check_pod(pod(host_network=True), AdmissionPolicy())
    assert str(violation) == (
        "spec.hostNetwork: host networking is not allowed on this node (pykubelet --allow-host-network)"
    )


def test_real_symlink_is_resolved(tmp_path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    policy = AdmissionPolicy.of(allowed_host_paths=[str(allowed)])
    assert check_pod(pod(str(allowed / "dir")), policy) == []
    [violation] = check_pod(pod(str(allowed / "link")), policy)
    assert f"resolves to {outside}" in violation.message


def test_rejection_message() -> None:
    message = rejection_message([Violation("spec.hostNetwork", "no"), Violation("spec.volumes[0]", "nope")])
    assert message == "Pod was rejected: spec.hostNetwork: no; spec.volumes[0]: nope"


def test_the_agents_own_and_low_host_ports_are_refused() -> None:
    policy = AdmissionPolicy.of(reserved_host_ports=[10250, 10255])
    p = pod()
    for port in (10250, 80, 30080):
        p.spec.containers[0].ports.add(container_port=port, host_port=port)
    assert [str(v) for v in check_pod(p, policy)] == [
        "spec.containers[0].ports[0].hostPort: host port 10250 is a port of pykubelet itself on this node",
        "spec.containers[0].ports[1].hostPort: host ports below 1024 are not allowed on this node "
        "(pykubelet --allow-privileged-host-ports)",
    ]
    opened = AdmissionPolicy.of(reserved_host_ports=[10250], allow_privileged_host_ports=True)
    assert [v.field for v in check_pod(p, opened)] == ["spec.containers[0].ports[0].hostPort"]
