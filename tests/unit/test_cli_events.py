"""pyctl and events, pure parts with a fixed clock: the get events columns (plain, -o wide, -A),
their order, describe's Events section, the generic describer, and the kinds table."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pymaster.api import kinds as api_kinds
from pymaster.api import objects_pb2
from pymaster.cli import describe, kinds, printers

NOW = 1_800_000_000.0


def ts(seconds_ago: float) -> Timestamp:
    return Timestamp(seconds=int(NOW - seconds_ago))


def make_event(
    name: str = "web.1",
    reason: str = "Scheduled",
    message: str = "Successfully assigned default/web to n1",
    first: float | None = 5,
    last: float | None = 5,
    count: int = 1,
    type_: str = "Normal",
    kind: str = "Pod",
    about: str = "web",
    component: str = "default-scheduler",
    host: str = "",
    field_path: str = "",
) -> objects_pb2.Event:
    event = objects_pb2.Event(api_version="v1", kind="Event", reason=reason, message=message, type=type_,
                              count=count)
    event.metadata.name, event.metadata.namespace = name, "default"
    ref = event.involved_object
    ref.kind, ref.name, ref.field_path = kind, about, field_path
    ref.namespace = "default" if kind == "Pod" else ""
    event.source.component, event.source.host = component, host
    if first is not None:
        event.first_timestamp.CopyFrom(ts(first))
    if last is not None:
        event.last_timestamp.CopyFrom(ts(last))
    return event


def pod_story() -> list[objects_pb2.Event]:
    """A pod's events, not in time order: scheduled at last, after three failed attempts, then pulled."""
    return [
        make_event("web.2"),
        make_event("web.1", "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.",
                   first=180, last=20, count=3, type_="Warning"),
        make_event("web.3", "Pulled", 'Container image "busybox" already present', first=4, last=4,
                   component="kubelet", host="n1", field_path="spec.containers{app}"),
    ]


def test_get_events_table_like_kubectl() -> None:
    events = sorted(pod_story(), key=kinds.by_last_seen)
    rows = [printers.event_row(e, NOW) for e in events]
    assert printers.format_table(printers.event_header(), rows).splitlines() == [
        "LAST SEEN   TYPE      REASON             OBJECT    MESSAGE",
        "20s         Warning   FailedScheduling   pod/web   0/1 nodes are available: 1 Insufficient cpu.",
        "5s          Normal    Scheduled          pod/web   Successfully assigned default/web to n1",
        '4s          Normal    Pulled             pod/web   Container image "busybox" already present',
    ]


def test_get_events_wide_with_namespaces() -> None:
    events = sorted(pod_story(), key=kinds.by_last_seen)
    header = printers.table_header(printers.event_header(wide=True), namespace=True)
    assert header == ["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
                      "FIRST SEEN", "COUNT", "NAME"]
    rows = [printers.table_row(e.metadata, printers.event_row(e, NOW, wide=True), namespace=True)
            for e in events]
    assert rows[0] == ["default", "20s", "Warning", "FailedScheduling", "pod/web", "", "default-scheduler",
                       "0/1 nodes are available: 1 Insufficient cpu.", "3m", "3", "web.1"]
    assert rows[2][5:7] == ["spec.containers{app}", "kubelet, n1"]
    assert rows[2][8:] == ["4s", "1", "web.3"]


@pytest.mark.parametrize(
    ("event", "cells"),
    [
        # kubectl's printEvent: LAST SEEN falls back to the first time, then "<unknown>".
        (make_event(first=90, last=None), ["90s", "Normal", "Scheduled", "pod/web"]),
        (make_event(first=None, last=None), ["<unknown>", "Normal", "Scheduled", "pod/web"]),
        (make_event(kind="Node", about="n1", type_="Warning", reason="NodeNotReady"),
         ["5s", "Warning", "NodeNotReady", "node/n1"]),
        (make_event(kind="Node", about=""), ["5s", "Normal", "Scheduled", "node"]),
    ],
)
def test_event_row_cells(event: objects_pb2.Event, cells: list[str]) -> None:
    assert printers.event_row(event, NOW)[:4] == cells


def test_event_row_count_source_and_message() -> None:
    event = make_event(count=0, component="", message="  line one\n\tline two  ")
    event.reporting_component, event.reporting_instance = "pykubelet", "n2"
    row = printers.event_row(event, NOW, wide=True)
    assert row[5] == "pykubelet, n2"  # the reporter stands in for an empty source
    assert row[6] == "line one line two"  # one line, trimmed
    assert row[8] == "1"  # a count of 0 (unset) reads 1


def test_events_sort_by_the_last_time_they_happened() -> None:
    older = make_event("z", first=600, last=300)
    recent_once = make_event("a", first=10, last=None)
    assert [e.metadata.name for e in sorted([recent_once, older], key=kinds.by_last_seen)] == ["z", "a"]


# ---- describe's Events section ----


def test_events_section_like_kubectl() -> None:
    lines = describe.events_lines(pod_story(), NOW)
    assert printers.tabwrite(lines).splitlines() == [
        "Events:",
        "  Type     Reason            Age               From               Message",
        "  ----     ------            ----              ----               -------",
        "  Warning  FailedScheduling  20s (x3 over 3m)  default-scheduler  0/1 nodes are available: 1 "
        "Insufficient cpu.",
        "  Normal   Scheduled         5s                default-scheduler  Successfully assigned default/web "
        "to n1",
        '  Normal   Pulled            4s                kubelet            Container image "busybox" already '
        "present",
    ]


@pytest.mark.parametrize(
    ("event", "age"),
    [
        (make_event(first=45, last=45), "45s"),
        (make_event(first=600, last=20, count=2), "20s (x2 over 10m)"),
        (make_event(first=None, last=None), "<unknown>"),
        (make_event(first=3 * 3600, last=None, count=5), "<unknown> (x5 over 3h)"),
    ],
)
def test_event_age(event: objects_pb2.Event, age: str) -> None:
    assert describe.event_age(event, NOW) == age


def test_events_section_none_and_unlisted() -> None:
    assert describe.events_lines([], NOW) == ["Events:\t<none>"]
    assert describe.events_lines(None, NOW) == []


def test_describe_pod_ends_with_its_events() -> None:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    pod.spec.containers.add(name="app", image="busybox")
    pod.status.phase = "Pending"
    pending = make_event("web.1", "FailedScheduling", "0/2 nodes are available: 2 Insufficient cpu.",
                         first=30, last=30, type_="Warning")
    text = describe.describe_pod(pod, NOW, events=[pending])
    assert text.endswith(
        "Events:\n"
        "  Type     Reason            Age   From               Message\n"
        "  ----     ------            ----  ----               -------\n"
        "  Warning  FailedScheduling  30s   default-scheduler  0/2 nodes are available: 2 Insufficient cpu.\n"
    )
    assert "Events" not in describe.describe_pod(pod, NOW, events=None)


def test_describe_node_ends_with_its_events() -> None:
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    ready = make_event("n1.1", "NodeReady", "Node n1 status is now: NodeReady", kind="Node", about="n1",
                       component="kubelet", host="n1")
    text = describe.describe_node(node, [], NOW, events=[ready])
    assert text.splitlines()[-1].split() == ["Normal", "NodeReady", "5s", "kubelet", "Node", "n1", "status",
                                             "is", "now:", "NodeReady"]


# ---- the generic describer (events) ----


def test_describe_object_like_kubectls_generic_describer() -> None:
    event = make_event("web.1", "FailedScheduling", "no nodes", first=180, last=20, count=3, type_="Warning")
    event.metadata.uid = "u1"
    event.metadata.labels["app"] = "web"
    text = describe.describe_object(event, NOW, events=[])
    assert text.splitlines() == [
        "Name:             web.1",
        "Namespace:        default",
        "Labels:           app=web",
        "Annotations:      <none>",
        "API Version:      v1",
        "Count:            3",
        "First Timestamp:  " + ts(180).ToJsonString(),
        "Involved Object:",
        # Go's tabwriter (kubectl's too) aligns a block over the nesting levels it spans.
        "  Kind:          Pod",
        "  Name:          web",
        "  Namespace:     default",
        "Kind:            Event",
        "Last Timestamp:  " + ts(20).ToJsonString(),
        "Message:         no nodes",
        "Metadata:",
        "  UID:   u1",
        "Reason:  FailedScheduling",
        "Source:",
        "  Component:  default-scheduler",
        "Type:         Warning",
        "Events:       <none>",
    ]


def test_describe_object_lists_and_booleans() -> None:
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    node.spec.unschedulable = True
    node.status.addresses.add(type="InternalIP", address="10.0.0.5")
    lines = describe.describe_object(node, NOW, events=None).splitlines()
    assert "  Unschedulable:  true" in lines
    assert lines[lines.index("Status:") + 1:lines.index("Status:") + 4] == [
        "  Addresses:", "    Address:  10.0.0.5", "    Type:     InternalIP",
    ]


@pytest.mark.parametrize(
    ("field", "label"),
    [("apiVersion", "API Version"), ("involvedObject", "Involved Object"), ("podIP", "Pod IP"),
     ("uid", "UID"), ("HTTPServer", "HTTP Server"), ("containerID", "Container ID"), ("count", "Count"),
     ("a_b", "a_b"), ("x1", "x1")],
)
def test_smart_label(field: str, label: str) -> None:
    assert describe.smart_label(field) == label


# ---- the kinds table ----


def test_every_kind_has_its_kubectl_names() -> None:
    assert kinds.lookup("ev") is kinds.lookup("event") is kinds.lookup("Events") is kinds.of("events")
    assert kinds.lookup("po").resource == "pods" and kinds.lookup("NO").resource == "nodes"
    assert kinds.lookup("statefulsets") is None
    assert kinds.lookup("deploy") is kinds.of("deployments") and kinds.lookup("rs").resource == "replicasets"
    assert kinds.of("events").names == ("events", "event", "ev")
    assert kinds.listing() == ("pods (po), nodes (no), events (ev), configmaps (cm), secrets, "
                               "deployments (deploy), replicasets (rs), daemonsets (ds), jobs, "
                               "services (svc), endpointslices")


def test_the_table_covers_the_served_kinds_it_names() -> None:
    for kind in kinds.KINDS.values():
        assert api_kinds.SERVED[kind.resource] is kind.api
        plain, wide = kind.header(wide=False), kind.header(wide=True)
        assert plain and wide[0] == plain[0]
        # kubectl's -o wide adds columns to every kind but ConfigMaps, Secrets and EndpointSlices.
        assert (len(wide) > len(plain)) == (kind.resource not in ("configmaps", "secrets", "endpointslices"))
