"""The admission library (pymaster.api.admission), shared by the master and the agent: what a
valid pod may still not do, every violation in spec order with the flag that would allow it; and
the master's refusal of a pod (pymaster.registry.pods.admit); the sysctl facts both sides use
(names, namespaces, the safe set, the node's allowed unsafe sysctls)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.admission import (
    CLUSTER,
    NODE,
    AdmissionPolicy,
    check_pod,
    check_sysctl_pattern,
    normalize_host_path,
    normalize_sysctl,
    safe_sysctls,
    sysctl_allowed,
    sysctl_namespace,
    under_prefix,
)
from pymaster.api.errors import Forbidden
from pymaster.registry.pods import admit


def pod(*, privileged: tuple[bool, ...] = (False,), host_network: bool = False, paths: tuple[str, ...] = ()):
    p = objects_pb2.Pod()
    p.metadata.name = "web"
    for i, flag in enumerate(privileged):
        container = p.spec.containers.add(name=f"c{i}", image="busybox")
        if flag:
            container.security_context.privileged = True
    p.spec.host_network = host_network
    for i, path in enumerate(paths):
        volume = p.spec.volumes.add(name=f"v{i}")
        volume.host_path.path = path
    p.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    return p


DEFAULT = AdmissionPolicy()
OPEN = AdmissionPolicy.of(
    allow_privileged=True, allow_host_network=True, allowed_host_paths=["/srv/data/", "/tmp"]
)


@pytest.mark.parametrize(
    "p, policy",
    [
        (pod(), DEFAULT),
        (pod(privileged=(False, False)), DEFAULT),
        (pod(privileged=(True,)), OPEN),
        (pod(host_network=True), OPEN),
        (pod(paths=("/srv/data",)), OPEN),
        (pod(paths=("/srv/data/x/y", "/tmp/")), OPEN),
        (pod(paths=("//srv//data/./x",)), OPEN),
        (pod(paths=("/srv/data/a/../b",)), OPEN),
        (pod(paths=("/anything",)), AdmissionPolicy.of(allowed_host_paths=["/"])),
    ],
)
def test_admitted(p, policy):
    assert check_pod(p, policy) == []
    admit(p, policy)


@pytest.mark.parametrize(
    "p, policy, message",
    [
        (
            pod(privileged=(False, True)),
            DEFAULT,
            "spec.containers[1].securityContext.privileged: privileged containers are not allowed on this "
            "cluster (pymaster --allow-privileged)",
        ),
        (
            pod(host_network=True),
            DEFAULT,
            "spec.hostNetwork: host networking is not allowed on this cluster "
            "(pymaster --allow-host-network)",
        ),
        (
            pod(paths=("/srv/data",)),
            DEFAULT,
            "spec.volumes[0].hostPath.path: host path /srv/data is not under an allowed prefix "
            "(allowed: none; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/tmp/x", "/srv/database")),
            OPEN,
            "spec.volumes[1].hostPath.path: host path /srv/database is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/srv/data/../../etc/shadow",)),
            OPEN,
            "spec.volumes[0].hostPath.path: host path /etc/shadow is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/srv",)),
            OPEN,
            "spec.volumes[0].hostPath.path: host path /srv is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("relative",)),
            OPEN,
            "spec.volumes[0].hostPath.path: 'relative': must be an absolute path",
        ),
    ],
)
def test_refused(p, policy, message):
    assert [str(v) for v in check_pod(p, policy)] == [message]
    with pytest.raises(Forbidden) as err:
        admit(p, policy)
    assert err.value.message == message


def test_every_violation_in_spec_order_naming_the_scope():
    p = pod(privileged=(True, True), host_network=True, paths=("/", "/srv/data/ok"))
    policy = AdmissionPolicy.of(allowed_host_paths=["/srv/data"])
    fields = [
        "spec.containers[0].securityContext.privileged",
        "spec.containers[1].securityContext.privileged",
        "spec.hostNetwork",
        "spec.volumes[0].hostPath.path",
    ]
    cluster = check_pod(p, policy, CLUSTER)
    node = check_pod(p, policy, NODE)
    assert [v.field for v in cluster] == fields == [v.field for v in node]
    assert all("on this cluster (pymaster" in v.message for v in cluster[:3])
    assert all("on this node (pykubelet" in v.message for v in node[:3])
    assert "pykubelet --allowed-host-path PREFIX" in node[3].message
    with pytest.raises(Forbidden) as err:
        admit(p, policy)
    assert err.value.message == "; ".join(str(v) for v in cluster)


@pytest.mark.parametrize(
    ("resolved", "admitted"),
    [("/srv/data/real", True), ("/etc", False), ("/srv/data2/x", False)],
)
def test_resolve_checks_the_resolved_path_too(resolved: str, admitted: bool) -> None:
    policy = AdmissionPolicy.of(allowed_host_paths=["/srv/data"])
    violations = check_pod(pod(paths=("/srv/data/link",)), policy, NODE, resolve=lambda p: resolved)
    assert (violations == []) is admitted
    if not admitted:
        assert violations[0].message.startswith(
            f"host path /srv/data/link resolves to {resolved}, which is not under an allowed prefix"
        )


@pytest.mark.parametrize(
    "path, normalized",
    [
        ("/", "/"),
        ("//", "/"),
        ("///etc", "/etc"),
        ("/a/b/../c/./d/", "/a/c/d"),
        ("/../../etc", "/etc"),
    ],
)
def test_normalize_host_path(path, normalized):
    assert normalize_host_path(path) == normalized


@pytest.mark.parametrize("path", ["relative/path", "", "/a\0b"])
def test_normalize_host_path_refuses_bad_paths(path):
    with pytest.raises(ValueError):
        normalize_host_path(path)


@pytest.mark.parametrize(
    ("path", "prefixes", "expected"),
    [
        ("/data", ["/data"], True),
        ("/data/x", ["/data"], True),
        ("/data2", ["/data"], False),
        ("/database", ["/data"], False),
        ("/etc", ["/"], True),
        ("/", ["/data"], False),
        ("/x", [], False),
        ("/srv/a", ["/data", "/srv"], True),
    ],
)
def test_under_prefix(path: str, prefixes: list[str], expected: bool) -> None:
    assert under_prefix(path, prefixes) is expected


def test_policy_normalizes_and_deduplicates_prefixes():
    policy = AdmissionPolicy.of(allowed_host_paths=["/data/", "/a/./b/../c", "//x", "/data"])
    assert policy.allowed_host_paths == ("/data", "/a/c", "/x")


def test_policy_rejects_relative_prefix():
    with pytest.raises(ValueError, match="allowed host path 'data'"):
        AdmissionPolicy.of(allowed_host_paths=["data"])


@pytest.mark.parametrize(
    "name, normalized, namespace",
    [
        ("kernel.shm_rmid_forced", "kernel.shm_rmid_forced", "ipc"),
        ("kernel.sem", "kernel.sem", "ipc"),
        ("kernel.msgmax", "kernel.msgmax", "ipc"),
        ("fs/mqueue/msg_max", "fs.mqueue.msg_max", "ipc"),
        ("net/ipv4/conf/eno2.100/rp_filter", "net.ipv4.conf.eno2/100.rp_filter", "net"),
        ("net.ipv4.conf.eno2/100.rp_filter", "net.ipv4.conf.eno2/100.rp_filter", "net"),
        ("kernel.semmni", "kernel.semmni", ""),  # only kernel.sem itself is namespaced
        ("kernel.domainname", "kernel.domainname", ""),
        ("vm.swappiness", "vm.swappiness", ""),
    ],
)
def test_sysctl_names_and_namespaces(name, normalized, namespace):
    assert normalize_sysctl(name) == normalized
    assert sysctl_namespace(normalized) == namespace


def test_safe_sysctls_by_kernel():
    assert safe_sysctls((3, 10)) == {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
    }
    assert "net.ipv4.tcp_fin_timeout" not in safe_sysctls((4, 5))
    assert "net.ipv4.tcp_fin_timeout" in safe_sysctls((4, 6))
    assert len(safe_sysctls((6, 1))) == 12


def test_allowed_unsafe_sysctls_are_namespaced_names_or_prefixes():
    policy = AdmissionPolicy.of(allowed_unsafe_sysctls=["kernel.msg*", "net/core/somaxconn", "net.ipv4.tcp_*",
                                                        "kernel.msg*"])
    assert policy.allowed_unsafe_sysctls == ("kernel.msg*", "net.core.somaxconn", "net.ipv4.tcp_*")
    assert sysctl_allowed("kernel.msgmax", policy.allowed_unsafe_sysctls)
    assert sysctl_allowed("net.core.somaxconn", policy.allowed_unsafe_sysctls)
    assert not sysctl_allowed("net.core.somaxconn2", policy.allowed_unsafe_sysctls)
    assert not sysctl_allowed("kernel.sem", policy.allowed_unsafe_sysctls)
    for pattern, message in (
        ("kernel.*", "the sysctls 'kernel.*' are not known to be namespaced"),
        ("vm.swappiness", "the sysctls 'vm.swappiness' are not known to be namespaced"),
        ("Net.core", "sysctl 'Net.core' must have at most 253 characters and be a sysctl name or a prefix "
         "ending in '*'"),
        ("net.*.x", None),
        ("net." + "a" * 250, None),
    ):
        with pytest.raises(ValueError) as err:
            check_sysctl_pattern(pattern)
        if message is not None:
            assert str(err.value) == message
        with pytest.raises(ValueError):
            AdmissionPolicy.of(allowed_unsafe_sysctls=[pattern])
