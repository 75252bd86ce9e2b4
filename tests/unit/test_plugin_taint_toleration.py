"""Table tests of the TaintToleration plugin (NoSchedule/NoExecute filter, PreferNoSchedule score)."""

from __future__ import annotations

import pytest
from plugin_scores import plugin_scores

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo, Status
from pymaster.scheduler.plugins.taint_toleration import TaintToleration

PLUGIN = TaintToleration()


def _pod(*tolerations: dict) -> PodInfo:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    pod.spec.containers.add(name="app", image="busybox")
    for toleration in tolerations:
        pod.spec.tolerations.add(**toleration)
    return PodInfo.from_pod(pod)


def _node(name: str = "n1", *taints: str) -> NodeInfo:
    """Taints written as kubectl does: ``key=value:Effect`` or ``key:Effect``."""
    node = objects_pb2.Node()
    node.metadata.name = name
    for taint in taints:
        key_value, effect = taint.split(":")
        key, _, value = key_value.partition("=")
        node.spec.taints.add(key=key, value=value, effect=effect)
    return NodeInfo.from_node(node)


def _untolerated(key: str, value: str = "") -> Status:
    return Status.unschedulable(f"node(s) had untolerated taint {{{key}: {value}}}")


@pytest.mark.parametrize(
    ("tolerations", "taints", "expected"),
    [
        ((), (), Status.success()),
        ((), ("dedicated=db:NoSchedule",), _untolerated("dedicated", "db")),
        ((), ("dedicated=db:NoExecute",), _untolerated("dedicated", "db")),
        ((), ("dedicated=db:PreferNoSchedule",), Status.success()),
        (
            ({"key": "dedicated", "value": "db", "effect": "NoSchedule"},),
            ("dedicated=db:NoSchedule",),
            Status.success(),
        ),
        # Equal (the default operator) compares the value; Exists does not.
        (
            ({"key": "dedicated", "value": "web"},),
            ("dedicated=db:NoSchedule",),
            _untolerated("dedicated", "db"),
        ),
        (({"key": "dedicated", "operator": "Exists"},), ("dedicated=db:NoSchedule",), Status.success()),
        # The effect must match when set.
        (
            ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"},),
            ("dedicated=db:NoSchedule",),
            _untolerated("dedicated", "db"),
        ),
        # An empty key with Exists tolerates everything.
        (({"operator": "Exists"},), ("a:NoSchedule", "b=c:NoExecute"), Status.success()),
        # The first untolerated taint is reported.
        (
            ({"key": "a", "operator": "Exists"},),
            ("a:NoSchedule", "b=1:NoSchedule", "c:NoExecute"),
            _untolerated("b", "1"),
        ),
        # The default tolerations of every pod (not-ready/unreachable for 300 s) tolerate those taints.
        (
            (
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "toleration_seconds": 300,
                },
            ),
            ("node.kubernetes.io/unreachable:NoExecute",),
            Status.success(),
        ),
    ],
)
def test_filter(tolerations, taints, expected):
    assert PLUGIN.filter({}, _pod(*tolerations), _node("n1", *taints)) == expected


def _scores(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float] | None:
    return plugin_scores(PLUGIN, pod, nodes)


def test_score_prefers_fewer_untolerated_prefer_no_schedule_taints():
    nodes = [
        _node("clean"),
        _node("one", "a:PreferNoSchedule", "x:NoSchedule"),
        _node("two", "a:PreferNoSchedule", "b:PreferNoSchedule"),
    ]
    assert _scores(_pod(), nodes) == {"clean": 100, "one": 50, "two": 0}


def test_score_counts_only_tolerations_without_effect_or_with_prefer_no_schedule():
    nodes = [_node("a", "a:PreferNoSchedule"), _node("b", "b:PreferNoSchedule")]
    # A NoSchedule toleration of "a" does not help with a PreferNoSchedule taint.
    assert _scores(_pod({"key": "a", "operator": "Exists", "effect": "NoSchedule"}), nodes) == {
        "a": 0,
        "b": 0,
    }
    assert _scores(_pod({"key": "a", "operator": "Exists"}), nodes) == {"a": 100, "b": 0}
    assert _scores(_pod({"key": "b", "operator": "Exists", "effect": "PreferNoSchedule"}), nodes) == {
        "a": 0,
        "b": 100,
    }


def test_score_is_skipped_without_prefer_no_schedule_taints():
    assert _scores(_pod(), [_node("a"), _node("b", "x:NoSchedule")]) is None
