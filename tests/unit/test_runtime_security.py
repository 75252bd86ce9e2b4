"""A pod's security settings as Docker options (pykubelet.runtime.docker.security), table-tested:
precedence of the container over the pod, users and groups, runAsNonRoot, capabilities, seccomp
and AppArmor profiles, the OOM score adjustment of each QoS class, the infra container."""

from __future__ import annotations

import errno
import json
import os

import pytest

from pykubelet.runtime.base import CreateContainerConfigError
from pykubelet.runtime.docker import security
from pykubelet.runtime.docker.security import NodeSecurity
from pymaster.api import objects_pb2

GIB = 1024**3
NODE = NodeSecurity(apparmor=True, seccomp_dir="/var/lib/pykubelet/seccomp", memory_capacity=16 * GIB)
ANNOTATION = "container.apparmor.security.beta.kubernetes.io/main"


def make_pod(**context: object) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid="u-1"))
    for name, value in context.items():
        setattr(pod.spec.security_context, name, value)
    pod.spec.containers.add(name="main", image="pykube/busybox:1.35")
    return pod


def main(pod: objects_pb2.Pod) -> objects_pb2.Container:
    return pod.spec.containers[0]


def test_the_containers_fields_win_over_the_pods():
    pod = make_pod(run_as_user=1000, run_as_group=3000, run_as_non_root=True)
    pod.spec.security_context.seccomp_profile.type = "Unconfined"
    main(pod).security_context.run_as_user = 2000
    main(pod).security_context.seccomp_profile.type = "RuntimeDefault"
    context = security.effective_context(pod, main(pod))
    assert (context.run_as_user, context.run_as_group, context.run_as_non_root) == (2000, 3000, True)
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert not main(pod).security_context.HasField("run_as_group")  # the spec is left alone
    assert security.effective_context(make_pod(), main(make_pod())) == objects_pb2.SecurityContext()


@pytest.mark.parametrize(
    "user, parsed",
    [("", (0, "")), ("1000", (1000, "")), ("1000:50", (1000, "")), ("0", (0, "")),
     ("nobody", (None, "nobody")), ("nobody:nogroup", (None, "nobody")), (":50", (0, ""))],
)
def test_image_users(user, parsed):
    assert security.parse_image_user(user) == parsed


WHERE = '(pod: "web_default(u-1)", container: main)'
AS_ROOT = f"container has runAsNonRoot and image will run as root {WHERE}"
BREAKS = f"container's runAsUser breaks non-root policy {WHERE}"
NON_ROOT = {"run_as_non_root": True}


@pytest.mark.parametrize(
    "context, container_user, image_user, error",
    [
        ({}, None, "", None),  # no runAsNonRoot: anything goes
        (NON_ROOT, None, "", AS_ROOT),
        (NON_ROOT, None, "0:0", AS_ROOT),
        (NON_ROOT, None, "nobody", "container has runAsNonRoot and image has non-numeric user (nobody), "
         f"cannot verify user is non-root {WHERE}"),
        (NON_ROOT, None, "1000", None),
        ({**NON_ROOT, "run_as_user": 0}, None, "1000", BREAKS),
        (NON_ROOT, 1000, "", None),  # the container's user is not the image's
        ({**NON_ROOT, "run_as_user": 1000}, 0, "", BREAKS),
    ],
)
def test_run_as_non_root(context, container_user, image_user, error):
    pod = make_pod(**context)
    if container_user is not None:
        main(pod).security_context.run_as_user = container_user
    if error is None:
        security.check_run_as_non_root(pod, main(pod), image_user)
        return
    with pytest.raises(CreateContainerConfigError) as err:
        security.check_run_as_non_root(pod, main(pod), image_user)
    assert err.value.message == error
    assert err.value.reason == "CreateContainerConfigError"


@pytest.mark.parametrize(
    "context, image_user, needs, user",
    [
        ({}, "", False, None),
        ({"run_as_user": 1000}, "", False, "1000"),
        ({"run_as_user": 1000, "run_as_group": 3000}, "", False, "1000:3000"),
        ({"run_as_group": 3000}, "", True, "0:3000"),  # the image's user: root when it names none
        ({"run_as_group": 3000}, "1000:50", True, "1000:3000"),
        ({"run_as_group": 3000}, "nobody", True, "nobody:3000"),
        ({"run_as_non_root": True}, "1000", True, None),
        ({"run_as_non_root": True, "run_as_user": 5}, "", False, "5"),
    ],
)
def test_docker_user(context, image_user, needs, user):
    pod = make_pod(**context)
    assert security.needs_image_user(pod, main(pod)) is needs
    assert security.docker_user(security.effective_context(pod, main(pod)), image_user) == user


def test_supplemental_groups_then_fs_group():
    pod = make_pod(fs_group=2000)
    pod.spec.security_context.supplemental_groups.extend([4000, 2000, 5000])
    assert security.supplemental_groups(pod) == ("4000", "2000", "5000")
    assert security.supplemental_groups(make_pod()) == ()


PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


def _seccomp(type_: str, local: str = "") -> objects_pb2.SeccompProfile:
    return objects_pb2.SeccompProfile(type=type_, localhost_profile=local)


def _files(files: dict[str, bytes]):
    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        return files[path]
    return read


@pytest.mark.parametrize(
    "profile, option",
    [
        (None, None),
        (_seccomp("RuntimeDefault"), None),
        (_seccomp("Unconfined"), "seccomp=unconfined"),
        (_seccomp("Localhost", "deny.json"), "seccomp=" + json.dumps(PROFILE, separators=(",", ":"))),
    ],
)
def test_seccomp_options(profile, option):
    read = _files({"/seccomp/deny.json": json.dumps(PROFILE, indent=2).encode()})
    assert security.seccomp_option(profile, "/seccomp", read) == option


@pytest.mark.parametrize(
    "local, seccomp_dir, files, message",
    [
        ("x.json", None, {}, 'seccomp profile "x.json": Localhost profiles are not available on this node '
         "(no seccomp profile directory)"),
        ("missing.json", "/seccomp", {},
         'cannot load seccomp profile "/seccomp/missing.json": No such file or directory'),
        ("../x.json", "/seccomp", {}, 'seccomp profile "../x.json": must be a relative path without ".."'),
        ("/x.json", "/seccomp", {}, 'seccomp profile "/x.json": must be a relative path without ".."'),
        ("bad.json", "/seccomp", {"/seccomp/bad.json": b"{nope"}, 'seccomp profile "/seccomp/bad.json" is '
         "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("list.json", "/seccomp", {"/seccomp/list.json": b"[]"},
         'seccomp profile "/seccomp/list.json" is not a JSON object'),
    ],
)
def test_unusable_seccomp_profiles(local, seccomp_dir, files, message):
    with pytest.raises(CreateContainerConfigError) as err:
        security.seccomp_option(_seccomp("Localhost", local), seccomp_dir, _files(files))
    assert err.value.message == message


def test_reading_seccomp_profiles(tmp_path):
    (tmp_path / "ok.json").write_text("{}")
    assert security.read_seccomp_profile(str(tmp_path / "ok.json")) == b"{}"
    (tmp_path / "big.json").write_bytes(b" " * (security.MAX_SECCOMP_PROFILE_BYTES + 1))
    os.mkfifo(tmp_path / "fifo")  # opening it would block: refused before
    for name, code in (("big.json", errno.EFBIG), ("fifo", errno.EINVAL), (".", errno.EINVAL),
                       ("missing", errno.ENOENT)):
        with pytest.raises(OSError) as err:
            security.read_seccomp_profile(str(tmp_path / name))
        assert err.value.errno == code


def _apparmor(type_: str, local: str = "") -> objects_pb2.AppArmorProfile:
    return objects_pb2.AppArmorProfile(type=type_, localhost_profile=local)


def test_apparmor_profile_precedence():
    pod = make_pod()
    assert security.apparmor_profile(pod, main(pod)) is None
    pod.spec.security_context.app_armor_profile.type = "Unconfined"
    assert security.apparmor_profile(pod, main(pod)) == _apparmor("Unconfined")
    pod.metadata.annotations[ANNOTATION] = ""  # asks for nothing: the pod's field stays
    assert security.apparmor_profile(pod, main(pod)) == _apparmor("Unconfined")
    pod.metadata.annotations[ANNOTATION] = "localhost/deny-write"
    assert security.apparmor_profile(pod, main(pod)) == _apparmor("Localhost", "deny-write")
    main(pod).security_context.app_armor_profile.type = "RuntimeDefault"
    assert security.apparmor_profile(pod, main(pod)) == _apparmor("RuntimeDefault")
    main(pod).security_context.ClearField("app_armor_profile")
    pod.metadata.annotations[ANNOTATION] = "docker-default"
    with pytest.raises(CreateContainerConfigError, match='invalid AppArmor profile name: "docker-default"'):
        security.apparmor_profile(pod, main(pod))


@pytest.mark.parametrize(
    "profile, host, option",
    [
        (None, True, None),
        (_apparmor("RuntimeDefault"), True, None),
        (_apparmor("Unconfined"), True, "apparmor=unconfined"),
        (_apparmor("Localhost", "deny-write"), True, "apparmor=deny-write"),
        (None, False, None),
        (_apparmor("Unconfined"), False, None),
    ],
)
def test_apparmor_options(profile, host, option):
    assert security.apparmor_option(profile, host) == option


@pytest.mark.parametrize(
    "profile, host, message",
    [
        (_apparmor("RuntimeDefault"), False, "Cannot enforce AppArmor: AppArmor is not enabled on the host"),
        (_apparmor("Localhost", "p"), False, "Cannot enforce AppArmor: AppArmor is not enabled on the host"),
        (_apparmor("Localhost", " "), True, 'invalid empty AppArmor profile name: " "'),
    ],
)
def test_apparmor_profiles_that_cannot_be_enforced(profile, host, message):
    with pytest.raises(CreateContainerConfigError) as err:
        security.apparmor_option(profile, host)
    assert err.value.message == message


def _resources(container: objects_pb2.Container, requests=None, limits=None) -> None:
    container.resources.requests.update(requests or {})
    container.resources.limits.update(limits or {})


@pytest.mark.parametrize(
    "requests, limits, adjust",
    [
        ({}, {}, 1000),  # BestEffort
        ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}, -997),  # Guaranteed
        ({}, {"cpu": "500m", "memory": "256Mi"}, -997),  # limits alone are the requests
        ({"memory": "1Gi"}, {}, 938),  # Burstable: 1000 - 1000 * 1Gi / 16Gi
        ({"memory": "8Gi"}, {}, 500),
        ({"memory": "16Gi"}, {}, 3),  # never as low as Guaranteed
        ({"memory": "64Gi"}, {}, 3),
        ({"cpu": "100m"}, {}, 999),  # no memory request: just below BestEffort
        ({"memory": "1"}, {}, 999),
    ],
)
def test_oom_score_adj_per_qos_class(requests, limits, adjust):
    pod = make_pod()
    _resources(main(pod), requests, limits)
    assert security.oom_score_adj(pod, main(pod), 16 * GIB) == adjust


def test_a_sidecar_is_no_more_killable_than_the_smallest_app_container():
    pod = make_pod()
    _resources(main(pod), {"memory": "4Gi"})
    pod.spec.containers.add(name="small", image="x").resources.requests["memory"] = "2Gi"
    sidecar = pod.spec.init_containers.add(name="proxy", image="x", restart_policy="Always")
    plain = pod.spec.init_containers.add(name="setup", image="x")
    assert security.oom_score_adj(pod, sidecar, 16 * GIB) == 875  # the smallest app container's
    sidecar.resources.requests["memory"] = "8Gi"
    assert security.oom_score_adj(pod, sidecar, 16 * GIB) == 500  # its own, lower
    assert security.oom_score_adj(pod, plain, 16 * GIB) == 999
    assert security.oom_score_adj(pod, main(pod), 16 * GIB) == 750


def test_container_options():
    pod = make_pod(run_as_user=1000, fs_group=2000)
    pod.spec.security_context.supplemental_groups.append(4000)
    pod.spec.security_context.seccomp_profile.type = "Unconfined"
    context = main(pod).security_context
    context.run_as_group = 3000
    context.read_only_root_filesystem = True
    context.allow_privilege_escalation = False
    context.capabilities.add.append("net_bind_service")
    context.capabilities.drop.append("ALL")
    pod.metadata.annotations[ANNOTATION] = "localhost/deny-write"
    _resources(main(pod), {"memory": "1Gi"})
    options = security.container_options(pod, main(pod), NODE)
    assert options == security.ContainerOptions(
        user="1000:3000", group_add=("4000", "2000"), cap_add=("CAP_NET_BIND_SERVICE",), cap_drop=("ALL",),
        privileged=False, read_only=True,
        security_opt=("no-new-privileges", "seccomp=unconfined", "apparmor=deny-write"), oom_score_adj=938,
    )
    assert options.host_config() == {
        "group_add": ["4000", "2000"], "cap_add": ["CAP_NET_BIND_SERVICE"], "cap_drop": ["ALL"],
        "privileged": False, "read_only": True,
        "security_opt": ["no-new-privileges", "seccomp=unconfined", "apparmor=deny-write"],
        "oom_score_adj": 938,
    }


def test_a_plain_container_keeps_dockers_defaults():
    pod = make_pod()
    main(pod).security_context.privileged = True
    options = security.container_options(pod, main(pod), NODE)
    assert options == security.ContainerOptions(user=None, privileged=True, oom_score_adj=1000)
    assert options.host_config() == {
        "group_add": None, "cap_add": None, "cap_drop": None, "privileged": True, "read_only": False,
        "security_opt": None, "oom_score_adj": 1000,
    }


def test_container_options_refuse_what_cannot_be_honoured():
    pod = make_pod(run_as_non_root=True)
    with pytest.raises(CreateContainerConfigError, match="image will run as root"):
        security.container_options(pod, main(pod), NODE, image_user="")
    assert security.container_options(pod, main(pod), NODE, image_user="65534").user is None


def test_the_oom_score_adjustment_is_kept_above_what_the_node_can_set():
    node = NodeSecurity(apparmor=False, seccomp_dir=None, memory_capacity=16 * GIB, min_oom_score_adj=0)
    pod = make_pod()
    _resources(main(pod), {"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})
    assert security.container_options(pod, main(pod), node).oom_score_adj == 0
    assert security.container_options(pod, main(pod), NODE).oom_score_adj == -997
    assert security.infra_options(pod, node) == {"sysctls": None, "oom_score_adj": 0}


def test_infra_options_carry_the_pods_sysctls():
    pod = make_pod()
    pod.spec.security_context.sysctls.add(name="net/ipv4/ip_local_port_range", value="1024 65000")
    pod.spec.security_context.sysctls.add(name="kernel.msgmax", value="65536")
    assert security.infra_options(pod, NODE) == {
        "sysctls": {"net.ipv4.ip_local_port_range": "1024 65000", "kernel.msgmax": "65536"},
        "oom_score_adj": -998,
    }


@pytest.mark.parametrize(
    "cap_eff, own, lowest",
    [("000001ffffffffff", 0, -1000), ("000001fffeffffff", 0, 0), ("000001fffeffffff", 5, 5), ("0", -3, -3)],
)
def test_the_lowest_oom_score_adjustment(cap_eff, own, lowest):
    status = f"Name:\tpykubelet\nCapPrm:\t{cap_eff}\nCapEff:\t{cap_eff}\n"
    assert security.min_oom_score_adj(status, own) == lowest
