"""The agent's own admission check (the kubelet's ``canAdmitPod``): what this node refuses to run
whatever the master said.

- Sysctls (the kubelet's sysctl allowlist): a pod may set Kubernetes' safe sysctls
  (``pymaster.api.admission.SAFE_SYSCTLS``, those this kernel namespaces) and those the node's
  ``--allowed-unsafe-sysctls`` names; never a network sysctl on the host's network. Reason
  ``SysctlForbidden``, message ``forbidden sysctl: "kernel.sem" not allowlisted``.
- Power over the host (privileged mode, the host's network namespace, bind mounts of host paths,
  low host ports): the master's rules (``pymaster.api.admission``) with this node's flags. The
  node adds what only it can check: a host path is resolved on its own disk, so a symlink
  ``/data/link -> /etc`` is outside ``/data``; the volume manager checks again, by file
  descriptor, when it mounts the path (``host_paths.open_host_path``), since a path can change
  between the two. Reason ``Forbidden``.
- AppArmor (the kubelet's AppArmor admit handler): a pod asking for a profile other than
  ``Unconfined`` (``appArmorProfile`` of the pod or a container, or the older annotation
  ``container.apparmor.security.beta.kubernetes.io/<container>``) runs only on a host with
  AppArmor enabled. Reason ``AppArmor``, message ``Cannot enforce AppArmor: AppArmor is not
  enabled on the host``.

- Resources (the kubelet's resource fit at admission, ``check_fit``): a pod that gets here
  before any container of it ran must fit in what the node's allocatable leaves beside the pods
  admitted before it (cpu, memory, ephemeral-storage, pods and extended resources; the
  allocatable as the master has it, so resources an admin added count). Reason
  ``OutOf<resource>``, message ``Node didn't have enough resource: cpu, requested: 500, used:
  1800, capacity: 2000``; a pod refused so stays refused.

A pod the node rejects ends in phase Failed with the reason of its first violation (in the order
above, the kubelet's order of admit handlers) and every violation in its message, and never gets
a container.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from pymaster.api import objects_pb2
from pymaster.api.admission import (
    NET,
    NODE,
    AdmissionPolicy,
    Violation,
    normalize_sysctl,
    safe_sysctls,
    sysctl_allowed,
    sysctl_namespace,
)
from pymaster.api.admission import check_pod as _check_pod
from pymaster.api.checks import key_path
from pymaster.api.pods import is_extended_resource, pod_resource_requests, resource_amount
from pymaster.api.security_validation import APPARMOR_ANNOTATION_PREFIX, APPARMOR_UNCONFINED

__all__ = [
    "APPARMOR_REASON", "REASON", "SYSCTL_REASON", "AdmissionPolicy", "Violation", "check_apparmor",
    "check_fit", "check_pod", "check_sysctls", "host_apparmor_enabled", "host_kernel", "rejection_message",
    "rejection_reason",
]

REASON = "Forbidden"  # the pod status reason of a rejected pod (kubelet: the admit handler's reason)
SYSCTL_REASON = "SysctlForbidden"  # the kubelet's sysctl.ForbiddenReason
APPARMOR_REASON = "AppArmor"  # the kubelet's AppArmor admit handler's reason
APPARMOR_NOT_ENABLED = "AppArmor is not enabled on the host"
_FIT_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")  # and every extended resource


@functools.cache
def host_apparmor_enabled() -> bool:
    """Whether this host enforces AppArmor (runc's test: securityfs has it and the module's
    ``enabled`` parameter says Y)."""
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open("/sys/module/apparmor/parameters/enabled", "rb") as f:
            return f.read(1) == b"Y"
    except OSError:
        return False


@functools.cache
def host_kernel() -> tuple[int, int]:
    """This host's Linux (major, minor) version; (0, 0) when it cannot be read."""
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_pod(
    pod: objects_pb2.Pod,
    policy: AdmissionPolicy,
    resolve: Callable[[str], str] = os.path.realpath,
    *,
    apparmor_enabled: bool | None = None,
    kernel: tuple[int, int] | None = None,
) -> list[Violation]:
    """Every field of ``pod`` this node refuses (empty: admitted): sysctls, then the shared
    rules in spec order, then AppArmor.

    Args:
        pod: The pod bound to this node.
        policy: The node's flags.
        resolve: Resolves a host path's symlinks (``os.path.realpath``; tests pass a fake).
        apparmor_enabled: Whether the host enforces AppArmor (default: ``host_apparmor_enabled``).
        kernel: The host's Linux (major, minor) (default: ``host_kernel``).
    """
    violations = check_sysctls(pod, policy, host_kernel() if kernel is None else kernel)
    violations += _check_pod(pod, policy, NODE, resolve)
    enabled = host_apparmor_enabled() if apparmor_enabled is None else apparmor_enabled
    violations += check_apparmor(pod, enabled)
    return violations


def check_sysctls(pod: objects_pb2.Pod, policy: AdmissionPolicy, kernel: tuple[int, int]) -> list[Violation]:
    """The pod's sysctls this node refuses (the kubelet's sysctl allowlist), in spec order."""
    violations: list[Violation] = []
    safe = safe_sysctls(kernel)
    for i, sysctl in enumerate(pod.spec.security_context.sysctls):
        name = normalize_sysctl(sysctl.name)
        field = f"spec.securityContext.sysctls[{i}].name"
        namespace = sysctl_namespace(name)
        if name in safe or (namespace and sysctl_allowed(name, policy.allowed_unsafe_sysctls)):
            if namespace == NET and pod.spec.host_network:
                message = f'forbidden sysctl: "{name}" not allowed with host net enabled'
                violations.append(Violation(field, message, SYSCTL_REASON))
            continue
        message = f'forbidden sysctl: "{name}" not allowlisted (pykubelet --allowed-unsafe-sysctls)'
        violations.append(Violation(field, message, SYSCTL_REASON))
    return violations


def check_apparmor(pod: objects_pb2.Pod, enabled: bool) -> list[Violation]:
    """The AppArmor refusal of a pod asking for a profile on a host without AppArmor: one
    violation naming the first field that asks (none when the host has it, or nothing asks)."""
    if enabled:
        return []
    field = _first_apparmor_field(pod)
    if field is None:
        return []
    return [Violation(field, f"Cannot enforce AppArmor: {APPARMOR_NOT_ENABLED}", APPARMOR_REASON)]


def _first_apparmor_field(pod: objects_pb2.Pod) -> str | None:
    """The first field asking for an AppArmor profile other than Unconfined, if any."""
    spec = pod.spec
    if spec.security_context.app_armor_profile.type not in ("", APPARMOR_UNCONFINED):
        return "spec.securityContext.appArmorProfile"
    for kind, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, container in enumerate(containers):
            if container.security_context.app_armor_profile.type not in ("", APPARMOR_UNCONFINED):
                return f"spec.{kind}[{i}].securityContext.appArmorProfile"
    for key in sorted(pod.metadata.annotations):
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and pod.metadata.annotations[key] != "unconfined":
            return key_path("metadata.annotations", key)
    return None


def check_fit(
    pod: objects_pb2.Pod, allocatable: Mapping[str, str], admitted: Iterable[objects_pb2.Pod]
) -> list[Violation]:
    """The resources ``pod`` asks for that the node's ``allocatable`` cannot give beside the
    ``admitted`` pods (the kubelet's predicate admission): cpu, memory, ephemeral-storage, the
    pod count and every extended resource; one violation per resource short, reason
    ``OutOf<resource>`` (``OutOfephemeral-storage``)."""
    used: dict[str, int] = {"pods": 0}
    for other in admitted:
        used["pods"] += 1
        for name, amount in pod_resource_requests(other).items():
            used[name] = used.get(name, 0) + amount
    wanted = {"pods": 1, **pod_resource_requests(pod)}
    violations = []
    for name, requested in sorted(wanted.items()):
        if requested <= 0 or not (name in _FIT_RESOURCES or is_extended_resource(name)):
            continue
        capacity = resource_amount(name, allocatable[name]) if name in allocatable else 0
        if requested > capacity - used.get(name, 0):
            message = (f"Node didn't have enough resource: {name}, requested: {requested}, "
                       f"used: {used.get(name, 0)}, capacity: {capacity}")
            violations.append(Violation("", message, f"OutOf{name}"))
    return violations


def rejection_message(violations: Sequence[Violation]) -> str:
    """The pod status message of a rejected pod (kubelet: "Pod was rejected: ...")."""
    return "Pod was rejected: " + "; ".join(str(v) for v in violations)


def rejection_reason(violations: Sequence[Violation]) -> str:
    """The pod status reason of a rejected pod: its first violation's (``REASON`` for none)."""
    return violations[0].reason if violations else REASON
