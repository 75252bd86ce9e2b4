"""NodeResourcesFit filter: the pod's cpu, memory, ephemeral-storage and extended resource requests
fit in what the node has left (allocatable minus the requests of the pods bound to it), and the
node is below its pod limit.

Like kube-scheduler, a resource the pod does not request is not checked, every shortage is
reported in kube-scheduler's order (a node short of cpu and memory counts in both), with its
reasons ("Too many pods", "Insufficient cpu", "Insufficient ephemeral-storage", "Insufficient
example.com/dongle"); a resource the node does not report (an extended one it lacks, or
ephemeral-storage from an agent that does not advertise it) counts as 0 there, so nothing is ever
overcommitted.
"""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Status

INSUFFICIENT = "Insufficient {}"
INSUFFICIENT_CPU = INSUFFICIENT.format("cpu")
INSUFFICIENT_MEMORY = INSUFFICIENT.format("memory")
INSUFFICIENT_EPHEMERAL_STORAGE = INSUFFICIENT.format("ephemeral-storage")
TOO_MANY_PODS = "Too many pods"


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
        storage = pod.ephemeral_storage_bytes
        free_storage = node.allocatable_ephemeral_storage_bytes - node.requested_ephemeral_storage_bytes
        if storage > 0 and storage > free_storage:
            reasons.append(INSUFFICIENT_EPHEMERAL_STORAGE)
        for name, count in sorted(pod.extended.items()):
            free = node.allocatable_extended.get(name, 0) - node.requested_extended.get(name, 0)
            if count > free:
                reasons.append(INSUFFICIENT.format(name))
        return Status.unschedulable(*reasons) if reasons else Status.success()
