"""Runs a score plugin the way the framework does (pre_filter when asked, pre_score, score,
normalize) for the plugins' table tests."""

from __future__ import annotations

from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot


def plugin_scores(
    plugin, pod: PodInfo, nodes: list[NodeInfo], feasible: list[NodeInfo] | None = None, *,
    pre_filter: bool = False,
) -> dict[str, float] | None:
    """Normalised scores of ``feasible`` (default: every node) by node name; None when the plugin
    skips the pod. ``pre_filter``: run the plugin's pre_filter over ``nodes`` first (plugins that
    precompute from the whole snapshot)."""
    state: dict = {}
    if pre_filter:
        plugin.pre_filter(state, pod, Snapshot(nodes))
    feasible = nodes if feasible is None else feasible
    if plugin.pre_score(state, pod, feasible).skipped:
        return None
    scores = {node.name: plugin.score(state, pod, node) for node in feasible}
    plugin.normalize(state, pod, scores)
    return scores
