"""Matching the structured selectors of the API (as opposed to the textual ``-l`` selectors of
``selectors.py``): ``metav1.LabelSelector`` (pod affinity terms, topology spread constraints,
workload selectors) and ``NodeSelectorTerm`` (node affinity), with Kubernetes' semantics.

- LabelSelector: every ``matchLabels`` pair and every expression (In, NotIn, Exists,
  DoesNotExist) must hold; NotIn and DoesNotExist match objects without the key; the empty
  selector matches everything (a nil selector is the caller's to treat: Kubernetes' pod affinity
  matches nothing with it).
- NodeSelectorTerm: every ``matchExpressions`` requirement over the node's labels (also Gt and Lt,
  comparing integers) and every ``matchFields`` requirement over its fields (``metadata.name``
  only) must hold; a term with no requirement matches nothing. A NodeSelector's terms are ORed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pymaster.api import objects_pb2

IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT = "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"
LABEL_SELECTOR_OPERATORS = (DOES_NOT_EXIST, EXISTS, IN, NOT_IN)
NODE_SELECTOR_OPERATORS = (DOES_NOT_EXIST, EXISTS, GT, IN, LT, NOT_IN)
NODE_FIELDS = ("metadata.name",)
_INTEGER = re.compile(r"[-+]?[0-9]+")


def requirement_matches(operator: str, key: str, values, labels: Mapping[str, str]) -> bool:
    """One requirement (``operator`` over ``key`` and ``values``) against ``labels``. An unknown
    operator matches nothing (validation refuses it at apply)."""
    present = key in labels
    if operator == IN:
        return present and labels[key] in values
    if operator == NOT_IN:
        return not present or labels[key] not in values
    if operator == EXISTS:
        return present
    if operator == DOES_NOT_EXIST:
        return not present
    if operator in (GT, LT):
        # Both sides must be plain integers (Go's strconv.ParseInt: no spaces, no underscores).
        if not present or len(values) != 1:
            return False
        if not (_INTEGER.fullmatch(labels[key]) and _INTEGER.fullmatch(values[0])):
            return False
        have, bound = int(labels[key]), int(values[0])
        return have > bound if operator == GT else have < bound
    return False


def label_selector_matches(selector: objects_pb2.LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` (the empty selector matches everything)."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r.operator, r.key, r.values, labels) for r in selector.match_expressions)


def node_fields(node: objects_pb2.Node) -> dict[str, str]:
    """The fields a NodeSelectorTerm's ``matchFields`` may name."""
    return {"metadata.name": node.metadata.name}


def node_selector_term_matches(term: objects_pb2.NodeSelectorTerm, node: objects_pb2.Node) -> bool:
    """Whether ``node`` satisfies every requirement of ``term`` (an empty term matches nothing)."""
    if not term.match_expressions and not term.match_fields:
        return False
    labels = node.metadata.labels
    if not all(requirement_matches(r.operator, r.key, r.values, labels) for r in term.match_expressions):
        return False
    fields = node_fields(node) if term.match_fields else {}
    return all(requirement_matches(r.operator, r.key, r.values, fields) for r in term.match_fields)


def node_selector_matches(selector: objects_pb2.NodeSelector, node: objects_pb2.Node) -> bool:
    """Whether ``node`` satisfies any term of ``selector``."""
    return any(node_selector_term_matches(term, node) for term in selector.node_selector_terms)
