"""The plugin registry: plugin name -> factory, and the default profile (which filters run, in
which order, and the score weights, kube-scheduler's defaults), so a profile can be chosen by
names (``pymaster.scheduler.config``).

Adding a plugin to the default profile is one line of ``DEFAULT_PROFILE``: its name, its factory
(called with the plugin's ``pluginConfig`` args as keyword arguments), whether it runs as a
filter (in table order: cheap checks first, so a node rejected early never reaches the costly
ones) and its default score weight (0: not a score plugin).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pymaster.scheduler.framework import FilterPlugin, Framework, ScorePlugin
from pymaster.scheduler.plugins.balanced_allocation import BalancedAllocation
from pymaster.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from pymaster.scheduler.plugins.node_affinity import NodeAffinity
from pymaster.scheduler.plugins.node_name import NodeName
from pymaster.scheduler.plugins.node_ports import NodePorts
from pymaster.scheduler.plugins.node_ready import NodeReady
from pymaster.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pymaster.scheduler.plugins.pod_topology_spread import PodTopologySpread
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit
from pymaster.scheduler.plugins.selector_spread import SelectorSpread
from pymaster.scheduler.plugins.taint_toleration import TaintToleration


@dataclass(frozen=True)
class PluginEntry:
    name: str
    factory: Callable[..., object]
    filter: bool = False
    score_weight: int = 0


# kube-scheduler's default filter order and score weights (TaintToleration 3, NodeAffinity 2,
# PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1, BalancedAllocation 1).
DEFAULT_PROFILE: tuple[PluginEntry, ...] = (
    PluginEntry("NodeUnschedulable", NodeUnschedulable, filter=True),
    PluginEntry("NodeName", NodeName, filter=True),
    PluginEntry("NodeReady", NodeReady, filter=True),
    PluginEntry("TaintToleration", TaintToleration, filter=True, score_weight=3),
    PluginEntry("NodeAffinity", NodeAffinity, filter=True, score_weight=2),
    PluginEntry("NodePorts", NodePorts, filter=True),
    PluginEntry("NodeResourcesFit", NodeResourcesFit, filter=True, score_weight=1),
    PluginEntry("PodTopologySpread", PodTopologySpread, filter=True, score_weight=2),
    PluginEntry("InterPodAffinity", InterPodAffinity, filter=True, score_weight=2),
    PluginEntry("NodeResourcesBalancedAllocation", BalancedAllocation, score_weight=1),
    PluginEntry("SelectorSpread", SelectorSpread, score_weight=1),
)

PLUGINS: dict[str, PluginEntry] = {entry.name: entry for entry in DEFAULT_PROFILE}
DEFAULT_FILTERS: tuple[str, ...] = tuple(e.name for e in DEFAULT_PROFILE if e.filter)
DEFAULT_SCORES: tuple[tuple[str, int], ...] = tuple((e.name, e.score_weight) for e in DEFAULT_PROFILE
                                                    if e.score_weight)


def is_filter(name: str) -> bool:
    """Whether the plugin of ``name`` (a registered one) can filter."""
    return callable(getattr(PLUGINS[name].factory, "filter", None))


def is_score(name: str) -> bool:
    """Whether the plugin of ``name`` (a registered one) can score."""
    return callable(getattr(PLUGINS[name].factory, "score", None))


@dataclass(frozen=True)
class Profile:
    """What a framework runs: filters in order, (score plugin, weight) pairs, each plugin's args
    (from ``pluginConfig``) and the share of nodes to score (0: adaptive default)."""

    filters: tuple[str, ...] = DEFAULT_FILTERS
    scores: tuple[tuple[str, int], ...] = DEFAULT_SCORES
    plugin_args: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0


def build_framework(
    filters: Sequence[str] = DEFAULT_FILTERS,
    scores: Sequence[tuple[str, int]] = DEFAULT_SCORES,
    rng: random.Random | None = None,
    plugin_args: Mapping[str, Mapping[str, object]] | None = None,
    percentage_of_nodes_to_score: int = 0,
) -> Framework:
    """A Framework running the named plugins, one instance per name (a plugin both filtering and
    scoring is shared, so its CycleState is too).

    Raises:
        KeyError: an unknown plugin name.
    """
    args = plugin_args or {}
    instances: dict[str, object] = {}

    def instance(name: str) -> object:
        if name not in instances:
            instances[name] = PLUGINS[name].factory(**args.get(name, {}))
        return instances[name]

    filter_plugins: list[FilterPlugin] = [instance(name) for name in filters]  # type: ignore[misc]
    score_plugins: list[tuple[ScorePlugin, int]] = [(instance(name), w) for name, w in scores]  # type: ignore[misc]
    return Framework(filter_plugins, score_plugins, rng, percentage_of_nodes_to_score)


def framework_for(profile: Profile, rng: random.Random | None = None) -> Framework:
    return build_framework(profile.filters, profile.scores, rng, profile.plugin_args,
                           profile.percentage_of_nodes_to_score)
