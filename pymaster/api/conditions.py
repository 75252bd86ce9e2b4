"""Conditions and timestamps shared by every kind with a ``status.conditions`` list (pods, nodes,
later workloads): find one, set one so that ``lastTransitionTime`` moves only when its status
changes, as Kubernetes' controllers do.

Timestamps are whole seconds, like Kubernetes' ``metav1.Time``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp


class Condition(Protocol):
    type: str
    status: str
    reason: str
    message: str


C = TypeVar("C", bound=Condition)


def timestamp(seconds: float | None = None) -> Timestamp:
    """A Timestamp of ``seconds`` since the epoch (default: now), in whole seconds."""
    return Timestamp(seconds=int(time.time() if seconds is None else seconds))


def find_condition(conditions: Iterable[C], type_: str) -> C | None:
    """The condition of ``type_`` in a repeated condition field, or None."""
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


def set_condition(
    conditions,  # a repeated PodCondition/NodeCondition field
    type_: str,
    status: str,
    reason: str = "",
    message: str = "",
    now: float | None = None,
) -> bool:
    """Sets a condition in place; lastTransitionTime moves only when the status changes.

    Returns:
        True if anything changed.
    """
    condition = find_condition(conditions, type_)
    if condition is None:
        condition = conditions.add(type=type_)
    elif (condition.status, condition.reason, condition.message) == (status, reason, message):
        return False
    if condition.status != status:
        condition.last_transition_time.CopyFrom(timestamp(now))
    condition.status, condition.reason, condition.message = status, reason, message
    return True
