"""Table tests of the InterPodAffinity plugin: required affinity/anti-affinity by topology key,
the existing pods' anti-affinity (symmetry), the first pod of a self-affine group, and the
preferred-terms score."""

from __future__ import annotations

import pytest
from plugin_scores import plugin_scores

from pymaster.api import objects_pb2
from pymaster.api.manifest import from_dict
from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot, Status
from pymaster.scheduler.node_arrays import EQUAL, NodeArrays
from pymaster.scheduler.plugins.inter_pod_affinity import (
    AFFINITY_REASON,
    ANTI_AFFINITY_REASON,
    EXISTING_ANTI_AFFINITY_REASON,
    InterPodAffinity,
)

PLUGIN = InterPodAffinity()
ZONE, HOST = "topology.kubernetes.io/zone", "kubernetes.io/hostname"


def _pod(name: str, labels: dict[str, str] | None = None, namespace: str = "default", **affinity) -> PodInfo:
    """``affinity``: podAffinity / podAntiAffinity in manifest form."""
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.metadata.labels.update(labels or {})
    spec = {"containers": [{"name": "app", "image": "busybox"}]}
    if affinity:
        spec["affinity"] = affinity
    pod.spec.CopyFrom(from_dict(spec, objects_pb2.PodSpec))
    return PodInfo.from_pod(pod)


def _term(topology_key: str, selector: dict | None = None, **extra) -> dict:
    term = {"topologyKey": topology_key, **extra}
    if selector is not None:
        term["labelSelector"] = {"matchLabels": selector}
    return term


def _required(*terms: dict) -> dict:
    return {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}


def _preferred(*terms: tuple[int, dict]) -> dict:
    return {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": w, "podAffinityTerm": t} for w, t in terms
        ]
    }


def _node(name: str, zone: str | None, *pods: PodInfo) -> NodeInfo:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.metadata.labels[HOST] = name
    if zone:
        node.metadata.labels[ZONE] = zone
    return NodeInfo.from_node(node, pods)


def _filter_all(pod: PodInfo, nodes: list[NodeInfo]) -> dict[str, Status] | Status:
    """Each node's filter status, or the pre_filter's status when it is not success."""
    state: dict = {}
    pre = PLUGIN.pre_filter(state, pod, Snapshot(nodes))
    if not pre.ok:
        return pre
    return {node.name: PLUGIN.filter(state, pod, node) for node in nodes}


OK = Status.success()
AFFINITY = Status.unschedulable(AFFINITY_REASON)
ANTI = Status.unschedulable(ANTI_AFFINITY_REASON)
EXISTING = Status.unschedulable(EXISTING_ANTI_AFFINITY_REASON)


def test_pods_without_terms_are_skipped_unless_an_existing_pod_repels_them():
    db = _pod("db", {"app": "db"})
    assert _filter_all(_pod("web", {"app": "web"}), [_node("a", "z1", db)]) == Status.skip()
    loner = _pod("loner", {"app": "loner"}, podAntiAffinity=_required(_term(HOST, {"app": "web"})))
    nodes = [_node("a", "z1", loner), _node("b", "z1")]
    assert _filter_all(_pod("web", {"app": "web"}), nodes) == {"a": EXISTING, "b": OK}
    assert _filter_all(_pod("db", {"app": "db"}), nodes) == Status.skip()


def test_required_anti_affinity_by_hostname_and_by_zone():
    web = {"app": "web"}
    nodes = [_node("a", "z1", _pod("w1", web)), _node("b", "z1"), _node("c", "z2")]
    by_host = _pod("w2", web, podAntiAffinity=_required(_term(HOST, web)))
    assert _filter_all(by_host, nodes) == {"a": ANTI, "b": OK, "c": OK}
    by_zone = _pod("w2", web, podAntiAffinity=_required(_term(ZONE, web)))
    assert _filter_all(by_zone, nodes) == {"a": ANTI, "b": ANTI, "c": OK}


def test_required_affinity_needs_a_matching_pod_in_the_nodes_domain():
    nodes = [
        _node("a", "z1", _pod("db", {"app": "db"})),
        _node("b", "z1"),
        _node("c", "z2"),
        _node("d", None),
    ]
    web = _pod("web", {"app": "web"}, podAffinity=_required(_term(ZONE, {"app": "db"})))
    assert _filter_all(web, nodes) == {"a": OK, "b": OK, "c": AFFINITY, "d": AFFINITY}


def test_first_pod_of_a_self_affine_group_goes_anywhere_with_the_topology_label():
    cache = {"app": "cache"}
    nodes = [_node("a", "z1"), _node("b", None)]
    first = _pod("c1", cache, podAffinity=_required(_term(ZONE, cache)))
    assert _filter_all(first, nodes) == {"a": OK, "b": AFFINITY}
    # Not when the pod does not match its own terms.
    other = _pod("x", {"app": "other"}, podAffinity=_required(_term(ZONE, cache)))
    assert _filter_all(other, nodes) == {"a": AFFINITY, "b": AFFINITY}


@pytest.mark.parametrize(
    ("term", "existing_namespace", "expected_a"),
    [
        (_term(HOST, {"app": "web"}), "default", ANTI),
        (_term(HOST, {"app": "web"}), "other", OK),  # default: the pod's own namespace only
        (_term(HOST, {"app": "web"}, namespaces=["other"]), "other", ANTI),
        (_term(HOST, {"app": "web"}, namespaceSelector={}), "other", ANTI),  # {}: every namespace
        (
            _term(
                HOST,
                {"app": "web"},
                namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "other"}},
            ),
            "other",
            ANTI,
        ),
        (
            _term(
                HOST, {"app": "web"}, namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "x"}}
            ),
            "other",
            OK,
        ),
        (_term(HOST), "default", OK),  # no labelSelector: selects no pod
        (_term(HOST, {}), "default", ANTI),  # empty selector: every pod
    ],
)
def test_anti_affinity_namespaces_and_selectors(term, existing_namespace, expected_a):
    nodes = [_node("a", "z1", _pod("w1", {"app": "web"}, namespace=existing_namespace)), _node("b", "z1")]
    pod = _pod("w2", {"app": "web"}, podAntiAffinity=_required(term))
    assert _filter_all(pod, nodes) == {"a": expected_a, "b": OK}


def test_match_label_keys_and_mismatch_label_keys_use_the_pods_own_values():
    nodes = [_node("a", "z1", _pod("v1", {"app": "web", "rev": "1"})), _node("b", "z1")]
    same_rev = _term(HOST, {"app": "web"}, matchLabelKeys=["rev"])
    assert _filter_all(_pod("n", {"app": "web", "rev": "2"}, podAntiAffinity=_required(same_rev)), nodes) == {
        "a": OK,
        "b": OK,
    }
    assert _filter_all(_pod("n", {"app": "web", "rev": "1"}, podAntiAffinity=_required(same_rev)), nodes) == {
        "a": ANTI,
        "b": OK,
    }
    other_rev = _term(HOST, {"app": "web"}, mismatchLabelKeys=["rev"])
    assert _filter_all(
        _pod("n", {"app": "web", "rev": "2"}, podAntiAffinity=_required(other_rev)), nodes
    ) == {"a": ANTI, "b": OK}


def test_affinity_is_checked_before_anti_affinity():
    nodes = [_node("a", "z1", _pod("w1", {"app": "web"})), _node("b", "z2")]
    pod = _pod(
        "w2",
        {"app": "web"},
        podAffinity=_required(_term(ZONE, {"app": "db"})),
        podAntiAffinity=_required(_term(HOST, {"app": "web"})),
    )
    # No db pod anywhere and the pod is not a db itself: affinity fails everywhere.
    assert _filter_all(pod, nodes) == {"a": AFFINITY, "b": AFFINITY}


def _scores(pod: PodInfo, nodes: list[NodeInfo], feasible: list[NodeInfo] | None = None):
    return plugin_scores(PLUGIN, pod, nodes, feasible, pre_filter=True)


def test_score_preferred_affinity_and_anti_affinity_weights():
    nodes = [
        _node("a", "z1", _pod("db", {"app": "db"})),
        _node("b", "z1", _pod("w", {"app": "web"})),
        _node("c", "z2"),
    ]
    pod = _pod(
        "n",
        {"app": "web"},
        podAffinity=_preferred((80, _term(ZONE, {"app": "db"}))),
        podAntiAffinity=_preferred((40, _term(HOST, {"app": "web"}))),
    )
    # a: +80; b: +80 -40; c: 0  -> min-max normalised.
    assert _scores(pod, nodes) == {"a": 100, "b": 50, "c": 0}


def test_score_counts_existing_pods_terms_and_pods_on_infeasible_nodes():
    friend = _pod("f", {"app": "f"}, podAffinity=_preferred((10, _term(ZONE, {"app": "web"}))))
    enemy = _pod("e", {"app": "e"}, podAntiAffinity=_preferred((10, _term(ZONE, {"app": "web"}))))
    sticky = _pod("s", {"app": "s"}, podAffinity=_required(_term(ZONE, {"app": "web"})))
    nodes = [_node("a", "z1", friend), _node("b", "z2", enemy), _node("c", "z3", sticky), _node("d", "z1")]
    web = _pod("web", {"app": "web"})
    # d is in a's zone: the friend there counts although a itself is not feasible.
    assert _scores(web, nodes, feasible=nodes[1:]) == {"b": 0, "c": 55, "d": 100}


def test_score_is_skipped_when_no_term_concerns_the_pod():
    nodes = [_node("a", "z1", _pod("db", {"app": "db"}))]
    assert _scores(_pod("web", {"app": "web"}), nodes) is None


def test_the_array_form_answers_only_when_no_term_can_concern_the_pod():
    plain = [_node("a", "z1", _pod("db", {"app": "db"}))]
    web = _pod("web", {"app": "web"})
    state: dict = {}
    PLUGIN.pre_filter(state, web, Snapshot(plain))
    assert PLUGIN.score_array(state, web, NodeArrays(plain)) is EQUAL
    assert PLUGIN.score_array({}, web, NodeArrays(plain)) is None  # no pre_filter scan: ask the scalar path
    loner = _pod("loner", {"app": "x"}, podAntiAffinity=_required(_term(HOST, {"app": "web"})))
    repelling = [_node("a", "z1", loner)]
    state = {}
    PLUGIN.pre_filter(state, web, Snapshot(repelling))
    assert PLUGIN.score_array(state, web, NodeArrays(repelling)) is None


def test_a_cache_kept_list_of_nodes_with_affinity_pods_replaces_the_scan():
    loner = _pod("loner", {"app": "loner"}, podAntiAffinity=_required(_term(HOST, {"app": "web"})))
    nodes = [_node("a", "z1", loner), _node("b", "z1")]
    kept = Snapshot(nodes)
    kept.have_pods_with_affinity = [nodes[0]]
    state: dict = {}
    assert PLUGIN.pre_filter(state, _pod("web", {"app": "web"}), kept) == OK
    assert PLUGIN.filter(state, _pod("web", {"app": "web"}), nodes[0]) == EXISTING
    # The cache says no node holds such a pod: the scan is not redone, the pod is skipped.
    kept.have_pods_with_affinity = []
    assert PLUGIN.pre_filter({}, _pod("web", {"app": "web"}), kept) == Status.skip()
