"""The scheduler's configuration file: kube-scheduler's merge of enabled/disabled plugins and
weights, percentageOfNodesToScore, pluginConfig, and every refusal naming its field."""

from __future__ import annotations

import pytest
import yaml

from pymaster.app import MasterApp
from pymaster.scheduler.config import ConfigError, load_config, parse_config
from pymaster.scheduler.plugin_registry import DEFAULT_FILTERS, DEFAULT_SCORES, Profile, framework_for
from pymaster.scheduler.plugins.resources_fit import NodeResourcesFit

HEAD = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"


def parse(text: str) -> Profile:
    return parse_config(yaml.safe_load(HEAD + text))


def test_empty_configuration_is_the_default_profile():
    assert parse("") == Profile()
    assert parse("profiles: [{schedulerName: default-scheduler}]") == Profile()


def test_disable_and_enable_with_weights():
    profile = parse("""
profiles:
- plugins:
    filter:
      disabled: [{name: NodePorts}]
    score:
      enabled: [{name: NodeResourcesFit, weight: 5}]
      disabled: [{name: NodeResourcesBalancedAllocation}]
""")
    assert profile.filters == tuple(n for n in DEFAULT_FILTERS if n != "NodePorts")
    # A default plugin enabled again keeps its place with the new weight, as kube-scheduler merges.
    assert profile.scores == tuple(
        (name, 5 if name == "NodeResourcesFit" else weight)
        for name, weight in DEFAULT_SCORES
        if name != "NodeResourcesBalancedAllocation"
    )


def test_star_disables_every_default_and_enabled_ones_come_in_order():
    profile = parse("""
profiles:
- plugins:
    filter:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit}, {name: NodeUnschedulable}]
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesBalancedAllocation}]
""")
    assert profile.filters == ("NodeResourcesFit", "NodeUnschedulable")
    assert profile.scores == (("NodeResourcesBalancedAllocation", 1),)  # the default weight


def test_percentage_top_level_and_per_profile():
    assert parse("percentageOfNodesToScore: 40").percentage_of_nodes_to_score == 40
    both = parse("percentageOfNodesToScore: 40\nprofiles: [{percentageOfNodesToScore: 70}]")
    assert both.percentage_of_nodes_to_score == 70


def test_plugin_config_scoring_strategy_reaches_the_plugin():
    profile = parse("""
profiles:
- pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 3}, {name: memory, weight: 1}]
""")
    assert profile.plugin_args == {"NodeResourcesFit": {"strategy": "MostAllocated",
                                                        "resources": {"cpu": 3, "memory": 1}}}
    framework = framework_for(profile)
    fit = next(p for p in framework.filters if isinstance(p, NodeResourcesFit))
    assert (fit.strategy, fit.resources) == ("MostAllocated", {"cpu": 3, "memory": 1})
    assert next(p for p, _ in framework.scores if isinstance(p, NodeResourcesFit)) is fit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leaderElection: {}", "leaderElection: unknown field"),
        ("profiles: [{plugins: {filter: {enabled: [{name: Foo}]}}}]",
         'profiles[0].plugins.filter.enabled[0].name: Unsupported value: "Foo": supported values: '),
        ("profiles: [{plugins: {score: {disabled: [{name: Bar}]}}}]",
         'profiles[0].plugins.score.disabled[0].name: Unsupported value: "Bar"'),
        ("profiles: [{plugins: {preFilter: {}}}]",
         'profiles[0].plugins.preFilter: Unsupported value: "preFilter": supported values: '
         '"filter", "score"'),
        ("profiles: [{plugins: {score: {enabled: [{name: NodeUnschedulable}]}}}]",
         'profiles[0].plugins.score.enabled[0].name: Invalid value: "NodeUnschedulable": not a score plugin'),
        ("profiles: [{plugins: {score: {enabled: [{name: NodeResourcesFit, weight: -1}]}}}]",
         "profiles[0].plugins.score.enabled[0].weight: Invalid value: -1: must be in the range [0, 100]"),
        ("percentageOfNodesToScore: 101", "percentageOfNodesToScore: Invalid value: 101"),
        ("profiles: [{}, {}]", "profiles: Too many"),
        ("profiles: [{schedulerName: other}]", 'profiles[0].schedulerName: Unsupported value: "other"'),
        ("profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Foo}}}]}]",
         'profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: "Foo": supported values: '
         '"LeastAllocated", "MostAllocated"'),
        ("profiles: [{pluginConfig: [{name: NodeName, args: {x: 1}}]}]",
         "profiles[0].pluginConfig[0].args: plugin NodeName takes no args"),
        ("profiles: [{plugins: {filter: {enabled: [{name: NodePorts, weight: 2}]}}}]",
         "profiles[0].plugins.filter.enabled[0].weight: unknown field"),
    ],
)
def test_refusals_name_the_field(text, message):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value).startswith("--config: " + message), str(err.value)


def test_wrong_kind_and_version_refused():
    with pytest.raises(ConfigError, match='apiVersion: Unsupported value: "v1"'):
        parse_config({"apiVersion": "v1", "kind": "KubeSchedulerConfiguration"})
    with pytest.raises(ConfigError, match='kind: Unsupported value: "Pod"'):
        parse_config({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "Pod"})


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "sched.yaml"
    path.write_text(HEAD + "profiles: [{plugins: {score: {disabled: [{name: '*'}]}}}]\n")
    assert load_config(path).scores == ()
    path.write_text("profiles: [\n")
    with pytest.raises(ConfigError, match=f"--config {path}: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="--config .*missing.yaml: No such file"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_follow_kube_scheduler_weights():
    assert dict(DEFAULT_SCORES) == {
        "TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2, "InterPodAffinity": 2,
        "NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1, "SelectorSpread": 1,
    }
    assert DEFAULT_FILTERS[0] == "NodeUnschedulable"


def test_a_refused_file_stops_the_master_before_it_writes_anything(tmp_path):
    path = tmp_path / "sched.yaml"
    path.write_text(HEAD + "percentageOfNodesToScore: 101\n")
    with pytest.raises(ConfigError, match="percentageOfNodesToScore"):
        MasterApp(tmp_path / "data", "127.0.0.1:0", "127.0.0.1:0", scheduler_config=str(path))
    assert not (tmp_path / "data").exists()
