"""NodeResourcesFit filter: the pod's cpu and memory requests fit in what the node has left
(allocatable minus the requests of the pods bound to it), and the node is below its pod limit.

Like kube-scheduler, a resource the pod does not request is not checked, and every shortage is
reported (a node short of cpu and memory counts in both).
"""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Status

INSUFFICIENT_CPU = "insufficient cpu"
INSUFFICIENT_MEMORY = "insufficient memory"
TOO_MANY_PODS = "too many pods"


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status:
        reasons = []
        if node.pod_count + 1 > node.allocatable_pods:
            reasons.append(TOO_MANY_PODS)
        if pod.cpu_millis > 0 and pod.cpu_millis > node.allocatable_cpu_millis - node.requested_cpu_millis:
            reasons.append(INSUFFICIENT_CPU)
        if (
            pod.memory_bytes > 0
            and pod.memory_bytes > node.allocatable_memory_bytes - node.requested_memory_bytes
        ):
            reasons.append(INSUFFICIENT_MEMORY)
        return Status.unschedulable(*reasons) if reasons else Status.success()
