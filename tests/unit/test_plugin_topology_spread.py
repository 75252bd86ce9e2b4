"""Table tests of the PodTopologySpread plugin: DoNotSchedule filter (maxSkew, minDomains, node
inclusion policies, matchLabelKeys) and ScheduleAnyway score."""

from __future__ import annotations

import pytest
from plugin_scores import plugin_scores

from pymaster.api import objects_pb2
from pymaster.api.manifest import from_dict
from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.pod_topology_spread import MISSING_LABEL_REASON, REASON, PodTopologySpread

PLUGIN = PodTopologySpread()
ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"
WEB = {"app": "web"}
OK = Status.success()
SKEW = Status.unschedulable(REASON)
MISSING = Status.unschedulable(MISSING_LABEL_REASON)


def _constraint(key: str = ZONE, when: str = "DoNotSchedule", max_skew: int = 1, **extra) -> dict:
    return {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": WEB},
        **extra,
    }


def _pod(name: str = "new", labels: dict | None = None, *constraints: dict, **spec) -> PodInfo:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.labels.update(WEB if labels is None else labels)
    pod.spec.CopyFrom(
        from_dict(
            {
                "containers": [{"name": "app", "image": "busybox"}],
                "topologySpreadConstraints": list(constraints),
                **spec,
            },
            objects_pb2.PodSpec,
        )
    )
    return PodInfo.from_pod(pod)


def _node(name: str, zone: str | None, web_pods: int = 0, taint: str = "", **labels: str) -> NodeInfo:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.metadata.labels[HOST] = name
    node.metadata.labels.update(labels)
    if zone:
        node.metadata.labels[ZONE] = zone
    if taint:
        node.spec.taints.add(key=taint, effect="NoSchedule")
    return NodeInfo.from_node(node, [_pod(f"{name}-{i}").pod for i in range(web_pods)])


def _filter_all(pod: PodInfo, nodes: list[NodeInfo]):
    state: dict = {}
    pre = PLUGIN.pre_filter(state, pod, Snapshot(nodes))
    if not pre.ok:
        return pre
    return {node.name: PLUGIN.filter(state, pod, node) for node in nodes}


def test_pods_without_hard_constraints_are_skipped():
    nodes = [_node("a", "z1")]
    assert _filter_all(_pod(), nodes) == Status.skip()
    assert _filter_all(_pod("new", None, _constraint(when="ScheduleAnyway")), nodes) == Status.skip()


def test_max_skew_by_zone():
    nodes = [_node("a", "z1", 2), _node("b", "z1"), _node("c", "z2", 1), _node("d", None)]
    # z1 has 2, z2 has 1: adding to z1 makes skew 2.
    assert _filter_all(_pod("new", None, _constraint()), nodes) == {
        "a": SKEW,
        "b": SKEW,
        "c": OK,
        "d": MISSING,
    }
    assert _filter_all(_pod("new", None, _constraint(max_skew=2)), nodes) == {
        "a": OK,
        "b": OK,
        "c": OK,
        "d": MISSING,
    }


def test_a_pod_not_matching_its_own_selector_does_not_add_to_the_skew():
    nodes = [_node("a", "z1", 1), _node("b", "z2")]
    assert _filter_all(_pod("new", {"app": "other"}, _constraint()), nodes) == {"a": OK, "b": OK}


def test_min_domains_treats_the_minimum_as_zero_while_domains_are_missing():
    nodes = [_node("a", "z1", 1), _node("b", "z2", 1)]
    assert _filter_all(_pod("new", None, _constraint()), nodes) == {"a": OK, "b": OK}
    assert _filter_all(_pod("new", None, _constraint(minDomains=3)), nodes) == {"a": SKEW, "b": SKEW}


def test_node_affinity_policy_honor_counts_only_matching_nodes():
    nodes = [_node("a", "z1", 1, pool="x"), _node("b", "z2", 0, pool="y"), _node("c", "z3", 1, pool="x")]
    # Honor (default): z2's only node does not match the nodeSelector, so z2 is no domain and
    # the minimum is 1.
    honor = _pod("new", None, _constraint(), nodeSelector={"pool": "x"})
    assert _filter_all(honor, nodes)["a"] == OK
    ignore = _pod("new", None, _constraint(nodeAffinityPolicy="Ignore"), nodeSelector={"pool": "x"})
    assert _filter_all(ignore, nodes)["a"] == SKEW


def test_node_taints_policy_honor_leaves_out_untolerated_nodes():
    nodes = [_node("a", "z1", 1), _node("b", "z2", 0, taint="dedicated")]
    # Ignore (default): z2 counts with 0 pods, so z1 would reach skew 2.
    assert _filter_all(_pod("new", None, _constraint()), nodes)["a"] == SKEW
    assert _filter_all(_pod("new", None, _constraint(nodeTaintsPolicy="Honor")), nodes)["a"] == OK


def test_match_label_keys_narrow_the_selector_to_the_pods_own_values():
    nodes = [_node("a", "z1"), _node("b", "z2")]
    for i in range(2):  # two pods of revision 1 in z1
        nodes[0].add_pod(_pod(f"r1-{i}", {**WEB, "rev": "1"}))
    constraint = _constraint(matchLabelKeys=["rev"])
    assert _filter_all(_pod("new", {**WEB, "rev": "2"}, constraint), nodes) == {"a": OK, "b": OK}
    assert _filter_all(_pod("new", {**WEB, "rev": "1"}, constraint), nodes) == {"a": SKEW, "b": OK}


def test_terminating_and_other_namespace_pods_do_not_count():
    nodes = [_node("a", "z1"), _node("b", "z2")]
    leaving = _pod("leaving").pod
    leaving.metadata.deletion_timestamp.GetCurrentTime()
    nodes[0].add_pod(leaving)
    elsewhere = _pod("elsewhere").pod
    elsewhere.metadata.namespace = "other"
    nodes[0].add_pod(elsewhere)
    assert _filter_all(_pod("new", None, _constraint()), nodes) == {"a": OK, "b": OK}


def _scores(pod: PodInfo, nodes: list[NodeInfo], feasible: list[NodeInfo] | None = None):
    return plugin_scores(PLUGIN, pod, nodes, feasible, pre_filter=True)


@pytest.mark.parametrize("key", [HOST, ZONE])
def test_score_prefers_the_emptier_domain(key):
    nodes = [_node("a", "z1", 2), _node("b", "z2", 1), _node("c", "z3", 0)]
    scores = _scores(_pod("new", None, _constraint(key, "ScheduleAnyway")), nodes)
    assert scores["c"] == 100
    assert scores["c"] > scores["b"] > scores["a"]


def test_the_array_form_answers_only_for_pods_without_soft_constraints():
    arrays = NodeArrays([_node("a", "z1"), _node("b", "z2")])
    assert PLUGIN.score_array({}, _pod("new", None, _constraint()), arrays) is EQUAL
    assert PLUGIN.score_array({}, _pod("new", None, _constraint(ZONE, "ScheduleAnyway")), arrays) is None


def test_score_gives_zero_to_nodes_without_the_topology_key_and_is_skipped_without_soft_constraints():
    nodes = [_node("a", "z1", 1), _node("b", None)]
    assert _scores(_pod("new", None, _constraint(ZONE, "ScheduleAnyway")), nodes) == {"a": 100, "b": 0}
    assert _scores(_pod("new", None, _constraint()), nodes) is None


def test_score_counts_pods_of_infeasible_nodes_in_a_feasible_domain():
    nodes = [_node("a", "z1", 3), _node("b", "z1"), _node("c", "z2", 1)]
    scores = _scores(_pod("new", None, _constraint(ZONE, "ScheduleAnyway")), nodes, feasible=nodes[1:])
    assert scores["c"] > scores["b"]
