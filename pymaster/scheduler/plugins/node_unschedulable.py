"""NodeUnschedulable filter: a cordoned node (spec.unschedulable) gets no new pods, except those
that tolerate the ``node.kubernetes.io/unschedulable:NoSchedule`` taint (as in kube-scheduler:
what DaemonSet pods carry)."""

from __future__ import annotations

import numpy as np

from pymaster.api import objects_pb2
from pymaster.api.taints import NO_SCHEDULE, UNSCHEDULABLE, tolerated
from pymaster.scheduler.framework import CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import ALL_PASS, NodeArrays

REASON = "node(s) were unschedulable"
_CORDON_TAINT = objects_pb2.Taint(key=UNSCHEDULABLE, effect=NO_SCHEDULE)


def tolerates_cordon(pod: PodInfo) -> bool:
    return tolerated(_CORDON_TAINT, pod.pod.spec.tolerations)


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if node.node.spec.unschedulable and not tolerates_cordon(pod):
            return Status.unschedulable(REASON)
        return Status.success()

    def filter_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | bool:
        if tolerates_cordon(pod):
            return ALL_PASS
        return ~arrays.unschedulable
