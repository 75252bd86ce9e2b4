"""NodeUnschedulable filter: a cordoned node (spec.unschedulable) gets no new pods."""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Status

REASON = "node(s) were unschedulable"


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status:
        return Status.unschedulable(REASON) if node.node.spec.unschedulable else Status.success()
