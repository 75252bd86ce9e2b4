"""Hypothesis strategies of random API messages for the fuzz tests (test_fuzz_api.py): names, any
protobuf message filled at random from its descriptor (every field, nested, maps and repeats,
integers at their type's bounds, NaN and infinities, huge strings), random Pods, Events and Nodes
on top of valid ones (so checks deep inside are reached past the first ones), Object envelopes,
and Resources requests with random resource names, namespaces, selectors and resourceVersions.
"""

from __future__ import annotations

import string
from typing import Any

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.kinds import wrap

_NAME_CHARS = string.ascii_lowercase + string.digits + "-."
dns_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
names = st.integers(0, 9).flatmap(
    lambda i: dns_names if i < 7 else [st.text(_NAME_CHARS, min_size=1, max_size=20), st.text(max_size=20),
                                       st.sampled_from(["", "x" * 300])][i - 7]
)


_INT_RANGES = {
    pb_descriptor.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_proto_strings = st.one_of(
    st.text(max_size=20),
    names,
    st.sampled_from(["", "v1", "Pod", "default", "Always", "TCP", "100m", "64Mi"]),
    st.builds(lambda n: "y" * n, st.integers(0, 20_000)),
)


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        low, high = _INT_RANGES[t]
        return st.one_of(st.integers(low, high), st.integers(-5, 100_000).filter(lambda v: low <= v <= high))
    if t in (pb_descriptor.FieldDescriptor.TYPE_DOUBLE, pb_descriptor.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == field.TYPE_FLOAT else 64)
    if t == pb_descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == pb_descriptor.FieldDescriptor.TYPE_STRING:
        return _proto_strings
    if t == pb_descriptor.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == pb_descriptor.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"unhandled field type {t}")


def _fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    """Sets a random subset of the message's fields to random values, recursively."""
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        is_message = field.type == field.TYPE_MESSAGE
        if is_message and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name
            key_field, value_field = entry["key"], entry["value"]
            target = getattr(message, field.name)
            for key in draw(st.lists(_scalar(key_field), max_size=3)):
                if value_field.type == value_field.TYPE_MESSAGE:
                    if depth > 0:
                        _fill(draw, target[key], depth - 1)
                else:
                    target[key] = draw(_scalar(value_field))
        elif field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(draw(st.integers(0, 3))):
                if is_message:
                    if depth > 0:
                        _fill(draw, target.add(), depth - 1)
                else:
                    target.append(draw(_scalar(field)))
        elif is_message:
            if depth > 0:
                _fill(draw, getattr(message, field.name), depth - 1)
        else:
            setattr(message, field.name, draw(_scalar(field)))


def _valid_pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="main", image="pykube/busybox:1.35", command=["sleep", "1"])
    return pod


@st.composite
def random_pods(draw: st.DrawFn) -> objects_pb2.Pod:
    """A Pod with random fields: on top of a valid pod half of the time (so that deep fields are
    reached past the first checks), from nothing otherwise."""
    if draw(st.booleans()):
        pod = _valid_pod(draw(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)))
        overlay = objects_pb2.Pod()
        _fill(draw, overlay, depth=4)
        # Mostly keep one valid part (metadata or spec) so the other is what gets judged.
        keep = draw(st.sampled_from(["metadata", "spec", "none"]))
        if keep != "metadata":
            pod.metadata.MergeFrom(overlay.metadata)
        if keep != "spec":
            pod.spec.MergeFrom(overlay.spec)
        pod.status.MergeFrom(overlay.status)
        return pod
    pod = objects_pb2.Pod()
    _fill(draw, pod, depth=5)
    return pod


def _on_top_of(draw: st.DrawFn, base: Message) -> Message:
    """Half of the time ``base`` (a valid object) with random fields merged over it, so deep checks
    are reached; otherwise an object of that type from nothing."""
    message = type(base)()
    if draw(st.booleans()):
        message.CopyFrom(base)
    overlay = type(base)()
    _fill(draw, overlay, depth=4)
    message.MergeFrom(overlay)
    return message


def _valid_event() -> objects_pb2.Event:
    event = objects_pb2.Event(api_version="v1", kind="Event", reason="Pulled", type="Normal")
    event.involved_object.kind, event.involved_object.name = "Pod", "web"
    return event


def _valid_node() -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "n1"
    return node


@st.composite
def random_events(draw: st.DrawFn) -> objects_pb2.Event:
    return _on_top_of(draw, _valid_event())


@st.composite
def random_envelopes(draw: st.DrawFn) -> objects_pb2.Object:
    """An Object envelope: a random Pod, Event or Node, an empty one, or one filled at random."""
    which = draw(st.sampled_from(["pod", "event", "node", "empty", "anything"]))
    if which == "pod":
        return wrap(draw(random_pods()))
    if which == "event":
        return wrap(draw(random_events()))
    if which == "node":
        return wrap(_on_top_of(draw, _valid_node()))
    envelope = objects_pb2.Object()
    if which == "anything":
        _fill(draw, envelope, depth=5)
    return envelope


# Mostly served resources (seven times in ten), so that the selectors and names behind them are
# judged too; otherwise names the API must refuse.
resource_names = st.integers(0, 9).flatmap(
    lambda i: st.sampled_from(["pods", "nodes", "events"]) if i < 7 else st.one_of(
        st.sampled_from(["identities", "widgets", "Pods", "po", "", "pods "]), st.text(max_size=12)
    )
)
namespaces = st.one_of(
    st.sampled_from(["", "default", "kube-system"]),
    st.sampled_from(["Not A Namespace", "x" * 300]),
    names,
)
# Selectors: mostly well formed (some of them naming fields the kind does not have), sometimes
# anything.
label_selectors = st.integers(0, 9).flatmap(
    lambda i: st.sampled_from(["", "app=web", "app in (a,b)", "!legacy", "tier!=db", "app in web", "=",
                               "a" * 5000]) if i < 7 else st.text(max_size=30)
)
field_selectors = st.integers(0, 9).flatmap(
    lambda i: st.sampled_from([
        "", "involvedObject.name=web", "involvedObject.kind=Pod,type=Warning", "spec.nodeName=n1",
        "metadata.name!=a", "spec.unschedulable=true", "status.phase==Running", "reason=", "x=y", "=",
    ]) if i < 7 else st.text(max_size=30)
)
resource_versions = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "abc", "9" * 25]), st.integers(0, 2**70).map(str)
)


@st.composite
def random_requests(draw: st.DrawFn) -> tuple[str, Message]:
    """A Resources verb that names what it reads or deletes, and its random request."""
    verb = draw(st.sampled_from(["Get", "List", "Delete", "Watch"]))
    resource, namespace = draw(resource_names), draw(namespaces)
    if verb == "Get":
        return verb, services_pb2.GetRequest(resource=resource, namespace=namespace, name=draw(names))
    if verb == "Delete":
        request = services_pb2.DeleteRequest(
            resource=resource, namespace=namespace, name=draw(names), force=draw(st.booleans())
        )
        if draw(st.booleans()):
            request.grace_period_seconds = draw(st.integers(-(2**63), 2**63 - 1))
        return verb, request
    labels, fields = draw(label_selectors), draw(field_selectors)
    if verb == "List":
        return verb, services_pb2.ListRequest(
            resource=resource, namespace=namespace, label_selector=labels, field_selector=fields
        )
    return verb, services_pb2.WatchRequest(
        resource=resource, namespace=namespace, label_selector=labels, field_selector=fields,
        resource_version=draw(resource_versions),
    )
