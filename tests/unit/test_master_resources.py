"""The in-process master's generic Resources service (see master_fixtures.py) on events, the verbs a
kind does not support, the resource names it does not serve, and events recorded by a node over
its own mutual-TLS identity (NodeAgent.RecordEvents)."""

from __future__ import annotations

import grpc
from master_fixtures import (
    Resources,
    admin_channel,
    event_manifest,
    eventually,
    join,
    next_change,
    node_manifest,
    pod_manifest,
    rpc_error,
    start_master,
)

from pymaster.api import objects_pb2, services_pb2

# ---- events through the API ----


async def test_create_get_list_delete_events(resources):
    named = event_manifest("web", reason="Pulled", message="pulled busybox")
    named.metadata.name = "web.first"
    created = await resources.create(named)
    assert isinstance(created, objects_pb2.Event)
    assert (created.metadata.namespace, created.metadata.name, created.count) == ("default", "web.first", 1)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.first_timestamp.seconds and created.last_timestamp == created.first_timestamp
    generated = await resources.create(event_manifest("web", reason="Started", message="started app"))
    assert generated.metadata.name.startswith("web.") and generated.metadata.name != "web.first"

    assert (await resources.get("events", "web.first")).metadata.uid == created.metadata.uid
    names = {e.metadata.name for e in (await resources.list("events", namespace="default")).items}
    assert {"web.first", generated.metadata.name} <= names

    deleted = await resources.delete("events", "web.first")
    assert deleted.metadata.uid == created.metadata.uid
    assert (await rpc_error(resources.get("events", "web.first"))).code() == grpc.StatusCode.NOT_FOUND
    assert (await rpc_error(resources.delete("events", "web.first"))).code() == grpc.StatusCode.NOT_FOUND

    invalid = event_manifest("web")
    invalid.ClearField("reason")
    err = await rpc_error(resources.create(invalid))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "reason: required")


async def test_list_events_by_field_selector(resources):
    await resources.create(event_manifest("web", reason="Pulled"))
    await resources.create(event_manifest("web", reason="BackOff", message="back-off restarting"))
    await resources.create(event_manifest("db", reason="Pulled"))
    await resources.create(event_manifest("n1", kind="Node", reason="NodeReady"))

    async def selected(field_selector: str) -> list[tuple[str, str]]:
        listed = await resources.list("events", field_selector=field_selector)
        return sorted((e.involved_object.name, e.reason) for e in listed.items)

    assert await selected("involvedObject.name=web") == [("web", "BackOff"), ("web", "Pulled")]
    assert await selected("involvedObject.name=web,reason!=Pulled") == [("web", "BackOff")]
    assert await selected("involvedObject.kind=Node") == [("n1", "NodeReady")]
    assert await selected("involvedObject.name=nothing") == []
    err = await rpc_error(resources.list("events", field_selector="spec.nodeName=n1"))  # a pod field
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("fieldSelector: ")


async def test_watch_events_sees_added_then_deleted(resources):
    before = await resources.create(event_manifest("web", reason="Pulled"))
    stream = resources.watch("events", field_selector="involvedObject.name=web")
    try:
        event = await next_change(stream)  # the current state first
        assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, before.metadata.name)
        assert isinstance(event.object, objects_pb2.Event)
        await resources.create(event_manifest("db", reason="Pulled"))  # not selected
        later = await resources.create(event_manifest("web", reason="Started"))
        event = await next_change(stream)
        assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, later.metadata.name)
        await resources.delete("events", before.metadata.name)
        event = await next_change(stream)
        assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, before.metadata.name)
    finally:
        stream.cancel()


# ---- what the API refuses ----


async def test_verbs_a_kind_does_not_support_are_unimplemented(resources):
    by_agents = "nodes are created by their agent's registration"
    cases = [
        (resources.create(node_manifest("n1")), f"{by_agents} (pykubelet)"),
        (resources.apply(node_manifest("n1")), f"{by_agents}; change a node's labels or spec with an update"),
        (resources.apply(event_manifest("web")), "events cannot be applied: create them, or let the cluster "
                                                 "record them"),
        (resources.update(event_manifest("web")), "events cannot be updated: repeats are folded by the "
                                                  "cluster"),
    ]
    for call, message in cases:
        err = await rpc_error(call)
        assert (err.code(), err.details()) == (grpc.StatusCode.UNIMPLEMENTED, message)
    assert (await resources.list("nodes")).items == []
    assert (await resources.list("events", field_selector="involvedObject.name=web")).items == []


async def test_a_resource_the_master_does_not_serve_is_invalid_argument(resources):
    # "identities" is a kind of the store (node key bindings), never served.
    for resource in ("widgets", "identities", "Pods", "pod", ""):
        known = (
            f"resource: the server doesn't have a resource type {resource!r}; "
            "known: pods, nodes, events, configmaps, secrets, replicasets, deployments, daemonsets, jobs, "
            "services, endpointslices"
        )
        calls = [
            resources.get(resource, "n1"),
            resources.list(resource),
            resources.delete(resource, "n1"),
            resources.watch(resource).read(),
        ]
        for call in calls:
            err = await rpc_error(call)
            assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, known), resource


async def test_an_empty_envelope_is_invalid_argument(resources):
    for verb in ("Create", "Apply", "Update"):
        err = await rpc_error(getattr(resources.stub, verb)(objects_pb2.Object()))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "object: required: one object of a served kind",
        )


# ---- events recorded by a node, over its own identity ----


async def test_a_node_records_events_about_itself_and_its_pods(master, resources):
    n1 = await join(master, "n1")
    async with n1.channel:
        await n1.agent.RegisterNode(node_manifest("n1"))
        mine = await resources.create(pod_manifest("mine", node_name="n1"))
        await resources.create(pod_manifest("theirs", node_name="n2"))
        about_pod = event_manifest("mine", reason="Pulled", host="n1", uid=mine.metadata.uid)
        about_node = event_manifest("n1", kind="Node", reason="NodeReady", host="n1")

        request = services_pb2.RecordEventsRequest(events=[about_pod, about_node])
        assert (await n1.agent.RecordEvents(request)).accepted == 2
        again = services_pb2.RecordEventsRequest(events=[about_pod])
        assert (await n1.agent.RecordEvents(again)).accepted == 1  # folded, not stored twice

        [recorded] = (await resources.list("events", field_selector="involvedObject.name=mine")).items
        assert (recorded.reason, recorded.count, recorded.source.host) == ("Pulled", 2, "n1")
        assert recorded.involved_object.uid == mine.metadata.uid
        listed = await resources.list("events", field_selector="involvedObject.kind=Node")
        assert [e.reason for e in listed.items] == ["NodeReady"]

        refused = [
            (
                event_manifest("theirs", host="n1"),
                'node "n1" may record events only about itself and the pods bound to it, '
                "not Pod default/theirs",
            ),
            (event_manifest("mine", host="n2"), 'node "n1" may not record events as source.host "n2"'),
        ]
        for event, message in refused:
            err = await rpc_error(n1.agent.RecordEvents(services_pb2.RecordEventsRequest(events=[event])))
            assert (err.code(), err.details()) == (grpc.StatusCode.PERMISSION_DENIED, message)
        invalid = event_manifest("mine", host="n1")
        invalid.type = "Catastrophic"
        err = await rpc_error(n1.agent.RecordEvents(services_pb2.RecordEventsRequest(events=[invalid])))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("type: ")

        # Nothing was stored for the refused ones (the scheduler's own events aside).
        listed = await resources.list("events", field_selector="source!=default-scheduler")
        assert sorted(e.involved_object.name for e in listed.items) == ["mine", "n1"]
        # Recording is all a node may do with events: reading them is the admin's.
        err = await rpc_error(n1.resources.list("events"))
        assert err.details() == 'node "n1" may not list events'


async def test_a_repeat_of_an_event_at_the_largest_count_is_no_internal_error(agent):
    event = event_manifest("web", host="")
    event.count = 2**31 - 1
    request = services_pb2.RecordEventsRequest(events=[event])
    for _ in range(2):  # the second is a repeat: folded (or refused with a status of the taxonomy)
        try:
            await agent.RecordEvents(request)
        except grpc.aio.AioRpcError as err:
            assert err.code() != grpc.StatusCode.INTERNAL, err.details()


# ---- expiry, wired in the app ----


async def test_events_expire_after_the_event_ttl(tmp_path):
    app = await start_master(tmp_path / "data", event_ttl=1.0)
    try:
        async with admin_channel(app) as ch:
            resources = Resources(ch)
            created = await resources.create(event_manifest("web"))

            async def gone() -> bool:
                try:
                    await resources.get("events", created.metadata.name)
                except grpc.aio.AioRpcError as err:
                    return err.code() == grpc.StatusCode.NOT_FOUND
                return False

            await eventually(gone, bool)
    finally:
        await app.stop()
