"""Node facts shared by the master, pyctl and the tests: the Ready condition and where a node's
agent listens.

The master owns node conditions: an agent proves it is alive by registering, renewing its lease
and reporting status; the one condition it may report is Ready=False (KubeletNotReady: it cannot
reach its container runtime), which the master takes over.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition, timestamp

READY = "Ready"
KUBELET_READY = "KubeletReady"
KUBELET_READY_MESSAGE = "kubelet is posting ready status"
KUBELET_NOT_READY = "KubeletNotReady"
MAX_CONDITION_MESSAGE = 1024
NODE_STATUS_UNKNOWN = "NodeStatusUnknown"
NODE_STATUS_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


def ready_status(node: objects_pb2.Node) -> str:
    """The status of the node's Ready condition ("True", "False", "Unknown"), "" when absent."""
    condition = find_condition(node.status.conditions, READY)
    return condition.status if condition is not None else ""


def set_node_condition(
    node: objects_pb2.Node,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: float | None = None,
    heartbeat: bool,
) -> bool:
    """Sets a node condition in place; lastTransitionTime moves only when the status changes, and
    lastHeartbeatTime when ``heartbeat`` (the agent was heard from).

    Returns:
        True if anything changed.
    """
    condition = find_condition(node.status.conditions, type_)
    if condition is None:
        condition = node.status.conditions.add(type=type_)
    before = objects_pb2.NodeCondition()
    before.CopyFrom(condition)
    if condition.status != status:
        condition.last_transition_time.CopyFrom(timestamp(now))
    condition.status, condition.reason, condition.message = status, reason, message
    if heartbeat:
        condition.last_heartbeat_time.CopyFrom(timestamp(now))
    return condition != before


def mark_ready(node: objects_pb2.Node, now: float | None = None) -> bool:
    """Ready=True (KubeletReady) with a fresh heartbeat, in place. Returns True if it changed."""
    return set_node_condition(
        node, READY, "True", KUBELET_READY, KUBELET_READY_MESSAGE, now=now, heartbeat=True
    )


def mark_not_ready(node: objects_pb2.Node, message: str, now: float | None = None) -> bool:
    """Ready=False (KubeletNotReady) with the agent's message and a fresh heartbeat (the agent
    was heard: it says it cannot run pods), in place. Returns True if it changed."""
    return set_node_condition(
        node, READY, "False", KUBELET_NOT_READY, message[:MAX_CONDITION_MESSAGE], now=now, heartbeat=True
    )


def mark_unknown(node: objects_pb2.Node, now: float | None = None) -> bool:
    """Ready=Unknown (NodeStatusUnknown): the lease expired. The heartbeat time stays the last one
    heard. Returns True if it changed."""
    return set_node_condition(
        node, READY, "Unknown", NODE_STATUS_UNKNOWN, NODE_STATUS_UNKNOWN_MESSAGE, now=now, heartbeat=False
    )


def kubelet_address(node: objects_pb2.Node) -> str | None:
    """ "HOST:PORT" of the node's agent API (InternalIP and the kubelet endpoint port), or None
    when the node has not reported them."""
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    if not ip or not port:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
