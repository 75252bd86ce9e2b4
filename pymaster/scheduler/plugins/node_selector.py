"""NodeSelector filter: every key=value of the pod's spec.nodeSelector must be a label of the node."""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Status

REASON = "node(s) didn't match Pod's node selector"


class NodeSelector:
    name = "NodeSelector"

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status:
        labels = node.node.metadata.labels
        for key, value in pod.pod.spec.node_selector.items():
            if labels.get(key) != value:
                return Status.unschedulable(REASON)
        return Status.success()
