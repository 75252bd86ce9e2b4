"""The in-process master (see master_fixtures.py) serving pods: create, get, list, apply, update and
watch, and how errors map to gRPC status codes."""

from __future__ import annotations

import grpc
from master_fixtures import (
    admin_channel,
    bound_pod,
    condition,
    eventually,
    get,
    next_event,
    pod_manifest,
    rpc_error,
    start_master,
)

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc

# ---- pods: create, read, apply, update ----


async def test_create_get_list(cluster):
    created = await cluster.CreatePod(pod_manifest("web", labels={"app": "web"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.namespace == "default" and created.metadata.generation == 1
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    await cluster.CreatePod(pod_manifest("db", labels={"app": "db"}))

    assert (await cluster.GetPod(get("web"))).metadata.uid == created.metadata.uid
    listed = await cluster.ListPods(services_pb2.ListRequest())
    assert [p.metadata.name for p in listed.items] == ["db", "web"]
    assert int(listed.resource_version) >= int(created.metadata.resource_version)
    selected = await cluster.ListPods(services_pb2.ListRequest(label_selector="app=web"))
    assert [p.metadata.name for p in selected.items] == ["web"]
    other = await cluster.ListPods(services_pb2.ListRequest(namespace="kube-system"))
    assert not other.items


async def test_errors_map_to_status_codes(cluster):
    invalid = pod_manifest()
    invalid.spec.containers[0].image = ""
    err = await rpc_error(cluster.CreatePod(invalid))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].image: ")

    await cluster.CreatePod(pod_manifest())
    err = await rpc_error(cluster.CreatePod(pod_manifest()))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    err = await rpc_error(cluster.GetPod(get("nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    err = await rpc_error(cluster.ListPods(services_pb2.ListRequest(label_selector="app in web")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("labelSelector: ")


async def test_apply_created_unchanged_configured(cluster):
    first = await cluster.ApplyPod(pod_manifest())
    assert first.action == "created"
    # Let the scheduler write its verdict (no nodes) so that nothing else writes the pod.
    settled = await eventually(lambda: cluster.GetPod(get("web")), lambda p: condition(p) is not None)
    again = await cluster.ApplyPod(pod_manifest())
    assert again.action == "unchanged"
    assert again.pod.metadata.resource_version == settled.metadata.resource_version

    relabelled = await cluster.ApplyPod(pod_manifest(labels={"app": "web", "tier": "front"}))
    assert relabelled.action == "configured"
    assert relabelled.pod.metadata.labels["tier"] == "front"
    assert relabelled.pod.metadata.uid == first.pod.metadata.uid
    assert relabelled.pod.status.phase == "Pending"

    changed_cpu = pod_manifest(labels={"app": "web", "tier": "front"}, cpu="200m")
    err = await rpc_error(cluster.ApplyPod(changed_cpu))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("spec.containers[0].resources")


async def test_apply_keeps_node_name_set_by_scheduler(cluster, agent):
    pod = await bound_pod(cluster, agent)
    # A new tag that would default imagePullPolicy differently keeps the stored policy.
    response = await cluster.ApplyPod(pod_manifest(image="busybox:latest"))
    assert response.action == "configured"
    assert response.pod.spec.node_name == "n1"
    assert response.pod.spec.containers[0].image == "busybox:latest"
    assert response.pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert response.pod.metadata.generation == pod.metadata.generation + 1
    assert condition(response.pod).status == "True"


async def test_update_checks_resource_version(cluster):
    await cluster.CreatePod(pod_manifest())
    # The scheduler writes the pod once (no nodes); start from that version.
    created = await eventually(lambda: cluster.GetPod(get("web")), lambda p: condition(p) is not None)
    update = objects_pb2.Pod()
    update.CopyFrom(created)
    update.metadata.labels["tier"] = "front"
    updated = await cluster.UpdatePod(update)
    assert updated.metadata.labels["tier"] == "front"

    stale = objects_pb2.Pod()
    stale.CopyFrom(created)  # the old resourceVersion
    stale.metadata.labels["tier"] = "back"
    err = await rpc_error(cluster.UpdatePod(stale))
    assert err.code() == grpc.StatusCode.ABORTED


# ---- watches ----


async def test_watch_lists_then_follows(cluster):
    await cluster.CreatePod(pod_manifest("a"))
    stream = cluster.WatchPods(services_pb2.WatchRequest())
    first = await next_event(stream)
    assert (first.type, first.object.metadata.name) == (services_pb2.ADDED, "a")
    await cluster.CreatePod(pod_manifest("b"))
    event = await next_event(stream)
    # The scheduler may write its verdict on "a" (no nodes) in between.
    while (event.type, event.object.metadata.name) == (services_pb2.MODIFIED, "a"):
        event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "b")
    stream.cancel()


async def test_watch_from_resource_version_with_selector(cluster):
    await cluster.CreatePod(pod_manifest("a", labels={"app": "a"}))
    rv = (await cluster.ListPods(services_pb2.ListRequest())).resource_version
    stream = cluster.WatchPods(services_pb2.WatchRequest(resource_version=rv, label_selector="tier=front"))
    await cluster.CreatePod(pod_manifest("b", labels={"app": "b"}))  # never matches
    await cluster.ApplyPod(pod_manifest("a", labels={"app": "a", "tier": "front"}))  # enters
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.ADDED, "a")
    await cluster.ApplyPod(pod_manifest("a", labels={"app": "a"}))  # leaves
    event = await next_event(stream)
    assert (event.type, event.object.metadata.name) == (services_pb2.DELETED, "a")
    stream.cancel()


async def test_watch_too_old_after_restart_is_out_of_range(tmp_path):
    app = await start_master(tmp_path / "data")
    try:
        async with admin_channel(app) as ch:
            cluster = services_pb2_grpc.ClusterStub(ch)
            await cluster.CreatePod(pod_manifest("a"))
            await cluster.CreatePod(pod_manifest("b"))
    finally:
        await app.stop()
    app = await start_master(tmp_path / "data")  # the event log starts empty at the stored rv
    try:
        async with admin_channel(app) as ch:
            cluster = services_pb2_grpc.ClusterStub(ch)
            assert len((await cluster.ListPods(services_pb2.ListRequest())).items) == 2
            stream = cluster.WatchPods(services_pb2.WatchRequest(resource_version="1"))
            err = await rpc_error(next_event(stream))
            assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    finally:
        await app.stop()
