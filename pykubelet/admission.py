"""The agent's own admission check (the kubelet's ``canAdmitPod``): the pod features that give a
container power over the host (privileged mode, the host's network namespace, bind mounts of
host paths) run only when this node's flags allow them.

The rules are the master's (``pymaster.api.admission``), applied with this node's flags; the
node adds what only it can check: a host path is resolved on its own disk, so a symlink
``/data/link -> /etc`` is outside ``/data``; the volume manager checks again, by file
descriptor, when it mounts the path (``host_paths.open_host_path``), since a path can change between
the two. A pod the node rejects ends in phase Failed, reason ``Forbidden``, with the violations
as its message, and never gets a container.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pymaster.api import objects_pb2
from pymaster.api.admission import NODE, AdmissionPolicy, Violation
from pymaster.api.admission import check_pod as _check_pod

__all__ = ["REASON", "AdmissionPolicy", "Violation", "check_pod", "rejection_message"]

REASON = "Forbidden"  # the pod status reason of a rejected pod (kubelet: the admit handler's reason)


def check_pod(
    pod: objects_pb2.Pod,
    policy: AdmissionPolicy,
    resolve: Callable[[str], str] = os.path.realpath,
) -> list[Violation]:
    """Every field of ``pod`` this node refuses, in spec order (empty: admitted).

    Args:
        pod: The pod bound to this node.
        policy: The node's flags.
        resolve: Resolves a host path's symlinks (``os.path.realpath``; tests pass a fake).
    """
    return _check_pod(pod, policy, NODE, resolve)


def rejection_message(violations: Sequence[Violation]) -> str:
    """The pod status message of a rejected pod (kubelet: "Pod was rejected: ...")."""
    return "Pod was rejected: " + "; ".join(str(v) for v in violations)
