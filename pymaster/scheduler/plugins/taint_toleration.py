"""TaintToleration filter and score (kube-scheduler's TaintToleration plugin).

Filter: a node with a NoSchedule or NoExecute taint the pod does not tolerate is refused, with
the first such taint in the reason (``node(s) had untolerated taint {key: value}``).

Score: the fewer PreferNoSchedule taints the pod does not tolerate (only its tolerations with
no effect or PreferNoSchedule count, as in Kubernetes), the better; normalised by the worst node
and reversed, so a node with none scores 100.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pymaster.api.taints import PREFER_NO_SCHEDULE, tolerated, untolerated, untolerated_reason
from pymaster.scheduler.framework import CycleState, NodeInfo, PodInfo, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.node_affinity import normalize_by_max


class TaintToleration:
    name = "TaintToleration"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        taints = node.node.spec.taints
        if not taints:  # the common case: nothing to tolerate
            return Status.success()
        taint = untolerated(taints, pod.pod.spec.tolerations)
        return Status.success() if taint is None else Status.unschedulable(untolerated_reason(taint))

    def filter_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray:
        # Only the tainted nodes need the per-node check (most nodes have no taint).
        return arrays.scalar_filter(self, state, pod, arrays.tainted)

    def score_array(self, state: CycleState, pod: PodInfo, arrays: NodeArrays) -> np.ndarray | float | None:
        # No PreferNoSchedule taint anywhere: every node scores the same; else the scalar path.
        return None if arrays.soft_tainted.any() else EQUAL

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        # No PreferNoSchedule taint anywhere: every node would score the same.
        if not any(t.effect == PREFER_NO_SCHEDULE for node in nodes for t in node.node.spec.taints):
            return Status.skip()
        state[self.name] = tuple(
            t for t in pod.pod.spec.tolerations if t.effect in ("", PREFER_NO_SCHEDULE)
        )
        return Status.success()

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> float:
        tolerations = state[self.name]
        return float(
            sum(
                1
                for taint in node.node.spec.taints
                if taint.effect == PREFER_NO_SCHEDULE and not tolerated(taint, tolerations)
            )
        )

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        normalize_by_max(scores, reverse=True)
