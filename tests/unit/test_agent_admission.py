"""The agent's own admission check (pykubelet.admission): the shared rules with the node's flags,
symlinks resolved on the node's disk, the sysctl allowlist, AppArmor on the host, and the
rejection reason and message of the pod's status."""

from __future__ import annotations

from pykubelet.admission import (
    AdmissionPolicy,
    Violation,
    check_fit,
    check_pod,
    rejection_message,
    rejection_reason,
)
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


def sysctl_pod(*names: str, host_network: bool = False) -> objects_pb2.Pod:
    p = pod(host_network=host_network)
    for name in names:
        p.spec.security_context.sysctls.add(name=name, value="1")
    return p


NEW_KERNEL = (6, 1)


def test_safe_sysctls_are_allowed_everywhere() -> None:
    p = sysctl_pod("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net/ipv4/tcp_syncookies",
                   "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                   "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                   "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                   "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")
    assert check_pod(p, AdmissionPolicy(), kernel=NEW_KERNEL) == []


def test_unsafe_sysctls_need_the_nodes_flag() -> None:
    p = sysctl_pod("kernel.msgmax", "kernel.sem", "net.core.somaxconn", "vm.swappiness")
    assert [(str(v), v.reason) for v in check_pod(p, AdmissionPolicy(), kernel=NEW_KERNEL)] == [
        (f'spec.securityContext.sysctls[{i}].name: forbidden sysctl: "{name}" not allowlisted '
         "(pykubelet --allowed-unsafe-sysctls)", "SysctlForbidden")
        for i, name in enumerate(("kernel.msgmax", "kernel.sem", "net.core.somaxconn", "vm.swappiness"))
    ]
    policy = AdmissionPolicy.of(allowed_unsafe_sysctls=["kernel.msg*", "net/core/somaxconn"])
    assert [v.field for v in check_pod(p, policy, kernel=NEW_KERNEL)] == [
        "spec.securityContext.sysctls[1].name", "spec.securityContext.sysctls[3].name",
    ]
    # vm.* is not namespaced: no flag can allow it (the kubelet refuses such a flag at start).
    unnamespaced = AdmissionPolicy(allowed_unsafe_sysctls=("vm.*",))
    violations = check_pod(p, unnamespaced, kernel=NEW_KERNEL)
    assert [v.field for v in violations] == [f"spec.securityContext.sysctls[{i}].name" for i in range(4)]


def test_safe_sysctls_depend_on_the_kernel() -> None:
    p = sysctl_pod("net.ipv4.tcp_rmem", "net.ipv4.ip_local_port_range")
    [violation] = check_pod(p, AdmissionPolicy(), kernel=(4, 14))
    assert violation.field == "spec.securityContext.sysctls[0].name"
    assert check_pod(p, AdmissionPolicy(), kernel=(4, 15)) == []


def test_network_sysctls_are_refused_on_the_hosts_network() -> None:
    policy = AdmissionPolicy.of(allow_host_network=True)
    p = sysctl_pod("kernel.shm_rmid_forced", "net.ipv4.tcp_syncookies", host_network=True)
    assert [str(v) for v in check_pod(p, policy, kernel=NEW_KERNEL)] == [
        'spec.securityContext.sysctls[1].name: forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with '
        "host net enabled"
    ]


def test_the_first_violation_gives_the_reason() -> None:
    p = sysctl_pod("kernel.sem", host_network=True)
    violations = check_pod(p, AdmissionPolicy(), kernel=NEW_KERNEL)
    assert [v.reason for v in violations] == ["SysctlForbidden", "Forbidden"]
    assert rejection_reason(violations) == "SysctlForbidden"
    assert rejection_reason(violations[1:]) == "Forbidden"
    assert rejection_reason([]) == "Forbidden"


APPARMOR = "Cannot enforce AppArmor: AppArmor is not enabled on the host"


def test_apparmor_profiles_need_apparmor_on_the_host() -> None:
    p = pod()
    p.spec.containers.add(name="c1", image="pykube/busybox:1.35")
    assert check_pod(p, AdmissionPolicy(), apparmor_enabled=False) == []
    p.spec.security_context.app_armor_profile.type = "Unconfined"
    p.spec.containers[0].security_context.app_armor_profile.type = "Unconfined"
    p.metadata.annotations["container.apparmor.security.beta.kubernetes.io/c0"] = "unconfined"
    assert check_pod(p, AdmissionPolicy(), apparmor_enabled=False) == []
    p.metadata.annotations["container.apparmor.security.beta.kubernetes.io/c1"] = "localhost/deny-write"
    [violation] = check_pod(p, AdmissionPolicy(), apparmor_enabled=False)
    assert (violation.field, violation.message, violation.reason) == (
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/c1]", APPARMOR, "AppArmor",
    )
    p.spec.containers[1].security_context.app_armor_profile.type = "RuntimeDefault"
    [violation] = check_pod(p, AdmissionPolicy(), apparmor_enabled=False)
    assert violation.field == "spec.containers[1].securityContext.appArmorProfile"
    p.spec.security_context.app_armor_profile.type = "Localhost"
    [violation] = check_pod(p, AdmissionPolicy(), apparmor_enabled=False)
    assert violation.field == "spec.securityContext.appArmorProfile"
    assert check_pod(p, AdmissionPolicy(), apparmor_enabled=True) == []


def _asking(cpu: str = "", dongles: str = "") -> objects_pb2.Pod:
    p = pod()
    resources = p.spec.containers[0].resources
    if cpu:
        resources.requests["cpu"] = cpu
    if dongles:
        resources.requests["example.com/dongle"] = resources.limits["example.com/dongle"] = dongles
    return p


def test_resources_fit_beside_the_pods_admitted_before() -> None:
    allocatable = {"cpu": "2", "memory": "1Gi", "pods": "3", "example.com/dongle": "2"}
    assert check_fit(_asking("500m", "1"), allocatable, [_asking("1", "1")]) == []
    [cpu] = check_fit(_asking("1500m"), allocatable, [_asking("1")])
    assert (cpu.reason, str(cpu)) == (
        "OutOfcpu", "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000"
    )
    assert rejection_message([cpu]) == f"Pod was rejected: {cpu.message}"
    [dongle] = check_fit(_asking(dongles="2"), allocatable, [_asking(dongles="1")])
    assert dongle.reason == "OutOfexample.com/dongle"
    # A resource the node does not have at all is short too; so is the pod count.
    [gpu] = check_fit(_asking(dongles="1"), {"cpu": "2", "memory": "1Gi", "pods": "3"}, [])
    assert gpu.message.endswith("requested: 1, used: 0, capacity: 0")
    [pods] = check_fit(_asking(), allocatable, [_asking(), _asking(), _asking()])
    assert pods.reason == "OutOfpods"


def test_ephemeral_storage_fits_beside_the_pods_admitted_before() -> None:
    def storage(request: str) -> objects_pb2.Pod:
        p = pod()
        p.spec.containers[0].resources.limits["ephemeral-storage"] = request  # the request defaults to it
        return p

    allocatable = {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "10Gi", "pods": "110"}
    assert check_fit(storage("2Gi"), allocatable, [storage("8Gi")]) == []
    [short] = check_fit(storage("3Gi"), allocatable, [storage("8Gi")])
    assert (short.reason, short.message) == (
        "OutOfephemeral-storage",
        f"Node didn't have enough resource: ephemeral-storage, requested: {3 * 1024**3}, "
        f"used: {8 * 1024**3}, capacity: {10 * 1024**3}",
    )
    assert rejection_reason([short]) == "OutOfephemeral-storage"
    # A node that does not report any (an older agent) has none to give.
    [none] = check_fit(storage("1"), {"cpu": "2", "memory": "1Gi", "pods": "110"}, [])
    assert none.message.endswith("requested: 1, used: 0, capacity: 0")
