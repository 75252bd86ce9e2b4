"""NodeReady filter: only nodes whose Ready condition is True get new pods.

kube-scheduler reaches the same result through the not-ready/unreachable taints the node
lifecycle controller sets; pykube reads the condition as well, so a node is refused from the
moment it turns NotReady or Unknown, before the controller's taint is written.
"""

from __future__ import annotations

import numpy as np

from pymaster.scheduler.framework import CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import NodeArrays

REASON = "node(s) were not ready"


class NodeReady:
    name = "NodeReady"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return Status.success() if node.ready else Status.unschedulable(REASON)

    def filter_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray:
        return arrays.ready
