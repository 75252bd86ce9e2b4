"""NodePorts filter (kube-scheduler's): a pod that asks for a hostPort fits only on a node where no
pod bound to it already holds the same port and protocol on a conflicting host IP. Host IPs
conflict when equal or when either is 0.0.0.0 (unset means 0.0.0.0, every address).
"""

from __future__ import annotations

from pymaster.scheduler.framework import CycleState, HostPort, NodeInfo, PodInfo, Status

REASON = "node(s) didn't have free ports for the requested pod ports"
ANY_IP = "0.0.0.0"


def ports_conflict(wanted: HostPort, used: HostPort) -> bool:
    """Same port and protocol, on the same host IP or with either on every address."""
    (ip, protocol, port), (used_ip, used_protocol, used_port) = wanted, used
    if port != used_port or protocol != used_protocol:
        return False
    return ip == used_ip or ANY_IP in (ip, used_ip)


class NodePorts:
    name = "NodePorts"

    def pre_filter(self, state: CycleState, pod: PodInfo, snapshot: object) -> Status:
        return Status.success() if pod.host_ports else Status.skip()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for wanted in pod.host_ports:
            if any(ports_conflict(wanted, used) for used in node.used_ports):
                return Status.unschedulable(REASON)
        return Status.success()
