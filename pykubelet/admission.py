"""The agent's own admission check: the pod features that give a container power over the host
(privileged mode, the host's network namespace, bind mounts of host paths) run only when this
node's flags allow them.

The master refuses such pods already (its own flags), but a node does not take the master's word
for what may run as root on it: the kubelet re-checks every pod it is given (``canAdmitPod``) and
a pod it rejects ends in phase Failed with a reason, never with a container. This node's rules:

- ``securityContext.privileged: true`` needs ``--allow-privileged``;
- ``hostNetwork: true`` needs ``--allow-host-network``;
- a ``hostPath`` volume must lie under one of the ``--allowed-host-path`` prefixes (none by
  default), compared path component by component after normalising ``..``, and, since the agent
  runs on the host, once more after resolving symlinks: ``/data/link -> /etc`` is outside ``/data``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymaster.api import objects_pb2

REASON = "Forbidden"  # the pod status reason of a rejected pod (kubelet: the admit handler's reason)


@dataclass(frozen=True)
class AdmissionPolicy:
    """What this node allows (the ``pykubelet`` flags); the default allows none of it."""

    allow_privileged: bool = False
    allow_host_network: bool = False
    allowed_host_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Violation:
    """One refused field; ``str()`` is "field: message"."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def normalize_prefix(prefix: str) -> str:
    """An ``--allowed-host-path`` value in the form ``under_prefix`` compares against.

    Raises:
        ValueError: the prefix is not an absolute path.
    """
    if not prefix.startswith("/"):
        raise ValueError(f"{prefix!r} is not an absolute path")
    return _normalize(prefix)


def _normalize(path: str) -> str:
    # normpath keeps a leading "//" (POSIX leaves its meaning open); on Linux it is "/".
    return "/" + posixpath.normpath(path).lstrip("/")


def under_prefix(path: str, prefixes: Sequence[str]) -> bool:
    """Whether the normalised absolute ``path`` is one of ``prefixes`` or below one, by whole
    components: ``/data2`` is not under ``/data``."""
    for prefix in prefixes:
        if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def check_pod(
    pod: objects_pb2.Pod,
    policy: AdmissionPolicy,
    resolve: Callable[[str], str] = os.path.realpath,
) -> list[Violation]:
    """Every field of ``pod`` this node refuses, in spec order (empty: admitted).

    Args:
        pod: the pod bound to this node.
        policy: the node's flags.
        resolve: resolves a host path's symlinks (``os.path.realpath``; tests pass a fake).
    """
    violations: list[Violation] = []
    spec = pod.spec
    if spec.host_network and not policy.allow_host_network:
        violations.append(Violation(
            "spec.hostNetwork", "host networking is not allowed on this node (pykubelet --allow-host-network)"
        ))
    for i, container in enumerate(spec.containers):
        if container.security_context.privileged and not policy.allow_privileged:
            violations.append(Violation(
                f"spec.containers[{i}].securityContext.privileged",
                "privileged containers are not allowed on this node (pykubelet --allow-privileged)",
            ))
    for i, volume in enumerate(spec.volumes):
        if volume.HasField("host_path"):
            message = _host_path_refusal(volume.host_path.path, policy.allowed_host_paths, resolve)
            if message:
                violations.append(Violation(f"spec.volumes[{i}].hostPath.path", message))
    return violations


def _host_path_refusal(path: str, prefixes: Sequence[str], resolve: Callable[[str], str]) -> str:
    """Why ``path`` may not be mounted ("" when it may)."""
    if not path.startswith("/"):
        return f"{path!r} is not an absolute path"
    allowed = (
        f"allowed on this node: {', '.join(prefixes)}" if prefixes else "this node allows none"
    ) + " (pykubelet --allowed-host-path)"
    normalized = _normalize(path)
    if not under_prefix(normalized, prefixes):
        return f"{path} is not under an allowed host path; {allowed}"
    resolved = _normalize(resolve(normalized))
    if not under_prefix(resolved, prefixes):
        return f"{path} resolves to {resolved}, which is not under an allowed host path; {allowed}"
    return ""


def rejection_message(violations: Sequence[Violation]) -> str:
    """The pod status message of a rejected pod (kubelet: "Pod was rejected: ...")."""
    return "Pod was rejected: " + "; ".join(str(v) for v in violations)
