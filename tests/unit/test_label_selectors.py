"""Table tests of the structured selectors: metav1.LabelSelector and NodeSelectorTerm matching."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.label_selectors import (
    label_selector_matches,
    node_selector_matches,
    node_selector_term_matches,
    requirement_matches,
)


@pytest.mark.parametrize(
    ("operator", "values", "labels", "expected"),
    [
        ("In", ["a", "b"], {"k": "b"}, True),
        ("In", ["a"], {"k": "c"}, False),
        ("In", ["a"], {}, False),
        ("NotIn", ["a"], {"k": "b"}, True),
        ("NotIn", ["a"], {}, True),
        ("NotIn", ["a"], {"k": "a"}, False),
        ("Exists", [], {"k": ""}, True),
        ("Exists", [], {}, False),
        ("DoesNotExist", [], {}, True),
        ("DoesNotExist", [], {"k": "x"}, False),
        ("Gt", ["4"], {"k": "5"}, True),
        ("Gt", ["4"], {"k": "4"}, False),
        ("Gt", ["-1"], {"k": "0"}, True),
        ("Lt", ["4"], {"k": "3"}, True),
        ("Lt", ["4"], {}, False),
        # Integers as Go parses them: no spaces, no underscores, no fractions.
        ("Gt", ["4"], {"k": "1_000"}, False),
        ("Gt", ["4"], {"k": " 9"}, False),
        ("Lt", ["4.5"], {"k": "1"}, False),
        ("Gt", ["1", "2"], {"k": "5"}, False),
        ("Bogus", ["a"], {"k": "a"}, False),
    ],
)
def test_requirement(operator, values, labels, expected):
    assert requirement_matches(operator, "k", values, labels) is expected


def _selector(match_labels=None, *expressions) -> objects_pb2.LabelSelector:
    selector = objects_pb2.LabelSelector(match_labels=match_labels or {})
    for key, operator, values in expressions:
        selector.match_expressions.add(key=key, operator=operator, values=values)
    return selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (_selector(), {}, True),  # the empty selector matches everything
        (_selector({"app": "web"}), {"app": "web", "x": "y"}, True),
        (_selector({"app": "web"}), {"app": "db"}, False),
        (_selector({"app": "web"}, ("tier", "In", ["front"])), {"app": "web", "tier": "front"}, True),
        (_selector({"app": "web"}, ("tier", "In", ["front"])), {"app": "web"}, False),
        (_selector(None, ("tier", "NotIn", ["back"])), {}, True),
    ],
)
def test_label_selector(selector, labels, expected):
    assert label_selector_matches(selector, labels) is expected


def _node(name: str, **labels: str) -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.metadata.labels.update(labels)
    return node


def _term(expressions=(), fields=()) -> objects_pb2.NodeSelectorTerm:
    term = objects_pb2.NodeSelectorTerm()
    for key, operator, values in expressions:
        term.match_expressions.add(key=key, operator=operator, values=values)
    for key, operator, values in fields:
        term.match_fields.add(key=key, operator=operator, values=values)
    return term


@pytest.mark.parametrize(
    ("term", "node", "expected"),
    [
        (_term(), _node("n1", zone="a"), False),  # an empty term matches nothing
        (_term([("zone", "In", ["a"])]), _node("n1", zone="a"), True),
        (_term([("zone", "In", ["a"]), ("gpu", "Exists", [])]), _node("n1", zone="a"), False),
        (_term(fields=[("metadata.name", "In", ["n1"])]), _node("n1"), True),
        (_term(fields=[("metadata.name", "NotIn", ["n1"])]), _node("n1"), False),
        (_term([("zone", "In", ["a"])], [("metadata.name", "In", ["n2"])]), _node("n1", zone="a"), False),
    ],
)
def test_node_selector_term(term, node, expected):
    assert node_selector_term_matches(term, node) is expected


def test_node_selector_terms_are_ored():
    selector = objects_pb2.NodeSelector()
    selector.node_selector_terms.append(_term([("zone", "In", ["a"])]))
    selector.node_selector_terms.append(_term([("zone", "In", ["b"])]))
    assert node_selector_matches(selector, _node("n", zone="b"))
    assert not node_selector_matches(selector, _node("n", zone="c"))
    assert not node_selector_matches(objects_pb2.NodeSelector(), _node("n", zone="a"))
