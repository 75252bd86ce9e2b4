"""NodeReady filter: only nodes whose Ready condition is True get new pods.

kube-scheduler reaches the same result through the not-ready/unreachable taints the node
lifecycle controller sets; pykube has no taints yet, so it reads the condition directly.
"""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Status

REASON = "node(s) were not ready"


class NodeReady:
    name = "NodeReady"

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status:
        return Status.success() if node.ready else Status.unschedulable(REASON)
