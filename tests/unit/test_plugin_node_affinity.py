"""Table tests of the NodeAffinity plugin (nodeSelector + required node affinity filter, preferred
node affinity score) over Pod/Node protos."""

from __future__ import annotations

import pytest
from plugin_scores import plugin_scores

from pymaster.api import objects_pb2
from pymaster.api.manifest import from_dict
from pymaster.scheduler.framework import Framework, NodeInfo, PodInfo, Snapshot, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.node_affinity import REASON, NodeAffinity

PLUGIN = NodeAffinity()
MISMATCH = Status.unschedulable(REASON)


def _pod(spec: dict | None = None) -> PodInfo:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    pod.spec.CopyFrom(
        from_dict({"containers": [{"name": "app", "image": "busybox"}], **(spec or {})}, objects_pb2.PodSpec)
    )
    return PodInfo.from_pod(pod)


def _node(name: str = "n1", **labels: str) -> NodeInfo:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.metadata.labels.update({k.replace("_", "-"): v for k, v in labels.items()})
    return NodeInfo.from_node(node)


def _required(*terms: dict) -> dict:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def _expr(key: str, operator: str, *values: str) -> dict:
    return {"key": key, "operator": operator, "values": list(values)}


def _filter(pod: PodInfo, node: NodeInfo) -> Status:
    state: dict = {}
    pre = PLUGIN.pre_filter(state, pod, Snapshot([node]))
    return pre if pre.skipped else PLUGIN.filter(state, pod, node)


def test_pod_without_selector_or_required_affinity_is_skipped():
    assert _filter(_pod(), _node(zone="a")) == Status.skip()
    preferred_only = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [_expr("zone", "In", "a")]}}
                ]
            }
        }
    }
    assert _filter(_pod(preferred_only), _node()) == Status.skip()


@pytest.mark.parametrize(
    ("spec", "labels", "expected"),
    [
        ({"nodeSelector": {"disk": "ssd"}}, {"disk": "ssd"}, Status.success()),
        ({"nodeSelector": {"disk": "ssd"}}, {"disk": "hdd"}, MISMATCH),
        ({"nodeSelector": {"disk": "ssd"}}, {}, MISMATCH),
        (_required({"matchExpressions": [_expr("zone", "In", "a", "b")]}), {"zone": "b"}, Status.success()),
        (_required({"matchExpressions": [_expr("zone", "In", "a", "b")]}), {"zone": "c"}, MISMATCH),
        (_required({"matchExpressions": [_expr("zone", "NotIn", "a")]}), {}, Status.success()),
        (_required({"matchExpressions": [_expr("zone", "NotIn", "a")]}), {"zone": "a"}, MISMATCH),
        (_required({"matchExpressions": [_expr("gpu", "Exists")]}), {"gpu": ""}, Status.success()),
        (_required({"matchExpressions": [_expr("gpu", "Exists")]}), {}, MISMATCH),
        (_required({"matchExpressions": [_expr("gpu", "DoesNotExist")]}), {"gpu": "1"}, MISMATCH),
        (_required({"matchExpressions": [_expr("gpu", "DoesNotExist")]}), {}, Status.success()),
        (_required({"matchExpressions": [_expr("cores", "Gt", "4")]}), {"cores": "8"}, Status.success()),
        (_required({"matchExpressions": [_expr("cores", "Gt", "4")]}), {"cores": "4"}, MISMATCH),
        (_required({"matchExpressions": [_expr("cores", "Gt", "4")]}), {"cores": "many"}, MISMATCH),
        (_required({"matchExpressions": [_expr("cores", "Lt", "4")]}), {"cores": "2"}, Status.success()),
        (_required({"matchExpressions": [_expr("cores", "Lt", "4")]}), {}, MISMATCH),
        # Terms are ORed, the requirements of one term ANDed.
        (
            _required(
                {"matchExpressions": [_expr("zone", "In", "a")]},
                {"matchExpressions": [_expr("zone", "In", "b")]},
            ),
            {"zone": "b"},
            Status.success(),
        ),
        (
            _required({"matchExpressions": [_expr("zone", "In", "a"), _expr("gpu", "Exists")]}),
            {"zone": "a"},
            MISMATCH,
        ),
        # An empty term matches nothing.
        (_required({}), {"zone": "a"}, MISMATCH),
        # nodeSelector AND affinity.
        (
            {"nodeSelector": {"disk": "ssd"}, **_required({"matchExpressions": [_expr("zone", "In", "a")]})},
            {"zone": "a"},
            MISMATCH,
        ),
    ],
)
def test_filter(spec, labels, expected):
    assert _filter(_pod(spec), _node(**labels)) == expected


@pytest.mark.parametrize(
    ("operator", "values", "node_name", "expected"),
    [
        ("In", ["n1"], "n1", Status.success()),
        ("In", ["n1"], "n2", MISMATCH),
        ("NotIn", ["n1"], "n2", Status.success()),
        ("NotIn", ["n1"], "n1", MISMATCH),
    ],
)
def test_filter_match_fields_metadata_name(operator, values, node_name, expected):
    spec = _required({"matchFields": [_expr("metadata.name", operator, *values)]})
    assert _filter(_pod(spec), _node(node_name)) == expected


def _preferred(*terms: tuple[int, dict]) -> dict:
    return {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": weight, "preference": term} for weight, term in terms
                ]
            }
        }
    }


def _scores(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, float] | None:
    return plugin_scores(PLUGIN, pod, nodes)


def test_score_sums_matching_weights_normalised_by_the_best_node():
    pod = _pod(
        _preferred(
            (20, {"matchExpressions": [_expr("zone", "In", "a")]}),
            (60, {"matchExpressions": [_expr("disk", "In", "ssd")]}),
        )
    )
    nodes = [
        _node("both", zone="a", disk="ssd"),
        _node("ssd", disk="ssd"),
        _node("zone", zone="a"),
        _node("none"),
    ]
    assert _scores(pod, nodes) == {"both": 100, "ssd": 75, "zone": 25, "none": 0}


def test_score_all_zero_stays_zero_and_pods_without_preferences_are_skipped():
    pod = _pod(_preferred((50, {"matchExpressions": [_expr("zone", "In", "z")]})))
    assert _scores(pod, [_node("a"), _node("b")]) == {"a": 0, "b": 0}
    assert _scores(_pod(), [_node("a")]) is None


def test_the_array_form_answers_only_for_pods_without_preferences():
    arrays = NodeArrays([_node("a"), _node("b")])
    assert PLUGIN.score_array({}, _pod(), arrays) is EQUAL
    preferring = _pod(_preferred((50, {"matchExpressions": [_expr("zone", "In", "z")]})))
    assert PLUGIN.score_array({}, preferring, arrays) is None


def test_framework_places_by_required_and_preferred_affinity():
    spec = _required({"matchExpressions": [_expr("zone", "In", "a", "b")]})
    spec["affinity"]["nodeAffinity"].update(
        _preferred((10, {"matchExpressions": [_expr("zone", "In", "b")]}))["affinity"]["nodeAffinity"]
    )
    nodes = [_node("c1", zone="c"), _node("a1", zone="a"), _node("b1", zone="b")]
    framework = Framework([PLUGIN], [(PLUGIN, 2)])
    assert framework.schedule(_pod(spec), Snapshot(nodes)).node_name == "b1"
    only_c = Framework([PLUGIN], [(PLUGIN, 2)]).schedule(_pod(spec), Snapshot(nodes[:1]))
    assert only_c.message == f"0/1 nodes are available: 1 {REASON}."
