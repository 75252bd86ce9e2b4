"""Table tests of the SelectorSpread score: pods of the same controller owner spread over nodes
(and zones)."""

from __future__ import annotations

from plugin_scores import plugin_scores

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.selector_spread import ZONE_LABEL, SelectorSpread

PLUGIN = SelectorSpread()


def _pod(name: str, owner: str = "", namespace: str = "default", controller: bool = True) -> PodInfo:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.spec.containers.add(name="app", image="busybox")
    if owner:
        pod.metadata.owner_references.add(
            api_version="apps/v1", kind="ReplicaSet", name=owner, uid=f"uid-{owner}", controller=controller
        )
    return PodInfo.from_pod(pod)


def _node(name: str, *pods: PodInfo, zone: str = "") -> NodeInfo:
    node = objects_pb2.Node()
    node.metadata.name = name
    if zone:
        node.metadata.labels[ZONE_LABEL] = zone
    return NodeInfo.from_node(node, pods)


def _scores(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float] | None:
    return plugin_scores(PLUGIN, pod, nodes)


def test_fewer_pods_of_the_same_owner_is_better():
    nodes = [
        _node("a", _pod("r1", "rs"), _pod("r2", "rs")),
        _node("b", _pod("r3", "rs"), _pod("o1", "other")),
        _node("c", _pod("o2", "other"), _pod("o3", "other")),
    ]
    assert _scores(_pod("new", "rs"), nodes) == {"a": 0, "b": 50, "c": 100}


def test_other_namespaces_terminating_pods_and_non_controller_owners_do_not_count():
    leaving = _pod("r2", "rs").pod
    leaving.metadata.deletion_timestamp.GetCurrentTime()
    nodes = [
        _node("a", _pod("r1", "rs", namespace="other"), _pod("r3", "rs", controller=False)),
        _node("b", _pod("r4", "rs")),
        _node("c"),
    ]
    nodes[0].add_pod(leaving)
    assert _scores(_pod("new", "rs"), nodes) == {"a": 100, "b": 0, "c": 100}


def test_no_pod_of_the_owner_anywhere_scores_every_node_100():
    assert _scores(_pod("new", "rs"), [_node("a"), _node("b")]) == {"a": 100, "b": 100}


def test_zone_counts_weigh_two_thirds():
    nodes = [
        _node("a", _pod("r1", "rs"), zone="z1"),
        _node("b", zone="z1"),
        _node("c", zone="z2"),
    ]
    scores = _scores(_pod("new", "rs"), nodes)
    # b is empty but shares z1 with a: 100 * 1/3 + 0 * 2/3; c is empty in an empty zone.
    assert scores["a"] == 0
    assert round(scores["b"], 6) == round(100 / 3, 6)
    assert scores["c"] == 100


def test_the_array_form_answers_only_for_pods_without_a_controller_owner():
    arrays = NodeArrays([_node("a"), _node("b")])
    assert PLUGIN.score_array({}, _pod("new"), arrays) is EQUAL
    assert PLUGIN.score_array({}, _pod("new", "rs"), arrays) is None


def test_pods_without_a_controller_owner_are_skipped():
    assert _scores(_pod("new"), [_node("a")]) is None
    assert _scores(_pod("new", "rs", controller=False), [_node("a")]) is None
