"""Filtered lists and watches (pymaster.registry.watch): namespaces, selectors and what a
filtered watcher sees when objects enter or leave its selection."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.registry.watch import ObjectFilter, parse_resource_version, watch_event_type


def make_pod(node: str, labels: dict[str, str], phase: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "default", "uid-1"
    pod.metadata.labels.update(labels)
    pod.spec.node_name = node
    pod.status.phase = phase
    return pod


@pytest.mark.parametrize(
    ("namespace", "labels", "fields", "expected"),
    [
        ("", "", "", True),
        ("default", "", "", True),
        ("kube-system", "", "", False),
        ("", "app=web", "", True),
        ("", "app!=web", "", False),
        ("", "", "spec.nodeName=n1", True),
        ("", "", "status.phase=Running", False),
        ("default", "app in (web,db)", "metadata.name=web", True),
    ],
)
def test_object_filter_pods(namespace, labels, fields, expected):
    pod = make_pod(node="n1", labels={"app": "web"}, phase="Pending")
    selection = ObjectFilter("pods", namespace, labels, fields)
    assert selection.matches(pod) is expected
    assert selection.has_selectors is bool(labels or fields)


def test_object_filter_nodes_ignore_request_namespace():
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    assert ObjectFilter("nodes", "default", "", "spec.unschedulable=false").matches(node)


@pytest.mark.parametrize(
    ("labels", "fields", "field"),
    [("app in web", "", "labelSelector"), ("", "spec.image=x", "fieldSelector")],
)
def test_object_filter_rejects_bad_selectors(labels, fields, field):
    with pytest.raises(ValidationError) as err:
        ObjectFilter("pods", "", labels, fields)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("store_type", "matches", "was_matched", "expected"),
    [
        ("ADDED", True, False, "ADDED"),
        ("ADDED", False, False, None),
        ("MODIFIED", True, True, "MODIFIED"),
        ("MODIFIED", True, False, "ADDED"),  # entered the selection
        ("MODIFIED", False, True, "DELETED"),  # left the selection
        ("MODIFIED", False, False, None),
        ("DELETED", True, True, "DELETED"),
        ("DELETED", False, True, "DELETED"),
        ("DELETED", False, False, None),
    ],
)
def test_watch_event_type(store_type, matches, was_matched, expected):
    assert watch_event_type(store_type, matches, was_matched) == expected


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("42", True), ("-1", False), ("abc", False)])
def test_parse_resource_version(value, ok):
    if ok:
        assert parse_resource_version(value) == int(value)
    else:
        with pytest.raises(ValidationError) as err:
            parse_resource_version(value)
        assert err.value.field == "resourceVersion"
