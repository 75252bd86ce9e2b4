"""The scheduler's configuration file (``pymaster --config PATH``): a KubeSchedulerConfiguration
(kubescheduler.config.k8s.io/v1) subset, read into a Profile.

Accepted::

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 50          # 0..100; 0 or unset: adaptive (50% - nodes/125, >= 5%)
    profiles:                              # at most one, schedulerName default-scheduler
    - schedulerName: default-scheduler
      percentageOfNodesToScore: 30         # overrides the top-level one
      plugins:
        filter: {enabled: [{name: NodePorts}], disabled: [{name: "*"}]}
        score:
          enabled: [{name: NodeResourcesFit, weight: 5}]
          disabled: [{name: NodeResourcesBalancedAllocation}]
      pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated            # or LeastAllocated (default)
            resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
      - name: NodeResourcesBalancedAllocation
        args: {resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]}

Merging follows kube-scheduler: per extension point, the defaults minus the disabled ones ("*":
all), an enabled default keeps its place with the given weight, other enabled plugins are
appended in order; a weight of 0 or none means the plugin's default weight (1 for a plugin that
has none). Anything else (unknown fields, plugin names, extension points pykube does not run,
several profiles) is refused at start with the field path, and pymaster exits 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pymaster.scheduler.plugin_registry import (
    DEFAULT_FILTERS,
    DEFAULT_SCORES,
    PLUGINS,
    Profile,
    is_filter,
    is_score,
)
from pymaster.scheduler.plugins.least_allocated import STRATEGIES

API_VERSION = "kubescheduler.config.k8s.io/v1"
KIND = "KubeSchedulerConfiguration"
SCHEDULER_NAME = "default-scheduler"
EXTENSION_POINTS = ("filter", "score")
MAX_WEIGHT = 100


class ConfigError(ValueError):
    """The configuration file is refused; the message names the file and the field."""


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _unsupported(path: str, value: object, supported: tuple[str, ...] | list[str]) -> ConfigError:
    values = ", ".join(f'"{v}"' for v in sorted(supported))
    return _fail(path, f'Unsupported value: "{value}": supported values: {values}')


def _mapping(path: str, value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, "Invalid value: expected an object")
    return value


def _list(path: str, value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, "Invalid value: expected a list")
    return value


def _only(path: str, obj: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            prefix = f"{path}." if path else ""
            raise _fail(f"{prefix}{key}", f"unknown field (supported: {', '.join(allowed)})")


def _int(path: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"Invalid value: {value!r}: must be an integer")
    if not low <= value <= high:
        raise _fail(path, f"Invalid value: {value}: must be in the range [{low}, {high}]")
    return value


def _plugin_name(path: str, value: object) -> str:
    name = _mapping(path, value).get("name")
    if name == "*" or name in PLUGINS:
        return name
    raise _unsupported(f"{path}.name", name, list(PLUGINS))


def _resources(path: str, value: object) -> dict[str, int]:
    resources: dict[str, int] = {}
    for i, item in enumerate(_list(path, value)):
        item = _mapping(f"{path}[{i}]", item)
        _only(f"{path}[{i}]", item, ("name", "weight"))
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{path}[{i}].name", "Required value")
        resources[name] = _int(f"{path}[{i}].weight", item.get("weight", 1), 1, MAX_WEIGHT)
    return resources


def _plugin_args(path: str, name: str, args: Mapping[str, Any]) -> dict[str, object]:
    """The keyword arguments of the plugin's factory from its pluginConfig args."""
    if name == "NodeResourcesFit":
        _only(path, args, ("scoringStrategy",))
        strategy = _mapping(f"{path}.scoringStrategy", args.get("scoringStrategy"))
        _only(f"{path}.scoringStrategy", strategy, ("type", "resources"))
        kind = strategy.get("type", "LeastAllocated")
        if kind not in STRATEGIES:
            raise _unsupported(f"{path}.scoringStrategy.type", kind, STRATEGIES)
        out: dict[str, object] = {"strategy": kind}
        if "resources" in strategy:
            out["resources"] = _resources(f"{path}.scoringStrategy.resources", strategy["resources"])
        return out
    if name == "NodeResourcesBalancedAllocation":
        _only(path, args, ("resources",))
        if "resources" not in args:
            return {}
        return {"resources": _resources(f"{path}.resources", args["resources"])}
    if args:
        raise _fail(path, f"plugin {name} takes no args")
    return {}


def _merge(path: str, point: str, spec: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The plugins of one extension point: (name, weight) in order."""
    _only(path, spec, ("enabled", "disabled"))
    defaults: list[tuple[str, int]] = (
        [(name, 0) for name in DEFAULT_FILTERS] if point == "filter" else list(DEFAULT_SCORES)
    )
    can = is_filter if point == "filter" else is_score
    disabled = {_plugin_name(f"{path}.disabled[{i}]", item)
                for i, item in enumerate(_list(f"{path}.disabled", spec.get("disabled")))}
    enabled: dict[str, int] = {}
    for i, item in enumerate(_list(f"{path}.enabled", spec.get("enabled"))):
        item_path = f"{path}.enabled[{i}]"
        name = _plugin_name(item_path, item)
        if name == "*" or not can(name):
            raise _fail(f"{item_path}.name", f'Invalid value: "{name}": not a {point} plugin')
        _only(item_path, item, ("name", "weight") if point == "score" else ("name",))
        weight = _int(f"{item_path}.weight", item.get("weight", 0), 0, MAX_WEIGHT) if point == "score" else 0
        enabled[name] = weight
    merged: list[tuple[str, int]] = []
    for name, weight in defaults:
        if "*" in disabled or name in disabled:
            continue
        merged.append((name, enabled.pop(name, 0) or weight))
    default_weights = dict(DEFAULT_SCORES)
    merged.extend((name, weight or default_weights.get(name, 1)) for name, weight in enabled.items())
    return merged


def parse_config(document: object, source: str = "--config") -> Profile:
    """The Profile a parsed KubeSchedulerConfiguration document asks for.

    Raises:
        ConfigError: anything refused; the message starts with ``source`` and names the field.
    """
    try:
        return _parse(_mapping("", document))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _parse(doc: Mapping[str, Any]) -> Profile:
    _only("", doc, ("apiVersion", "kind", "percentageOfNodesToScore", "profiles"))
    if doc.get("apiVersion") != API_VERSION:
        raise _unsupported("apiVersion", doc.get("apiVersion"), (API_VERSION,))
    if doc.get("kind") != KIND:
        raise _unsupported("kind", doc.get("kind"), (KIND,))
    percentage = _int("percentageOfNodesToScore", doc.get("percentageOfNodesToScore", 0), 0, 100)
    profiles = _list("profiles", doc.get("profiles"))
    if len(profiles) > 1:
        raise _fail("profiles", "Too many: only one profile (default-scheduler) is supported")
    if not profiles:
        return Profile(percentage_of_nodes_to_score=percentage)
    profile = _mapping("profiles[0]", profiles[0])
    _only("profiles[0]", profile, ("schedulerName", "percentageOfNodesToScore", "plugins", "pluginConfig"))
    name = profile.get("schedulerName", SCHEDULER_NAME)
    if name != SCHEDULER_NAME:
        raise _unsupported("profiles[0].schedulerName", name, (SCHEDULER_NAME,))
    if profile.get("percentageOfNodesToScore") is not None:
        percentage = _int("profiles[0].percentageOfNodesToScore", profile["percentageOfNodesToScore"], 0, 100)
    plugins = _mapping("profiles[0].plugins", profile.get("plugins"))
    for point in plugins:
        if point not in EXTENSION_POINTS:
            raise _unsupported(f"profiles[0].plugins.{point}", point, EXTENSION_POINTS)
    filters = _merge("profiles[0].plugins.filter", "filter", _mapping("profiles[0].plugins.filter",
                                                                      plugins.get("filter")))
    scores = _merge("profiles[0].plugins.score", "score", _mapping("profiles[0].plugins.score",
                                                                   plugins.get("score")))
    args: dict[str, dict[str, object]] = {}
    for i, item in enumerate(_list("profiles[0].pluginConfig", profile.get("pluginConfig"))):
        path = f"profiles[0].pluginConfig[{i}]"
        item = _mapping(path, item)
        _only(path, item, ("name", "args"))
        plugin = _plugin_name(path, item)
        if plugin == "*":
            raise _unsupported(f"{path}.name", plugin, list(PLUGINS))
        if plugin in args:
            raise _fail(f"{path}.name", f'Duplicate value: "{plugin}"')
        args[plugin] = _plugin_args(f"{path}.args", plugin, _mapping(f"{path}.args", item.get("args")))
    return Profile(tuple(n for n, _ in filters), tuple(scores), args, percentage)


def load_config(path: str | Path) -> Profile:
    """Reads and parses the file at ``path``.

    Raises:
        ConfigError: unreadable, not YAML, or refused (the message names the file and field).
    """
    source = f"--config {path}"
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{source}: {err.strerror or err}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    return parse_config(document, source)
