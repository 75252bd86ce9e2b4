"""Label and field selectors: parsing, errors and matching against dicts and proto objects."""

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.selectors import FieldSelector, LabelSelector, Requirement

LABELS = {"app": "web", "tier": "front", "env": "prod", "example.com/team": "a", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("   ", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # != matches objects without the label
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("env in (prod,staging)", True),
        ("env in ( staging , prod )", True),
        ("env in (dev)", False),
        ("missing in (x)", False),
        ("env notin (dev,test)", True),
        ("env notin (prod)", False),
        ("missing notin (x)", True),  # notin matches objects without the label
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app=web, env in (prod), !canary, tier", True),
        ("example.com/team=a", True),
        ("empty=", True),
        ("empty", True),
        ("app=", False),
        ("empty in (,x)", True),
    ],
)
def test_label_selector_matches(selector, matches):
    assert LabelSelector.parse(selector).matches(LABELS) is matches


def test_label_selector_parses_into_requirements():
    assert LabelSelector.parse("a=b, c!=d, e, !f, g in (h, i), j notin (k)").requirements == (
        Requirement("a", "=", frozenset({"b"})),
        Requirement("c", "!=", frozenset({"d"})),
        Requirement("e", "exists"),
        Requirement("f", "!"),
        Requirement("g", "in", frozenset({"h", "i"})),
        Requirement("j", "notin", frozenset({"k"})),
    )
    assert LabelSelector.parse("").empty()
    assert not LabelSelector.parse("a").empty()


def test_label_selector_matches_proto_maps_without_changing_them():
    pod = objects_pb2.Pod()
    pod.metadata.labels["app"] = "web"
    assert LabelSelector.parse("app=web,missing!=x,!other").matches(pod.metadata.labels)
    assert not LabelSelector.parse("missing in (x)").matches(pod.metadata.labels)
    assert dict(pod.metadata.labels) == {"app": "web"}


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("=a", "expected a label key, found '='"),
        ("a,", "expected a label key, found end of selector"),
        ("a,,b", "expected a label key, found ','"),
        ("!", "expected a label key, found end of selector"),
        ("a b", "unexpected 'b' after key 'a'"),
        ("a!", "unexpected '!' after key 'a'"),
        ("a=b=c", "expected ',' before '='"),
        ("a=b c", "expected ',' before 'c'"),
        ("a in", "expected '(' after in/notin"),
        ("a in x", "expected '(' after in/notin"),
        ("a in ()", "the value set of in/notin must not be empty"),
        ("a in (x", "expected ',' or ')' in a value set"),
        ("a in (x y)", "expected ',' or ')' in a value set"),
        ("a notin (x,", "expected ',' or ')' in a value set"),
        ("a=(", "expected ',' before '('"),
        ("A/b=c", 'invalid key "A/b": prefix part must be a lowercase RFC 1123 subdomain'),
        ("a b/c", "unexpected 'b/c' after key 'a'"),
        ("-a", 'invalid key "-a": name part must be at most 63 characters'),
        ("a=-b", 'invalid value "-b": must be at most 63 characters'),
        (f"a in (x,{'y' * 64})", "invalid value"),
    ],
)
def test_label_selector_errors(selector, message):
    with pytest.raises(ValidationError) as exc:
        LabelSelector.parse(selector)
    assert exc.value.field == "labelSelector"
    assert str(exc.value).startswith(f"labelSelector: invalid selector {selector!r}: {message}")


def _pod(name="web", namespace="default", node="", phase="Pending") -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.spec.node_name = node
    pod.status.phase = phase
    return pod


def _node(name="node-1", unschedulable=False) -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.spec.unschedulable = unschedulable
    return node


@pytest.mark.parametrize(
    ("selector", "obj", "matches"),
    [
        ("", _pod(), True),
        ("metadata.name=web", _pod(), True),
        ("metadata.name==web", _pod(), True),
        ("metadata.name = web", _pod(), True),
        ("metadata.name=db", _pod(), False),
        ("metadata.name!=db", _pod(), True),
        ("metadata.namespace=default", _pod(), True),
        ("metadata.namespace=team", _pod(), False),
        ("spec.nodeName=node-1", _pod(node="node-1"), True),
        ("spec.nodeName=node-1", _pod(), False),
        ("spec.nodeName=", _pod(), True),  # unscheduled pods
        ("spec.nodeName!=", _pod(node="node-1"), True),
        ("status.phase=Running", _pod(phase="Running"), True),
        ("status.phase!=Running", _pod(phase="Running"), False),
        ("status.phase!=Succeeded,status.phase!=Failed", _pod(phase="Running"), True),
        ("status.phase!=Succeeded,status.phase!=Failed", _pod(phase="Failed"), False),
        ("spec.nodeName=node-1,status.phase=Running", _pod(node="node-1", phase="Running"), True),
        ("metadata.name=node-1", _node(), True),
        ("spec.unschedulable=false", _node(), True),
        ("spec.unschedulable=true", _node(), False),
        ("spec.unschedulable=true", _node(unschedulable=True), True),
        ("spec.unschedulable!=true", _node(), True),
    ],
)
def test_field_selector_matches(selector, obj, matches):
    assert FieldSelector.parse(selector).matches(obj) is matches


@pytest.mark.parametrize(
    ("selector", "kind"),
    [("status.phase=Running", "pods"), ("spec.unschedulable=true", "nodes"), ("metadata.name=x", None)],
)
def test_field_selector_accepts_the_kinds_fields(selector, kind):
    assert not FieldSelector.parse(selector, kind).empty()


@pytest.mark.parametrize(
    ("selector", "kind", "message"),
    [
        ("metadata.name", None, "invalid selector 'metadata.name': expected field=value or field!=value"),
        ("metadata.name=a=b", None, "invalid selector 'metadata.name=a=b'"),
        ("metadata.name=a,", None, "invalid selector 'metadata.name=a,'"),
        ("=a", None, "invalid selector '=a'"),
        ("metadata.uid=a", None, "field label not supported: metadata.uid"),
        ("spec.unschedulable=true", "pods", "field label not supported: spec.unschedulable; supported: "),
        ("status.phase=Running", "nodes", "field label not supported: status.phase"),
        ("metadata.name=a", "statefulsets", "field selectors are not supported for statefulsets"),
    ],
)
def test_field_selector_errors(selector, kind, message):
    with pytest.raises(ValidationError) as exc:
        FieldSelector.parse(selector, kind)
    assert exc.value.field == "fieldSelector"
    assert str(exc.value).startswith(f"fieldSelector: {message}")


def test_field_selector_without_kind_rejects_a_field_the_object_lacks():
    selector = FieldSelector.parse("status.phase=Running")
    with pytest.raises(
        ValidationError, match=r"^fieldSelector: field label not supported for Node: status.phase$"
    ):
        selector.matches(_node())
    assert FieldSelector.parse("").matches(_node())
