"""The plugin registry: plugin name -> plugin, and the default profile (which filters run, in
which order, and the score weights), so a profile can be chosen by names."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pymaster.scheduler.framework import FilterPlugin, Framework, ScorePlugin
from pymaster.scheduler.plugins.least_allocated import LeastAllocated
from pymaster.scheduler.plugins.node_ready import NodeReady
from pymaster.scheduler.plugins.node_selector import NodeSelector
from pymaster.scheduler.plugins.node_unschedulable import NodeUnschedulable
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit

FILTER_PLUGINS: dict[str, FilterPlugin] = {
    plugin.name: plugin for plugin in (NodeUnschedulable(), NodeReady(), NodeSelector(), NodeResourcesFit())
}
SCORE_PLUGINS: dict[str, ScorePlugin] = {plugin.name: plugin for plugin in (LeastAllocated(),)}

# Cheap checks first: a node rejected early never reaches the resource arithmetic.
DEFAULT_FILTERS = ("NodeUnschedulable", "NodeReady", "NodeSelector", "NodeResourcesFit")
DEFAULT_SCORES = (("LeastAllocated", 1),)


def build_framework(
    filters: Sequence[str] = DEFAULT_FILTERS,
    scores: Sequence[tuple[str, int]] = DEFAULT_SCORES,
    rng: random.Random | None = None,
) -> Framework:
    """A Framework running the named plugins.

    Raises:
        KeyError: an unknown plugin name.
    """
    return Framework(
        [FILTER_PLUGINS[name] for name in filters],
        [(SCORE_PLUGINS[name], weight) for name, weight in scores],
        rng,
    )
