"""A pod's and its containers' security settings as Docker's create options, by the kubelet's
rules; pure functions (the seccomp profile file is read through a function the caller passes).

App containers (``container_options``), from the container's ``securityContext`` over the pod's
(the container's field wins, as in Kubernetes' ``DetermineEffectiveSecurityContext``):

- ``runAsUser``/``runAsGroup`` -> ``User`` "uid" or "uid:gid"; a group without a user takes the
  image's user (root when the image names none), as the kubelet does.
- ``runAsNonRoot`` -> the container is not created when its user is root: ``runAsUser: 0``, or
  no ``runAsUser`` and an image whose user is root or not numeric (CreateContainerConfigError,
  with the kubelet's messages).
- ``supplementalGroups`` then ``fsGroup`` -> ``GroupAdd``.
- ``readOnlyRootFilesystem`` -> ``ReadonlyRootfs``; ``privileged`` -> ``Privileged``;
  ``capabilities.add``/``drop`` -> ``CapAdd``/``CapDrop`` (``CAP_`` added where missing);
  ``allowPrivilegeEscalation: false`` -> ``no-new-privileges``.
- ``seccompProfile``: ``Unconfined`` -> ``seccomp=unconfined``; ``Localhost`` -> the JSON profile
  read from ``<seccomp dir>/<localhostProfile>`` (missing file, bad JSON or no directory:
  CreateContainerConfigError); ``RuntimeDefault``, and unset, -> Docker's default profile. Unset
  is Docker's default, not Kubernetes' ``Unconfined``: the kubelet with ``--seccomp-default``,
  which Kubernetes recommends; ``Unconfined`` must be asked for.
- AppArmor (``appArmorProfile`` of the container, else the annotation
  ``container.apparmor.security.beta.kubernetes.io/<name>``, else the pod's, as the kubelet's
  ``GetProfile``): ``Localhost`` -> ``apparmor=<profile>``, ``Unconfined`` ->
  ``apparmor=unconfined``, ``RuntimeDefault`` and unset -> Docker's ``docker-default``. A profile
  on a host without AppArmor is CreateContainerConfigError (the node's admission refuses such a
  pod first); ``Unconfined`` there is nothing to do.
- ``procMount: Default`` is Docker's masked /proc (validation refuses ``Unmasked``).
- ``OomScoreAdj`` from the pod's QoS class (``oom_score_adj``); a privileged container gets no
  seccomp or AppArmor confinement from Docker, whatever it asks.

The infra container (``infra_options``) holds the pod's network and IPC namespaces, so it carries
the pod's sysctls (all namespaced: the node's admission and validation saw to it) and the
kubelet's sandbox ``OomScoreAdj`` (-998).

Lowering an OOM score adjustment below one's own takes CAP_SYS_RESOURCE. On a host where the
agent lacks it (a user namespace, a sandbox that drops it), Docker could not start a container
with -997 or -998 at all; there every adjustment is raised to the agent's own
(``NodeSecurity.min_oom_score_adj``, ``read_min_oom_score_adj``), as containerd's
``restrict_oom_score_adj`` does, so the order of the classes holds wherever it can.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykubelet.runtime.base import CreateContainerConfigError
from pymaster.api import objects_pb2
from pymaster.api.admission import normalize_sysctl
from pymaster.api.pods import BEST_EFFORT, GUARANTEED, effective_requests, is_sidecar, qos_class
from pymaster.api.quantity import memory_bytes
from pymaster.api.security_validation import (
    APPARMOR_ANNOTATION_PREFIX,
    LOCALHOST,
    UNCONFINED,
    apparmor_annotation_profile,
    normalize_capability,
)

# The kubelet's OOM score adjustments (pkg/kubelet/qos/policy.go).
GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000
INFRA_OOM_SCORE_ADJ = -998  # the pod's sandbox (dockershim's PodInfraOOMAdj)
MAX_SECCOMP_PROFILE_BYTES = 1024**2
CAP_SYS_RESOURCE = 24  # the capability bit that allows lowering an OOM score adjustment
# What a container inherits from the pod's securityContext when it does not set it itself.
_INHERITED = ("run_as_user", "run_as_group", "run_as_non_root", "seccomp_profile")


@dataclass(frozen=True)
class NodeSecurity:
    """What the node offers a container's security settings.

    Attributes:
        apparmor: The host enforces AppArmor.
        seccomp_dir: Where Localhost seccomp profiles are (``<root-dir>/seccomp``); None: none.
        memory_capacity: The machine's memory in bytes (the Burstable OOM score adjustment).
        min_oom_score_adj: The lowest OOM score adjustment the node can give a container.
    """

    apparmor: bool
    seccomp_dir: str | None
    memory_capacity: int
    min_oom_score_adj: int = -1000


@dataclass(frozen=True)
class ContainerOptions:
    """An app container's security settings in Docker's terms (``host_config`` feeds docker-py's
    ``create_host_config``; ``user`` goes in the container config)."""

    user: str | None
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    read_only: bool = False
    security_opt: tuple[str, ...] = ()
    oom_score_adj: int = 0

    def host_config(self) -> dict[str, Any]:
        """docker-py ``create_host_config`` arguments."""
        return {
            "group_add": list(self.group_add) or None,
            "cap_add": list(self.cap_add) or None,
            "cap_drop": list(self.cap_drop) or None,
            "privileged": self.privileged,
            "read_only": self.read_only,
            "security_opt": list(self.security_opt) or None,
            "oom_score_adj": self.oom_score_adj,
        }


def effective_context(pod: objects_pb2.Pod, container: objects_pb2.Container) -> objects_pb2.SecurityContext:
    """The container's securityContext with the pod's runAsUser, runAsGroup, runAsNonRoot and
    seccompProfile where the container sets none (AppArmor: ``apparmor_profile``)."""
    context = objects_pb2.SecurityContext()
    context.CopyFrom(container.security_context)
    pod_context = pod.spec.security_context
    for field in _INHERITED:
        if not context.HasField(field) and pod_context.HasField(field):
            if field == "seccomp_profile":
                context.seccomp_profile.CopyFrom(pod_context.seccomp_profile)
            else:
                setattr(context, field, getattr(pod_context, field))
    return context


def needs_image_user(pod: objects_pb2.Pod, container: objects_pb2.Container) -> bool:
    """Whether ``container_options`` needs the image's user: runAsNonRoot or runAsGroup without
    runAsUser."""
    context = effective_context(pod, container)
    if context.HasField("run_as_user"):
        return False
    return context.run_as_non_root or context.HasField("run_as_group")


def parse_image_user(user: str) -> tuple[int | None, str]:
    """The (uid, name) an image runs as, from its Config.User ("1000", "1000:50", "nobody",
    "nobody:nogroup" ...): a numeric user is a uid; a named one has no uid; none is root (0)."""
    name = user.split(":", 1)[0]
    if not name:
        return 0, ""
    return (int(name), "") if name.isdigit() else (None, name)


def pod_ref(pod: objects_pb2.Pod) -> str:
    """The kubelet's format.Pod: "name_namespace(uid)"."""
    meta = pod.metadata
    return f"{meta.name}_{meta.namespace}({meta.uid})"


def check_run_as_non_root(pod: objects_pb2.Pod, container: objects_pb2.Container, image_user: str) -> None:
    """The kubelet's verifyRunAsNonRoot.

    Raises:
        CreateContainerConfigError: runAsNonRoot is set and the container would run as root, or
            as a named user whose uid cannot be known.
    """
    context = effective_context(pod, container)
    if not context.run_as_non_root:
        return
    where = f'(pod: "{pod_ref(pod)}", container: {container.name})'
    if context.HasField("run_as_user"):
        if context.run_as_user == 0:
            raise CreateContainerConfigError(f"container's runAsUser breaks non-root policy {where}")
        return
    uid, name = parse_image_user(image_user)
    if uid == 0:
        raise CreateContainerConfigError(f"container has runAsNonRoot and image will run as root {where}")
    if uid is None:
        raise CreateContainerConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is "
            f"non-root {where}"
        )


def docker_user(context: objects_pb2.SecurityContext, image_user: str) -> str | None:
    """Docker's ``User`` for an effective securityContext: "uid", "uid:gid", the image's user
    with runAsGroup alone, or None (the image's own user)."""
    if context.HasField("run_as_user"):
        user = str(context.run_as_user)
    elif context.HasField("run_as_group"):
        uid, name = parse_image_user(image_user)
        user = name if uid is None else str(uid)
    else:
        return None
    return f"{user}:{context.run_as_group}" if context.HasField("run_as_group") else user


def supplemental_groups(pod: objects_pb2.Pod) -> tuple[str, ...]:
    """``GroupAdd``: the pod's supplementalGroups, then its fsGroup (the kubelet's order)."""
    context = pod.spec.security_context
    groups = list(context.supplemental_groups)
    if context.HasField("fs_group"):
        groups.append(context.fs_group)
    return tuple(dict.fromkeys(str(g) for g in groups))


def seccomp_option(
    profile: objects_pb2.SeccompProfile | None, seccomp_dir: str | None, read: Callable[[str], bytes]
) -> str | None:
    """The ``SecurityOpt`` entry of a seccomp profile (None: Docker's default profile).

    Args:
        profile: The effective profile; None when neither the container nor the pod sets one.
        seccomp_dir: The node's directory of Localhost profiles (None: Localhost is refused).
        read: Reads a profile file (``read_seccomp_profile``); raises OSError.

    Raises:
        CreateContainerConfigError: a Localhost profile that cannot be used.
    """
    if profile is None or profile.type not in (LOCALHOST, UNCONFINED):
        return None
    if profile.type == UNCONFINED:
        return "seccomp=unconfined"
    name = profile.localhost_profile
    if seccomp_dir is None:
        raise CreateContainerConfigError(
            f'seccomp profile "{name}": Localhost profiles are not available on this node (no seccomp '
            "profile directory)"
        )
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise CreateContainerConfigError(f'seccomp profile "{name}": must be a relative path without ".."')
    path = posixpath.join(seccomp_dir, name)
    try:
        text = read(path)
    except OSError as err:
        message = f'cannot load seccomp profile "{path}": {err.strerror or err}'
        raise CreateContainerConfigError(message) from None
    try:
        document = json.loads(text)
    except ValueError as err:
        raise CreateContainerConfigError(f'seccomp profile "{path}" is not valid JSON: {err}') from None
    if not isinstance(document, dict):
        raise CreateContainerConfigError(f'seccomp profile "{path}" is not a JSON object')
    return "seccomp=" + json.dumps(document, separators=(",", ":"))


def read_seccomp_profile(path: str) -> bytes:
    """A seccomp profile file's bytes (at most 1 MiB; symlinks are followed: the directory is
    the node admin's).

    Raises:
        OSError: missing, unreadable, not a regular file, or too large (EFBIG).
    """
    # Checked before opening: opening a FIFO would block.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_SECCOMP_PROFILE_BYTES + 1)
    if len(data) > MAX_SECCOMP_PROFILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_SECCOMP_PROFILE_BYTES} bytes")
    return data


def apparmor_profile(
    pod: objects_pb2.Pod, container: objects_pb2.Container
) -> objects_pb2.AppArmorProfile | None:
    """The container's AppArmor profile: its own field, else its annotation, else the pod's
    field (the kubelet's GetProfile); None: none asked for.

    Raises:
        CreateContainerConfigError: the annotation holds no valid profile.
    """
    if container.security_context.HasField("app_armor_profile"):
        return container.security_context.app_armor_profile
    key = APPARMOR_ANNOTATION_PREFIX + container.name
    if key in pod.metadata.annotations:
        value = pod.metadata.annotations[key]
        profile = apparmor_annotation_profile(value)
        if profile is None:
            raise CreateContainerConfigError(f'invalid AppArmor profile name: "{value}" (annotation {key})')
        if profile.type:
            return profile
    if pod.spec.security_context.HasField("app_armor_profile"):
        return pod.spec.security_context.app_armor_profile
    return None


def apparmor_option(profile: objects_pb2.AppArmorProfile | None, host_apparmor: bool) -> str | None:
    """The ``SecurityOpt`` entry of an AppArmor profile (None: Docker's default, or nothing on a
    host without AppArmor).

    Raises:
        CreateContainerConfigError: a profile other than Unconfined on a host without AppArmor,
            or a Localhost profile without a name.
    """
    if profile is None or not profile.type:
        return None
    if not host_apparmor:
        if profile.type == UNCONFINED:
            return None
        raise CreateContainerConfigError("Cannot enforce AppArmor: AppArmor is not enabled on the host")
    if profile.type == UNCONFINED:
        return "apparmor=unconfined"
    if profile.type == LOCALHOST:
        if not profile.localhost_profile.strip():
            message = f'invalid empty AppArmor profile name: "{profile.localhost_profile}"'
            raise CreateContainerConfigError(message)
        return f"apparmor={profile.localhost_profile}"
    return None


def _memory_request(container: objects_pb2.Container) -> int:
    requests = effective_requests(container.resources)
    return memory_bytes(requests["memory"]) if "memory" in requests else 0


def oom_score_adj(pod: objects_pb2.Pod, container: objects_pb2.Container, memory_capacity: int) -> int:
    """The kubelet's GetContainerOOMScoreAdjust: Guaranteed -997, BestEffort 1000, Burstable
    ``1000 - 1000 * memory request / memory capacity`` kept within [3, 999] (above Guaranteed
    containers using all the memory, below BestEffort); a sidecar no higher than the app
    container with the smallest memory request.

    Raises:
        ValueError: a quantity does not parse (the pod was not validated).
    """
    qos = qos_class(pod)
    if qos == GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    capacity = max(memory_capacity, 1)
    adjust = 1000 - 1000 * _memory_request(container) // capacity
    if is_sidecar(container) and any(c.name == container.name for c in pod.spec.init_containers):
        smallest = min(_memory_request(c) for c in pod.spec.containers)
        adjust = min(adjust, 1000 - 1000 * smallest // capacity)
    lowest = 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adjust < lowest:
        return lowest
    return BEST_EFFORT_OOM_SCORE_ADJ - 1 if adjust == BEST_EFFORT_OOM_SCORE_ADJ else adjust


def container_options(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    node: NodeSecurity,
    image_user: str = "",
    read: Callable[[str], bytes] = read_seccomp_profile,
) -> ContainerOptions:
    """An app container's security settings as Docker options.

    Args:
        pod: The pod.
        container: The container (its spec).
        node: What this node offers.
        image_user: The image's Config.User; needed only when ``needs_image_user``.
        read: Reads a Localhost seccomp profile.

    Raises:
        CreateContainerConfigError: runAsNonRoot with a root user, an unusable seccomp or
            AppArmor profile.
        ValueError: a resource quantity does not parse (the pod was not validated).
    """
    check_run_as_non_root(pod, container, image_user)
    context = effective_context(pod, container)
    options: list[str] = []
    if context.HasField("allow_privilege_escalation") and not context.allow_privilege_escalation:
        options.append("no-new-privileges")
    seccomp = context.seccomp_profile if context.HasField("seccomp_profile") else None
    for option in (
        seccomp_option(seccomp, node.seccomp_dir, read),
        apparmor_option(apparmor_profile(pod, container), node.apparmor),
    ):
        if option is not None:
            options.append(option)
    capabilities = context.capabilities
    return ContainerOptions(
        user=docker_user(context, image_user),
        group_add=supplemental_groups(pod),
        cap_add=tuple(normalize_capability(c) for c in capabilities.add),
        cap_drop=tuple(normalize_capability(c) for c in capabilities.drop),
        privileged=context.privileged,
        read_only=context.read_only_root_filesystem,
        security_opt=tuple(options),
        oom_score_adj=max(oom_score_adj(pod, container, node.memory_capacity), node.min_oom_score_adj),
    )


def infra_options(pod: objects_pb2.Pod, node: NodeSecurity) -> dict[str, Any]:
    """docker-py ``create_host_config`` arguments of the pod's infra container: its sysctls (in
    dotted form) and the sandbox's OOM score adjustment."""
    sysctls = {normalize_sysctl(s.name): s.value for s in pod.spec.security_context.sysctls}
    return {"sysctls": sysctls or None, "oom_score_adj": max(INFRA_OOM_SCORE_ADJ, node.min_oom_score_adj)}


def min_oom_score_adj(status: str, own: int) -> int:
    """The lowest OOM score adjustment a process can set: -1000 with CAP_SYS_RESOURCE in its
    effective set (``CapEff`` of ``status``, its /proc/<pid>/status), else its ``own``."""
    cap_eff = next((line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), "0")
    return -1000 if int(cap_eff, 16) >> CAP_SYS_RESOURCE & 1 else own


def read_min_oom_score_adj() -> int:
    """``min_oom_score_adj`` of the agent itself (the engine is local and as able as the agent:
    both run as root on this host); -1000 when /proc cannot tell."""
    try:
        with open("/proc/self/status") as status, open("/proc/self/oom_score_adj") as own:
            return min_oom_score_adj(status.read(), int(own.read()))
    except (OSError, ValueError):
        return -1000
