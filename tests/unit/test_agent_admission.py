"""The agent's own admission check: privileged, hostNetwork and hostPath against the node's flags."""

from __future__ import annotations

import pytest

from pykubelet.admission import (
    AdmissionPolicy,
    Violation,
    check_pod,
    normalize_prefix,
    rejection_message,
    under_prefix,
)
from pymaster.api import objects_pb2


def pod(
    privileged: tuple[bool, ...] = (),
    host_network: bool = False,
    host_paths: tuple[str, ...] = (),
    empty_dirs: int = 0,
) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "u1"
    p.spec.host_network = host_network
    for i, flag in enumerate(privileged or (False,)):
        c = p.spec.containers.add(name=f"c{i}", image="pykube/busybox:1.35")
        if flag:
            c.security_context.privileged = True
    for i in range(empty_dirs):
        p.spec.volumes.add(name=f"scratch{i}").empty_dir.SetInParent()
    for i, path in enumerate(host_paths):
        p.spec.volumes.add(name=f"host{i}").host_path.path = path
    return p


def same(path: str) -> str:
    return path


HP = "spec.volumes[0].hostPath.path"
NONE = AdmissionPolicy()
ALL = AdmissionPolicy(allow_privileged=True, allow_host_network=True, allowed_host_paths=("/",))
DATA = AdmissionPolicy(allowed_host_paths=("/data", "/srv/www"))


@pytest.mark.parametrize(
    ("the_pod", "policy"),
    [
        (pod(), NONE),
        (pod(empty_dirs=2), NONE),
        (pod(privileged=(False, False)), NONE),
        (pod(privileged=(True,), host_network=True, host_paths=("/etc",)), ALL),
        (pod(privileged=(True,)), AdmissionPolicy(allow_privileged=True)),
        (pod(host_network=True), AdmissionPolicy(allow_host_network=True)),
        (pod(host_paths=("/data",)), DATA),
        (pod(host_paths=("/data/logs", "/srv/www/site")), DATA),
        (pod(host_paths=("/data/a/../b",)), DATA),
        (pod(host_paths=("//data/x",)), DATA),
        (pod(host_paths=("/data/",)), DATA),
    ],
)
def test_admitted(the_pod: objects_pb2.Pod, policy: AdmissionPolicy) -> None:
    assert check_pod(the_pod, policy, resolve=same) == []


@pytest.mark.parametrize(
    ("the_pod", "policy", "expected"),
    [
        (pod(privileged=(False, True)), NONE, [
            ("spec.containers[1].securityContext.privileged", "--allow-privileged"),
        ]),
        (pod(host_network=True), AdmissionPolicy(allow_privileged=True), [
            ("spec.hostNetwork", "--allow-host-network"),
        ]),
        (pod(host_paths=("/etc",)), NONE, [
            (HP, "/etc is not under an allowed host path; this node allows none"),
        ]),
        (pod(empty_dirs=1, host_paths=("/data2",)), DATA, [
            ("spec.volumes[1].hostPath.path", "allowed on this node: /data, /srv/www (pykubelet --allowed-"),
        ]),
        (pod(host_paths=("/data/../etc",)), DATA, [
            (HP, "/data/../etc is not under an allowed host path"),
        ]),
        (pod(host_paths=("/srv",)), DATA, [(HP, "/srv is not under")]),
        (pod(host_paths=("data",)), DATA, [(HP, "'data' is not an absolute path")]),
        # Everything refused at once, in spec order.
        (pod(privileged=(True, True), host_network=True, host_paths=("/", "/data/ok")), DATA, [
            ("spec.hostNetwork", "host networking is not allowed"),
            ("spec.containers[0].securityContext.privileged", "privileged containers are not allowed"),
            ("spec.containers[1].securityContext.privileged", "privileged containers are not allowed"),
            (HP, "/ is not under an allowed host path"),
        ]),
    ],
)
def test_refused(the_pod: objects_pb2.Pod, policy: AdmissionPolicy, expected: list[tuple[str, str]]) -> None:
    violations = check_pod(the_pod, policy, resolve=same)
    assert [v.field for v in violations] == [field for field, _ in expected]
    for violation, (_, text) in zip(violations, expected, strict=True):
        assert text in violation.message


@pytest.mark.parametrize(
    ("resolved", "admitted"),
    [("/data/real", True), ("/etc", False), ("/data2/x", False)],
)
def test_symlinks_are_resolved(resolved: str, admitted: bool) -> None:
    violations = check_pod(pod(host_paths=("/data/link",)), DATA, resolve=lambda p: resolved)
    assert (violations == []) is admitted
    if not admitted:
        assert f"/data/link resolves to {resolved}, which is not under" in violations[0].message


def test_real_symlink(tmp_path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    policy = AdmissionPolicy(allowed_host_paths=(str(allowed),))
    assert check_pod(pod(host_paths=(str(allowed / "dir"),)), policy) == []
    [violation] = check_pod(pod(host_paths=(str(allowed / "link"),)), policy)
    assert f"resolves to {outside}" in violation.message


@pytest.mark.parametrize(
    ("path", "prefixes", "expected"),
    [
        ("/data", ["/data"], True),
        ("/data/x", ["/data"], True),
        ("/data2", ["/data"], False),
        ("/dat", ["/data"], False),
        ("/anything", ["/"], True),
        ("/x", [], False),
        ("/srv/a", ["/data", "/srv"], True),
    ],
)
def test_under_prefix(path: str, prefixes: list[str], expected: bool) -> None:
    assert under_prefix(path, prefixes) is expected


@pytest.mark.parametrize(
    ("prefix", "expected"), [("/data/", "/data"), ("/a/./b/../c", "/a/c"), ("//x", "/x"), ("/", "/")]
)
def test_normalize_prefix(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected


def test_normalize_prefix_needs_an_absolute_path() -> None:
    with pytest.raises(ValueError, match="'data' is not an absolute path"):
        normalize_prefix("data")


def test_rejection_message() -> None:
    message = rejection_message([Violation("spec.hostNetwork", "no"), Violation("spec.volumes[0]", "nope")])
    assert message == "Pod was rejected: spec.hostNetwork: no; spec.volumes[0]: nope"
