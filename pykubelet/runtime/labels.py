"""The labels every pykube container carries, and the readable Docker names they get.

Docker is the agent's memory: from these labels alone a (restarted) agent rebuilds which pod and
which container of its spec each Docker container is, on which node it was started, which attempt
it is (restart count) and from which container spec it was created (spec hash). Two agents with
different node names may share one engine; the node label keeps them apart.

Pure module: no docker import.
"""

from __future__ import annotations

import hashlib
import re

from pykubelet.runtime.base import INFRA_CONTAINER_NAME
from pymaster.api import objects_pb2

POD_UID = "pykube.pod.uid"
POD_NAME = "pykube.pod.name"
POD_NAMESPACE = "pykube.pod.namespace"
CONTAINER_NAME = "pykube.container.name"  # INFRA_CONTAINER_NAME ("POD") for the infra container
NODE_NAME = "pykube.node.name"
RESTART_COUNT = "pykube.restart.count"
SPEC_HASH = "pykube.spec.hash"
# For humans and future reapers: the grace period the pod asked for when the container was created.
GRACE_PERIOD = "pykube.pod.termination-grace-period"

# Docker accepts [a-zA-Z0-9][a-zA-Z0-9_.-]* for container names.
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_.-]")


def container_spec_hash(container: objects_pb2.Container) -> str:
    """A short, stable hash of a container spec: a change means the container must be recreated.

    Proto3's deterministic serialization omits default values, so adding a field to the schema
    does not change the hash of specs that do not set it (no mass restart after an upgrade).

    Args:
        container: the container spec as in the pod.

    Returns:
        16 lowercase hex digits.
    """
    return hashlib.sha256(container.SerializeToString(deterministic=True)).hexdigest()[:16]


def container_name(
    name: str, pod_name: str, namespace: str, pod_uid: str, restart_count: int
) -> str:
    """The readable Docker name ``pk_<container>_<pod>_<namespace>_<uid[:8]>_<restart_count>``.

    The restart count keeps the names of successive attempts distinct; the uid prefix those of a
    pod deleted and recreated under the same name.

    Args:
        name: the pod's container name, or INFRA_CONTAINER_NAME for the infra container.
        pod_name: metadata.name.
        namespace: metadata.namespace.
        pod_uid: metadata.uid.
        restart_count: the attempt number (0 for the first).
    """
    raw = f"pk_{name}_{pod_name}_{namespace}_{pod_uid[:8]}_{restart_count}"
    return _NOT_NAME_CHAR.sub("-", raw)


def container_labels(
    pod: objects_pb2.Pod,
    name: str,
    node_name: str,
    restart_count: int,
    spec_hash: str = "",
) -> dict[str, str]:
    """The labels of one container of ``pod``.

    Args:
        pod: the pod.
        name: the pod's container name, or INFRA_CONTAINER_NAME.
        node_name: the agent's node.
        restart_count: the attempt number.
        spec_hash: ``container_spec_hash`` of the app container's spec; empty for the infra.
    """
    labels = {
        POD_UID: pod.metadata.uid,
        POD_NAME: pod.metadata.name,
        POD_NAMESPACE: pod.metadata.namespace,
        CONTAINER_NAME: name,
        NODE_NAME: node_name,
        RESTART_COUNT: str(restart_count),
    }
    if spec_hash:
        labels[SPEC_HASH] = spec_hash
    if pod.spec.HasField("termination_grace_period_seconds"):
        labels[GRACE_PERIOD] = str(pod.spec.termination_grace_period_seconds)
    return labels


def infra_labels(pod: objects_pb2.Pod, node_name: str, restart_count: int) -> dict[str, str]:
    """The labels of the pod's infra container (container name INFRA_CONTAINER_NAME)."""
    return container_labels(pod, INFRA_CONTAINER_NAME, node_name, restart_count)


def parse_restart_count(labels: dict[str, str]) -> int:
    """The restart count label as an int; 0 when absent or malformed (a hand-made container)."""
    try:
        return int(labels.get(RESTART_COUNT, "0"))
    except ValueError:
        return 0
