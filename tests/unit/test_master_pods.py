"""The in-process master (see master_fixtures.py) serving pods through the Resources service:
create, get, list, apply, update and watch, and how errors map to gRPC status codes."""

from __future__ import annotations

import asyncio

import grpc
from master_fixtures import (
    Resources,
    admin_channel,
    bound_pod,
    condition,
    eventually,
    next_change,
    pod_manifest,
    rpc_error,
    start_master,
)

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.kinds import unwrap

# ---- pods: create, read, apply, update ----


async def test_create_get_list(resources):
    created = await resources.create(pod_manifest("web", labels={"app": "web"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.namespace == "default" and created.metadata.generation == 1
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    await resources.create(pod_manifest("db", labels={"app": "db"}))

    assert (await resources.get("pods", "web")).metadata.uid == created.metadata.uid
    listed = await resources.list("pods")
    assert [p.metadata.name for p in listed.items] == ["db", "web"]
    assert int(listed.resource_version) >= int(created.metadata.resource_version)
    selected = await resources.list("pods", label_selector="app=web")
    assert [p.metadata.name for p in selected.items] == ["web"]
    other = await resources.list("pods", namespace="kube-system")
    assert not other.items


async def test_errors_map_to_status_codes(resources):
    invalid = pod_manifest()
    invalid.spec.containers[0].image = ""
    err = await rpc_error(resources.create(invalid))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].image: ")

    await resources.create(pod_manifest())
    err = await rpc_error(resources.create(pod_manifest()))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    err = await rpc_error(resources.get("pods", "nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    err = await rpc_error(resources.list("pods", label_selector="app in web"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("labelSelector: ")


async def test_apply_created_unchanged_configured(resources):
    first, action = await resources.apply(pod_manifest())
    assert action == "created"
    # Let the scheduler write its verdict (no nodes) so that nothing else writes the pod.
    settled = await eventually(lambda: resources.get("pods", "web"), lambda p: condition(p) is not None)
    again, action = await resources.apply(pod_manifest())
    assert action == "unchanged"
    assert again.metadata.resource_version == settled.metadata.resource_version

    relabelled, action = await resources.apply(pod_manifest(labels={"app": "web", "tier": "front"}))
    assert action == "configured"
    assert relabelled.metadata.labels["tier"] == "front"
    assert relabelled.metadata.uid == first.metadata.uid
    assert relabelled.status.phase == "Pending"

    changed_cpu = pod_manifest(labels={"app": "web", "tier": "front"}, cpu="200m")
    err = await rpc_error(resources.apply(changed_cpu))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].resources")


async def test_apply_keeps_node_name_set_by_scheduler(resources, agent):
    pod = await bound_pod(resources, agent)
    # A new tag that would default imagePullPolicy differently keeps the stored policy.
    applied, action = await resources.apply(pod_manifest(image="busybox:latest"))
    assert action == "configured"
    assert applied.spec.node_name == "n1"
    assert applied.spec.containers[0].image == "busybox:latest"
    assert applied.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert applied.metadata.generation == pod.metadata.generation + 1
    assert condition(applied).status == "True"


async def test_update_checks_resource_version(resources):
    await resources.create(pod_manifest())
    # The scheduler writes the pod once (no nodes); start from that version.
    created = await eventually(lambda: resources.get("pods", "web"), lambda p: condition(p) is not None)
    update = objects_pb2.Pod()
    update.CopyFrom(created)
    update.metadata.labels["tier"] = "front"
    updated = await resources.update(update)
    assert updated.metadata.labels["tier"] == "front"

    stale = objects_pb2.Pod()
    stale.CopyFrom(created)  # the old resourceVersion
    stale.metadata.labels["tier"] = "back"
    err = await rpc_error(resources.update(stale))
    assert err.code() == grpc.StatusCode.ABORTED


# ---- watches ----


async def test_watch_lists_then_follows(resources):
    await resources.create(pod_manifest("a"))
    stream = resources.watch("pods")
    first = await next_change(stream)
    assert (first.type, first.object.metadata.name) == (services_pb2.ADDED, "a")
    assert isinstance(first.object, objects_pb2.Pod)
    await resources.create(pod_manifest("b"))
    event = await next_change(stream)
    # The scheduler may write its verdict on "a" (no nodes) in between.
    while (event.type, event.object.metadata.name) == (services_pb2.MODIFIED, "a"):
        event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "b")
    stream.cancel()


async def test_watch_from_resource_version_with_selector(resources):
    await resources.create(pod_manifest("a", labels={"app": "a"}))
    rv = (await resources.list("pods")).resource_version
    stream = resources.watch("pods", resource_version=rv, label_selector="tier=front")
    await resources.create(pod_manifest("b", labels={"app": "b"}))  # never matches
    await resources.apply(pod_manifest("a", labels={"app": "a", "tier": "front"}))  # enters
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "a")
    await resources.apply(pod_manifest("a", labels={"app": "a"}))  # leaves
    event = await next_change(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "a")
    stream.cancel()


async def test_watch_batched_sends_the_events_ready_together_in_one_message(resources):
    rv = (await resources.list("pods")).resource_version
    for name in ("a", "b", "c"):
        await resources.create(pod_manifest(name))
    # Resumed from before the creates: all three are ready at once (the scheduler, with no
    # nodes, may add its verdicts on them behind).
    stream = resources.stub.WatchBatched(services_pb2.WatchRequest(resource="pods", resource_version=rv))
    batch = await asyncio.wait_for(anext(aiter(stream)), 10)
    added = [unwrap(e.object)[1].metadata.name for e in batch.events if e.type == services_pb2.ADDED]
    assert added == ["a", "b", "c"]
    stream.cancel()


async def test_watch_too_old_after_restart_is_out_of_range(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with admin_channel(app) as ch:
            resources = Resources(ch)
            await resources.create(pod_manifest("a"))
            await resources.create(pod_manifest("b"))
    finally:
        await app.stop()
    app = await start_master(tmp_path / "data")  # the event log starts empty at the stored rv
    try:
        async with admin_channel(app) as ch:
            resources = Resources(ch)
            assert len((await resources.list("pods")).items) == 2
            stream = resources.watch("pods", resource_version="1")
            err = await rpc_error(next_change(stream))
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        await app.stop()
