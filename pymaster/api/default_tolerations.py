"""Kubernetes' DefaultTolerationSeconds admission: every pod created gets NoExecute tolerations of
the taints the node lifecycle controller puts on a failed node (``not-ready`` and
``unreachable``), for ``--default-not-ready-toleration-seconds`` and
``--default-unreachable-toleration-seconds`` (300 by default): its pods are evicted five minutes
after their node fails, not at once. A pod that already tolerates one of them keeps its own.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.taints import NO_EXECUTE, NOT_READY, UNREACHABLE, tolerated

DEFAULT_TOLERATION_SECONDS = 300


def add_default_tolerations(pod: objects_pb2.Pod, not_ready_seconds: int, unreachable_seconds: int) -> None:
    """Appends the default tolerations ``pod`` lacks, in place (idempotent: a re-applied manifest
    gets the same ones, so it matches the stored pod)."""
    tolerations = pod.spec.tolerations
    for key, seconds in ((NOT_READY, not_ready_seconds), (UNREACHABLE, unreachable_seconds)):
        if not tolerated(objects_pb2.Taint(key=key, effect=NO_EXECUTE), tolerations):
            tolerations.add(key=key, operator="Exists", effect=NO_EXECUTE, toleration_seconds=seconds)
