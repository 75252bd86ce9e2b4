"""Taints and tolerations (core/v1), shared by the scheduler's TaintToleration plugin, the node
lifecycle controller's NoExecute eviction, pyctl taint and the agent's --register-with-taints.

A toleration matches a taint when its key is the taint's key (or empty with ``Exists``: every
taint), its effect is the taint's (or empty: every effect), and with ``Equal`` (the default
operator) its value is the taint's value; ``Exists`` ignores the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pymaster.api import objects_pb2

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"
EFFECTS = (NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE)

EQUAL = "Equal"
EXISTS = "Exists"

# The taints the node lifecycle controller puts on nodes (and the default tolerations every pod
# gets for them, Kubernetes' DefaultTolerationSeconds admission).
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


def parse_taint(spec: str) -> objects_pb2.Taint:
    """A taint from kubectl's and the kubelet's ``key=value:Effect`` (or ``key:Effect``).

    Raises:
        ValueError: kubectl's message (``invalid taint spec: ...``, ``invalid taint effect: ...``).
    """
    pair, sep, effect = spec.rpartition(":")
    key, _, value = pair.partition("=")
    if not sep or not key or not effect:
        raise ValueError(f"invalid taint spec: {spec}")
    if effect not in EFFECTS:
        raise ValueError(f"invalid taint effect: {effect}, unsupported taint effect")
    return objects_pb2.Taint(key=key, value=value, effect=effect)


def tolerates(toleration: objects_pb2.Toleration, taint: objects_pb2.Taint) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key != taint.key and not (toleration.key == "" and toleration.operator == EXISTS):
        return False
    operator = toleration.operator or EQUAL
    if operator == EXISTS:
        return True
    return operator == EQUAL and toleration.value == taint.value


def tolerated(taint: objects_pb2.Taint, tolerations: Iterable[objects_pb2.Toleration]) -> bool:
    """Whether any of ``tolerations`` matches ``taint``."""
    return any(tolerates(t, taint) for t in tolerations)


def untolerated(
    taints: Iterable[objects_pb2.Taint],
    tolerations: Sequence[objects_pb2.Toleration],
    effects: Iterable[str] = (NO_SCHEDULE, NO_EXECUTE),
) -> objects_pb2.Taint | None:
    """The first of ``taints`` with one of ``effects`` that no toleration matches, or None."""
    wanted = frozenset(effects)
    for taint in taints:
        if taint.effect in wanted and not tolerated(taint, tolerations):
            return taint
    return None


def format_taint(taint: objects_pb2.Taint) -> str:
    """``key=value:Effect`` (``key:Effect`` without a value), as kubectl prints taints."""
    value = f"={taint.value}" if taint.value else ""
    return f"{taint.key}{value}:{taint.effect}"


def untolerated_reason(taint: objects_pb2.Taint) -> str:
    """kube-scheduler's TaintToleration filter reason: ``node(s) had untolerated taint {k: v}``."""
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
