"""NodeName filter (kube-scheduler's): a pod whose spec.nodeName is set fits only that node.

In pykube a pod created with spec.nodeName is bound at creation and never reaches the scheduler,
so this filter only matters for a pod whose nodeName appears while it waits in the queue; it is
kept, as in kube-scheduler's default profile, so a pod is never placed on a node it did not name.
"""

from __future__ import annotations

from pymaster.scheduler.framework import CycleState, NodeInfo, PodInfo, Status

REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = "NodeName"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: object) -> Status:
        return Status.success() if pod.pod.spec.node_name else Status.skip()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return Status.success() if node.name == pod.pod.spec.node_name else Status.unschedulable(REASON)
