"""Pure helpers behind the node RPCs and the node lifecycle controller: the Ready condition,
registration merge, status reports, the heartbeat period and where a node's agent listens.

The master owns node conditions: an agent proves it is alive by registering, renewing its lease
and reporting status; it never writes Ready itself.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.server.pod_helpers import find_condition, timestamp

READY = "Ready"
KUBELET_READY = "KubeletReady"
KUBELET_READY_MESSAGE = "kubelet is posting ready status"
NODE_STATUS_UNKNOWN = "NodeStatusUnknown"
NODE_STATUS_UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
DEFAULT_LEASE_SECONDS = 10.0
MIN_LEASE_SECONDS = 0.1
# The renewal period handed out is up to this fraction shorter than asked, so agents started
# together (after a master restart) spread their renewals (swarmkit's heartbeat jitter).
LEASE_JITTER = 0.1


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


def mark_unknown(node: objects_pb2.Node, now: float | None = None) -> bool:
    """Ready=Unknown (NodeStatusUnknown): the lease expired. The heartbeat time stays the last one
    heard. Returns True if it changed."""
    return set_node_condition(
        node, READY, "Unknown", NODE_STATUS_UNKNOWN, NODE_STATUS_UNKNOWN_MESSAGE, now=now, heartbeat=False
    )


def apply_status_report(
    node: objects_pb2.Node, status: objects_pb2.NodeStatus, now: float | None = None
) -> None:
    """Copies what an agent reports (capacity, allocatable, addresses, daemon endpoints, node info,
    usage) onto ``node`` in place, field by field where the report sets it, and marks the node
    Ready. The agent's own conditions are ignored: they are the master's."""
    target = node.status
    if status.capacity:
        target.ClearField("capacity")
        target.capacity.update(status.capacity)
    if status.allocatable:
        target.ClearField("allocatable")
        target.allocatable.update(status.allocatable)
    if status.addresses:
        del target.addresses[:]
        target.addresses.extend(status.addresses)
    for field in ("daemon_endpoints", "node_info", "usage"):
        if status.HasField(field):
            getattr(target, field).CopyFrom(getattr(status, field))
    mark_ready(node, now)


def merge_registration(
    existing: objects_pb2.Node | None, reported: objects_pb2.Node, uid: str, now: float | None = None
) -> objects_pb2.Node:
    """The node to store when an agent registers ``reported``.

    A new node takes the agent's metadata and spec. A known node keeps its uid, spec (an admin's
    cordon survives agent restarts) and labels/annotations, with the agent's merged over them.
    Either way the status comes from the report and the node is Ready.

    Args:
        uid: The uid for a new node.
    """
    node = objects_pb2.Node()
    if existing is None:
        node.metadata.name = reported.metadata.name
        node.metadata.uid = uid
        node.metadata.creation_timestamp.CopyFrom(timestamp(now))
        node.metadata.generation = 1
        node.spec.CopyFrom(reported.spec)
    else:
        node.CopyFrom(existing)
    node.api_version, node.kind = "v1", "Node"
    node.metadata.labels.update(reported.metadata.labels)
    node.metadata.annotations.update(reported.metadata.annotations)
    apply_status_report(node, reported.status, now)
    return node


def merge_node_update(current: objects_pb2.Node, desired: objects_pb2.Node) -> objects_pb2.Node:
    """The node to store for a user's UpdateNode: labels, annotations and spec from ``desired``,
    everything else (status, uid, timestamps) from ``current``."""
    merged = objects_pb2.Node()
    merged.CopyFrom(current)
    merged.metadata.ClearField("labels")
    merged.metadata.labels.update(desired.metadata.labels)
    merged.metadata.ClearField("annotations")
    merged.metadata.annotations.update(desired.metadata.annotations)
    merged.spec.CopyFrom(desired.spec)
    if merged.spec != current.spec:
        merged.metadata.generation = current.metadata.generation + 1
    return merged


def kubelet_address(node: objects_pb2.Node) -> str | None:
    """ "HOST:PORT" of the node's agent API (InternalIP and the kubelet endpoint port), or None
    when the node has not reported them."""
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    if not ip or not port:
        return None
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def next_renew_seconds(requested: float, grace_period: float, jitter: float) -> float:
    """The lease period to hand an agent.

    Args:
        requested: What the agent asked for; 0 or less means the default (10 s).
        grace_period: The master's node monitor grace period; the period is at most a third of
            it so that two renewals may be lost before the node turns Unknown.
        jitter: A random number in [0, 1): the period is shortened by up to LEASE_JITTER of it.
    """
    period = requested if requested > 0 else DEFAULT_LEASE_SECONDS
    period = min(max(period, MIN_LEASE_SECONDS), max(grace_period / 3, MIN_LEASE_SECONDS))
    return period * (1 - LEASE_JITTER * jitter)
