"""Validation of security contexts (pymaster.api.security_validation), through validate_pod where
the rule is reached from a pod, and directly for the AppArmor annotations: every rule, with its
field path and message."""

import pytest
from validation_helpers import _c, _pod

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.security_validation import (
    check_apparmor_annotation_update,
    check_pod_security,
    normalize_capability,
)
from pymaster.api.validation import validate_pod

SC = "spec.containers[0].securityContext"
PSC = "spec.securityContext"
ANNOTATION = "container.apparmor.security.beta.kubernetes.io/web"
RANGE = "must be between 0 and 2147483647, inclusive"
TYPES = "supported: RuntimeDefault, Unconfined, Localhost"


def _sc(pod: objects_pb2.Pod) -> objects_pb2.SecurityContext:
    return _c(pod).security_context


def _psc(pod: objects_pb2.Pod) -> objects_pb2.PodSecurityContext:
    return pod.spec.security_context


def _set(message, **fields):
    """A mutation setting ``fields`` on ``message(pod)``."""
    def mutate(pod):
        target = message(pod)
        for name, value in fields.items():
            setattr(target, name, value)
    return mutate


def _seccomp(message, type_, profile=""):
    def mutate(pod):
        message(pod).seccomp_profile.type = type_
        message(pod).seccomp_profile.localhost_profile = profile
    return mutate


def _apparmor(message, type_, profile=""):
    def mutate(pod):
        message(pod).app_armor_profile.type = type_
        message(pod).app_armor_profile.localhost_profile = profile
    return mutate


def _caps(add=(), drop=()):
    def mutate(pod):
        _sc(pod).capabilities.add.extend(add)
        _sc(pod).capabilities.drop.extend(drop)
    return mutate


def _sysctls(*pairs, host_network=False):
    def mutate(pod):
        pod.spec.host_network = host_network
        for name, value in pairs:
            _psc(pod).sysctls.add(name=name, value=value)
    return mutate


VALID = [
    _set(_sc, run_as_user=0, run_as_group=2**31 - 1, run_as_non_root=True, read_only_root_filesystem=True),
    _set(_sc, allow_privilege_escalation=False, privileged=False),
    _set(_sc, allow_privilege_escalation=True, privileged=True),
    _caps(add=["NET_ADMIN", "CAP_SYS_TIME", "net_raw", "cap_chown"], drop=["ALL"]),
    _caps(add=["ALL"]),
    _seccomp(_sc, "RuntimeDefault"),
    _seccomp(_sc, "Unconfined"),
    _seccomp(_sc, "Localhost", "profiles/audit.json"),
    _seccomp(_psc, "Localhost", "my..profile.json"),
    _apparmor(_sc, "RuntimeDefault"),
    _apparmor(_psc, "Localhost", "k8s-apparmor-example-deny-write"),
    _set(_sc, proc_mount="Default"),
    _set(_psc, run_as_user=1000, run_as_group=3000, fs_group=2000, fs_group_change_policy="OnRootMismatch"),
    lambda p: _psc(p).supplemental_groups.extend([0, 4000, 2**31 - 1]),
    _sysctls(("kernel.shm_rmid_forced", "1"), ("net.ipv4.ip_local_port_range", "1024 65000")),
    _sysctls(("net/ipv4/conf/eno2.100/rp_filter", "1"), ("kernel.msgmax", "")),
    _sysctls(("kernel.sem", "250 32000 32 128"), host_network=True),
]


@pytest.mark.parametrize("mutate", VALID)
def test_valid_security_contexts(mutate):
    pod = _pod()
    mutate(pod)
    validate_pod(pod)


INVALID = [
    (_set(_sc, run_as_user=-1), f"{SC}.runAsUser: invalid value -1: {RANGE}"),
    (_set(_sc, run_as_group=2**31), f"{SC}.runAsGroup: invalid value 2147483648: {RANGE}"),
    (_set(_psc, run_as_user=-5), f"{PSC}.runAsUser: invalid value -5: {RANGE}"),
    (_set(_psc, fs_group=-1), f"{PSC}.fsGroup: invalid value -1: {RANGE}"),
    (lambda p: _psc(p).supplemental_groups.extend([1, -2]),
     f"{PSC}.supplementalGroups[1]: invalid value -2: {RANGE}"),
    (_caps(add=["NET_ADMIN", "FLY"]), f'{SC}.capabilities.add[1]: unsupported value "FLY": not a Linux '
     "capability (such as NET_ADMIN or CAP_NET_ADMIN), nor ALL"),
    (_caps(drop=["CAP_"]), f'{SC}.capabilities.drop[0]: unsupported value "CAP_": not a Linux capability '
     "(such as NET_ADMIN or CAP_NET_ADMIN), nor ALL"),
    (_caps(add=["CHOWN"] * 65), f"{SC}.capabilities.add: at most 64 capabilities allowed"),
    (_set(_sc, allow_privilege_escalation=False, privileged=True),
     f"{SC}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    *[
        (lambda p, cap=cap: (_caps(add=[cap])(p), _set(_sc, allow_privilege_escalation=False)(p)),
         f"{SC}: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN")
        for cap in ("CAP_SYS_ADMIN", "SYS_ADMIN", "sys_admin", "ALL")
    ],
    (_seccomp(_sc, ""), f"{SC}.seccompProfile.type: required; {TYPES}"),
    (_seccomp(_sc, "Default"), f'{SC}.seccompProfile.type: unsupported value "Default"; {TYPES}'),
    (_seccomp(_sc, "Localhost"),
     f"{SC}.seccompProfile.localhostProfile: required: must be set when seccomp type is Localhost"),
    (_seccomp(_sc, "Unconfined", "x.json"),
     f"{SC}.seccompProfile.localhostProfile: can only be set when seccomp type is Localhost"),
    (_seccomp(_psc, "Localhost", "/etc/x.json"),
     f'{PSC}.seccompProfile.localhostProfile: invalid value "/etc/x.json": must be a relative path'),
    (_seccomp(_psc, "Localhost", "a/../../x.json"),
     f"{PSC}.seccompProfile.localhostProfile: invalid value \"a/../../x.json\": must not contain '..'"),
    (_apparmor(_sc, "Localhost", " p"),
     f'{SC}.appArmorProfile.localhostProfile: invalid value " p": must not be padded with whitespace'),
    (_apparmor(_sc, "Localhost", "  "),
     f"{SC}.appArmorProfile.localhostProfile: required: must be set when AppArmor type is Localhost"),
    (_apparmor(_sc, "Localhost", "p" * 4096),
     f"{SC}.appArmorProfile.localhostProfile: too long: must have at most 4095 characters"),
    (_apparmor(_psc, "RuntimeDefault", "p"),
     f"{PSC}.appArmorProfile.localhostProfile: can only be set when AppArmor type is Localhost"),
    (_apparmor(_psc, "unconfined"), f'{PSC}.appArmorProfile.type: unsupported value "unconfined"; {TYPES}'),
    (_set(_sc, proc_mount="Unmasked"), f'{SC}.procMount: invalid value "Unmasked": `hostUsers` must be false '
     "to use `Unmasked` (pykube runs no pod in a user namespace)"),
    (_set(_sc, proc_mount="Masked"),
     f'{SC}.procMount: unsupported value "Masked"; supported: Default, Unmasked'),
    (_set(_psc, fs_group_change_policy="Never"),
     f'{PSC}.fsGroupChangePolicy: unsupported value "Never"; supported: OnRootMismatch, Always'),
    (_sysctls(("", "1")), f"{PSC}.sysctls[0].name: required"),
    (_sysctls(("kernel.shm_rmid_forced", "1"), ("Kernel.Foo", "1")),
     f'{PSC}.sysctls[1].name: invalid value "Kernel.Foo": must have at most 253 characters and match regex '
     "([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?"),
    (_sysctls(("net..x", "1")), None),
    (_sysctls(("a" * 254, "1")), None),
    (_sysctls(("net.ipv4.tcp_syncookies", "1"), ("net/ipv4/tcp_syncookies", "0")),
     f'{PSC}.sysctls[1].name: duplicate value "net/ipv4/tcp_syncookies"'),
    (_sysctls(("net.ipv4.ip_local_port_range", "1024 65000"), host_network=True),
     f"{PSC}.sysctls[0].name: invalid value \"net.ipv4.ip_local_port_range\": may not be specified when "
     "'hostNetwork' is true"),
    (_sysctls(("kernel.shm_rmid_forced", "1" * 4097)), f"{PSC}.sysctls[0].value: too long: must have at most "
     "4096 bytes"),
    (_sysctls(*[(f"net.ipv4.x{i}", "1") for i in range(129)]), f"{PSC}.sysctls: at most 128 sysctls allowed"),
]


@pytest.mark.parametrize("mutate, message", INVALID)
def test_invalid_security_contexts(mutate, message):
    pod = _pod()
    mutate(pod)
    with pytest.raises(ValidationError) as err:
        validate_pod(pod)
    if message is not None:
        assert str(err.value) == message
    else:
        assert err.value.field == "spec.securityContext.sysctls[0].name"


def test_init_containers_are_checked_too():
    pod = _pod()
    pod.spec.init_containers.add(name="init", image="pykube/busybox:1.35").security_context.run_as_user = -1
    with pytest.raises(ValidationError, match=r"^spec\.initContainers\[0\]\.securityContext\.runAsUser: "):
        validate_pod(pod)


@pytest.mark.parametrize(
    "value", ["runtime/default", "unconfined", "localhost/k8s-apparmor-example-deny-write", ""]
)
def test_apparmor_annotations_in_kubernetes_forms(value):
    pod = _pod()
    check_pod_security(pod.spec, {ANNOTATION: value, "other": "x"})


ANNOTATION_PATH = f"metadata.annotations[{ANNOTATION}]"


@pytest.mark.parametrize(
    "annotations, mutate, message",
    [
        ({ANNOTATION: "docker-default"}, None,
         f'{ANNOTATION_PATH}: invalid value "docker-default": invalid AppArmor profile name '
         "(runtime/default, unconfined or localhost/<profile>)"),
        ({ANNOTATION: "localhost/"}, None, f'{ANNOTATION_PATH}: invalid value "localhost/": invalid empty '
         "AppArmor profile name"),
        ({"container.apparmor.security.beta.kubernetes.io/nope": "unconfined"}, None,
         'metadata.annotations[container.apparmor.security.beta.kubernetes.io/nope]: invalid value "nope": '
         "container not found"),
        ({ANNOTATION: "unconfined"}, _apparmor(_sc, "RuntimeDefault"),
         f"{SC}.appArmorProfile.type: apparmor type in annotation and field must match"),
        ({ANNOTATION: "runtime/default"}, _apparmor(_psc, "Unconfined"),
         f"{SC}.appArmorProfile.type: apparmor type in annotation and field must match"),
        ({ANNOTATION: "localhost/a"}, _apparmor(_psc, "Localhost", "b"),
         f"{SC}.appArmorProfile.localhostProfile: apparmor profile in annotation and field must match"),
    ],
)
def test_invalid_apparmor_annotations(annotations, mutate, message):
    pod = _pod()
    if mutate is not None:
        mutate(pod)
    with pytest.raises(ValidationError) as err:
        check_pod_security(pod.spec, annotations)
    assert str(err.value) == message


def test_apparmor_annotation_agrees_with_the_field_it_shadows():
    pod = _pod()
    _apparmor(_psc, "Unconfined")(pod)  # the pod's field; the container's own wins over it
    _apparmor(_sc, "Localhost", "p")(pod)
    check_pod_security(pod.spec, {ANNOTATION: "localhost/p"})
    pod.spec.init_containers.add(name="init", image="pykube/busybox:1.35")
    key = "container.apparmor.security.beta.kubernetes.io/init"
    check_pod_security(pod.spec, {key: "unconfined"})
    with pytest.raises(ValidationError, match=r"^spec\.initContainers\[0\]\.securityContext\.appArmor"):
        check_pod_security(pod.spec, {key: "runtime/default"})


def test_apparmor_annotations_may_not_change_on_update():
    unconfined, changed = {ANNOTATION: "unconfined"}, "may not remove or update AppArmor annotations"
    check_apparmor_annotation_update({**unconfined, "a": "1"}, {**unconfined, "a": "2"})
    for old, new, message in (
        ({}, unconfined, "may not add AppArmor annotations"),
        (unconfined, {}, changed),
        (unconfined, {ANNOTATION: "runtime/default"}, changed),
    ):
        with pytest.raises(ValidationError) as err:
            check_apparmor_annotation_update(old, new)
        assert str(err.value) == f"{ANNOTATION_PATH}: {message}"


@pytest.mark.parametrize(
    "name, normalized",
    [("NET_ADMIN", "CAP_NET_ADMIN"), ("cap_chown", "CAP_CHOWN"), ("CAP_SYS_TIME", "CAP_SYS_TIME"),
     ("all", "ALL")],
)
def test_capability_names_as_the_engine_takes_them(name, normalized):
    assert normalize_capability(name) == normalized
