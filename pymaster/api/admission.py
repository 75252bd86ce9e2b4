"""Pod admission: what a valid pod may still not do, shared by the master and the agent (like
Kubernetes' pod-security package, used by the apiserver and the kubelet alike).

By default a pod may not run privileged containers, use the host's network namespace, mount a
host path or publish a host port below 1024; and never a host port the daemon itself listens on.
Each side opens them with its own flags (``pymaster``/``pykubelet`` ``--allow-privileged``,
``--allow-host-network``, ``--allowed-host-path PREFIX``, ``--allow-privileged-host-ports``): the master
refuses a pod at the API (PERMISSION_DENIED), and the node checks again before running one,
because a node does not take the master's word for what may run as root on it.

``check_pod`` returns every violation, in spec field order (containers: privileged, then host
ports; hostNetwork; volumes),
each naming its field and the flag that would allow it. Host paths are normalized lexically
(``/data/../etc`` is ``/etc``) and matched on whole path components (prefix ``/data`` allows
``/data`` and ``/data/x``, never ``/database``). Only the agent can see its own disk: it passes
``resolve`` (``os.path.realpath``) so that a symlink ``/data/link -> /etc`` is refused too.

Sysctl facts shared by validation and the node's admission (``pykubelet.admission``, which alone
refuses unsafe sysctls, as only the kubelet does in Kubernetes): names and their namespaces,
Kubernetes' safe set, and the node's ``--allowed-unsafe-sysctls`` patterns (namespaced names, or
prefixes ending in ``*``; a non-namespaced one is refused, as the kubelet refuses to start with it).
A ``Violation`` carries the pod status reason of a node's refusal.

Pure: no store, no gRPC, no file system unless ``resolve`` reads it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.default_tolerations import DEFAULT_TOLERATION_SECONDS


@dataclass(frozen=True)
class Scope:
    """Who checks: the words of its messages."""

    place: str  # "cluster" or "node"
    binary: str  # the daemon whose flag opens the feature


CLUSTER = Scope("cluster", "pymaster")
NODE = Scope("node", "pykubelet")


def normalize_host_path(path: str) -> str:
    """The lexically normalized absolute form of ``path`` (no ``.``, ``..``, ``//`` or trailing ``/``).

    Raises:
        ValueError: ``path`` is not absolute or contains a NUL byte.
    """
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    if "\0" in path:
        raise ValueError("must not contain a NUL byte")
    # normpath keeps a leading "//" (POSIX allows it to mean something else): one "/" is enough.
    return "/" + posixpath.normpath(path).lstrip("/")


def under_prefix(path: str, prefixes: Iterable[str]) -> bool:
    """True when normalized ``path`` is one of ``prefixes`` or inside one, component-wise."""
    return any(prefix == "/" or path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


@dataclass(frozen=True)
class AdmissionPolicy:
    """What pods may do beyond the safe default (the daemon's flags).

    Attributes:
        allow_privileged: Containers may set securityContext.privileged.
        allow_host_network: Pods may set spec.hostNetwork.
        allowed_host_paths: Normalized prefixes hostPath volumes may use; empty: none.
        allow_privileged_host_ports: Container ports may publish host ports below 1024.
        reserved_host_ports: The daemon's own ports, which no pod may publish.
        allowed_unsafe_sysctls: Sysctls outside Kubernetes' safe set that pods may set (names,
            or prefixes ending in ``*``); the agent's ``--allowed-unsafe-sysctls``.
        not_ready_toleration_seconds, unreachable_toleration_seconds: The tolerationSeconds of
            the NoExecute tolerations every new pod gets for the ``not-ready`` and
            ``unreachable`` node taints (``default_tolerations``); the master's only.
    """

    allow_privileged: bool = False
    allow_host_network: bool = False
    allowed_host_paths: tuple[str, ...] = ()
    allow_privileged_host_ports: bool = False
    reserved_host_ports: tuple[int, ...] = ()
    allowed_unsafe_sysctls: tuple[str, ...] = ()
    not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS
    unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS

    @classmethod
    def of(
        cls, *, allow_privileged: bool = False, allow_host_network: bool = False,
        allowed_host_paths: Iterable[str] = (), allow_privileged_host_ports: bool = False,
        reserved_host_ports: Iterable[int] = (), allowed_unsafe_sysctls: Iterable[str] = (),
        not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
    ) -> AdmissionPolicy:
        """A policy from flag values; host path prefixes are normalized and deduplicated.

        Raises:
            ValueError: a prefix is not an absolute path; an unsafe sysctl pattern is malformed
                or not namespaced (``check_sysctl_pattern``).
        """
        prefixes: list[str] = []
        for prefix in allowed_host_paths:
            try:
                prefixes.append(normalize_host_path(prefix))
            except ValueError as err:
                raise ValueError(f"allowed host path {prefix!r}: {err}") from None
        sysctls = [check_sysctl_pattern(pattern) for pattern in allowed_unsafe_sysctls]
        return cls(
            allow_privileged, allow_host_network, tuple(dict.fromkeys(prefixes)),
            allow_privileged_host_ports, tuple(sorted(set(reserved_host_ports) - {0})),
            tuple(dict.fromkeys(sysctls)), not_ready_toleration_seconds, unreachable_toleration_seconds,
        )


@dataclass(frozen=True)
class Violation:
    """One refused field; ``str()`` is "field: message" (the message alone for the node as a
    whole, e.g. resources it does not have). ``reason`` is the pod status reason when
    a node refuses the pod for it (the kubelet admit handler's: ``Forbidden``,
    ``SysctlForbidden``, ``AppArmor``); the master ignores it."""

    field: str
    message: str
    reason: str = "Forbidden"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def check_pod(
    pod: objects_pb2.Pod,
    policy: AdmissionPolicy,
    scope: Scope = CLUSTER,
    resolve: Callable[[str], str] | None = None,
) -> list[Violation]:
    """Every field of ``pod`` that ``policy`` refuses, in spec order (empty: admitted).

    Args:
        pod: The pod.
        policy: The flags of the daemon checking.
        scope: Whose flags they are (the messages name the daemon).
        resolve: Resolves a host path's symlinks on this machine (the agent passes
            ``os.path.realpath``); the resolved path must be allowed too.
    """
    violations: list[Violation] = []
    spec = pod.spec
    for i, container in enumerate(spec.containers):
        if container.security_context.privileged and not policy.allow_privileged:
            violations.append(Violation(
                f"spec.containers[{i}].securityContext.privileged",
                f"privileged containers are not allowed on this {scope.place} "
                f"({scope.binary} --allow-privileged)",
            ))
        for j, port in enumerate(container.ports):
            message = _host_port_refusal(port.host_port, policy, scope)
            if message:
                violations.append(Violation(f"spec.containers[{i}].ports[{j}].hostPort", message))
    if spec.host_network and not policy.allow_host_network:
        violations.append(Violation(
            "spec.hostNetwork",
            f"host networking is not allowed on this {scope.place} ({scope.binary} --allow-host-network)",
        ))
    for i, volume in enumerate(spec.volumes):
        if volume.HasField("host_path"):
            message = _host_path_refusal(volume.host_path.path, policy.allowed_host_paths, scope, resolve)
            if message:
                violations.append(Violation(f"spec.volumes[{i}].hostPath.path", message))
    return violations


def _host_port_refusal(port: int, policy: AdmissionPolicy, scope: Scope) -> str:
    """Why a container may not publish host port ``port`` ("" when it may; 0 is no host port)."""
    if port in policy.reserved_host_ports:
        return f"host port {port} is a port of {scope.binary} itself on this {scope.place}"
    if 0 < port < 1024 and not policy.allow_privileged_host_ports:
        return (
            f"host ports below 1024 are not allowed on this {scope.place} "
            f"({scope.binary} --allow-privileged-host-ports)"
        )
    return ""


def _host_path_refusal(
    path: str, prefixes: Sequence[str], scope: Scope, resolve: Callable[[str], str] | None
) -> str:
    """Why ``path`` may not be mounted ("" when it may)."""
    try:
        normalized = normalize_host_path(path)
    except ValueError as err:
        return f"{path!r}: {err}"
    allowed = f"(allowed: {', '.join(prefixes) or 'none'}; {scope.binary} --allowed-host-path PREFIX)"
    if not under_prefix(normalized, prefixes):
        return f"host path {normalized} is not under an allowed prefix {allowed}"
    if resolve is not None:
        resolved = normalize_host_path(resolve(normalized))
        if not under_prefix(resolved, prefixes):
            return (
                f"host path {normalized} resolves to {resolved}, which is not under an allowed prefix "
                + allowed
            )
    return ""


# ---- sysctls (the kubelet's sysctl allowlist and component-helpers' sysctl namespaces) ----

# Kubernetes' safe sysctls: namespaced, isolated between pods, allowed on every node. Each with the
# oldest kernel (major, minor) that namespaces it; on an older kernel it is an unsafe one.
SAFE_SYSCTLS: dict[str, tuple[int, int]] = {
    "kernel.shm_rmid_forced": (0, 0),
    "net.ipv4.ip_local_port_range": (0, 0),
    "net.ipv4.tcp_syncookies": (0, 0),
    "net.ipv4.ping_group_range": (0, 0),
    "net.ipv4.ip_unprivileged_port_start": (0, 0),
    "net.ipv4.ip_local_reserved_ports": (3, 16),
    "net.ipv4.tcp_keepalive_time": (4, 5),
    "net.ipv4.tcp_fin_timeout": (4, 6),
    "net.ipv4.tcp_keepalive_intvl": (4, 5),
    "net.ipv4.tcp_keepalive_probes": (4, 5),
    "net.ipv4.tcp_rmem": (4, 15),
    "net.ipv4.tcp_wmem": (4, 15),
}
IPC, NET = "ipc", "net"  # the namespaces a sysctl may belong to (the kubelet's words)
_NAMESPACED = {"kernel.sem": IPC}
_NAMESPACED_PREFIXES = {"kernel.shm": IPC, "kernel.msg": IPC, "fs.mqueue.": IPC, "net.": NET}
_SYSCTL_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_NAME = re.compile(rf"({_SYSCTL_SEGMENT}[./])*{_SYSCTL_SEGMENT}")
SYSCTL_MAX_LENGTH = 253
# A name, or a prefix ending in "*" (where a segment may stop anywhere: "net.ipv4.tcp_*").
_SYSCTL_PATTERN = re.compile(rf"({_SYSCTL_SEGMENT}[./])*({_SYSCTL_SEGMENT}|([a-z0-9][-_a-z0-9]*)?\*)")


def normalize_sysctl(name: str) -> str:
    """The dotted form of a sysctl name: ``net/ipv4/conf/eno2.100/rp_filter`` (slashes first) is
    ``net.ipv4.conf.eno2/100.rp_filter``; a name whose first separator is a dot is kept."""
    first = next((c for c in name if c in "./"), ".")
    return name if first == "." else name.translate(str.maketrans("./", "/."))


def sysctl_namespace(name: str) -> str:
    """The namespace a (normalized) sysctl, or sysctl prefix, belongs to: ``IPC``, ``NET``, or ""
    when it is not known to be namespaced (it would change the whole node)."""
    if name in _NAMESPACED:
        return _NAMESPACED[name]
    return next((ns for prefix, ns in _NAMESPACED_PREFIXES.items() if name.startswith(prefix)), "")


def check_sysctl_pattern(pattern: str) -> str:
    """A ``--allowed-unsafe-sysctls`` entry (a name, or a prefix ending in ``*``), normalized.

    Raises:
        ValueError: malformed, or not known to be namespaced (as the kubelet refuses it).
    """
    if len(pattern) > SYSCTL_MAX_LENGTH or not _SYSCTL_PATTERN.fullmatch(pattern):
        raise ValueError(
            f"sysctl {pattern!r} must have at most {SYSCTL_MAX_LENGTH} characters and be a sysctl "
            "name or a prefix ending in '*'"
        )
    normalized = normalize_sysctl(pattern)
    if not sysctl_namespace(normalized.rstrip("*")):
        raise ValueError(f"the sysctls {normalized!r} are not known to be namespaced")
    return normalized


def safe_sysctls(kernel: tuple[int, int]) -> frozenset[str]:
    """The safe sysctls on a node running Linux ``kernel`` (major, minor)."""
    return frozenset(name for name, oldest in SAFE_SYSCTLS.items() if kernel >= oldest)


def sysctl_allowed(name: str, patterns: Iterable[str]) -> bool:
    """Whether normalized ``name`` is one of ``patterns`` or under one ending in ``*``."""
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)
