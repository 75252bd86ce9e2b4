"""A pod's resources (pymaster.api.pods, defaults, registry.pods): requests defaulted from limits,
what the scheduler counts per resource (extended ones and init containers included), the QoS class
by Kubernetes' GetPodQOS, and the class the master stores at creation and keeps through agents'
status updates."""

from __future__ import annotations

import pytest
from master_fixtures import bound_pod, pod_manifest

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.defaults import default_pod
from pymaster.api.pods import is_extended_resource, pod_requests, pod_resource_requests, qos_class
from pymaster.registry.pods import merge_agent_status, prepare_create

DONGLE = "example.com/dongle"
Resources = dict[str, str]


def make_pod(
    containers: list[tuple[Resources, Resources]],
    init: list[tuple[Resources, Resources]] = (),  # type: ignore[assignment]
    sidecars: list[tuple[Resources, Resources]] = (),  # type: ignore[assignment]
) -> objects_pb2.Pod:
    """A pod whose containers have these (requests, limits); sidecars come after the init ones."""
    pod = objects_pb2.Pod()
    pod.metadata.name = "web"
    groups = ((pod.spec.containers, containers, ""), (pod.spec.init_containers, init, ""),
              (pod.spec.init_containers, sidecars, "Always"))
    for target, specs, restart in groups:
        for requests, limits in specs:
            container = target.add(name=f"c{len(target)}{restart}".lower(), image="pykube/busybox:1.35")
            container.restart_policy = restart
            container.resources.requests.update(requests)
            container.resources.limits.update(limits)
    return pod


def test_default_pod_copies_limits_into_missing_requests():
    limits = {"cpu": "1", "memory": "64Mi", DONGLE: "2"}
    pod = make_pod([({"cpu": "100m"}, limits)], init=[({}, {"cpu": "2"})])
    default_pod(pod)
    assert dict(pod.spec.containers[0].resources.requests) == {"cpu": "100m", "memory": "64Mi", DONGLE: "2"}
    assert dict(pod.spec.init_containers[0].resources.requests) == {"cpu": "2"}
    bare = make_pod([({}, {})])
    default_pod(bare)
    assert not bare.spec.containers[0].resources.requests


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (make_pod([({}, {})]), {}),
        (make_pod([({"cpu": "250m"}, {DONGLE: "2"}), ({DONGLE: "1"}, {DONGLE: "1"})]),
         {"cpu": 250, DONGLE: 3}),
        # a plain init container runs alone: the pod needs the larger of it and the app containers
        (make_pod([({}, {DONGLE: "1"})], init=[({}, {DONGLE: "3"}), ({}, {DONGLE: "2"})]), {DONGLE: 3}),
        (make_pod([({}, {DONGLE: "2"})], init=[({}, {DONGLE: "1"})]), {DONGLE: 2}),
        # a sidecar runs along everything after it
        (make_pod([({}, {DONGLE: "1"})], sidecars=[({}, {DONGLE: "1"})]), {DONGLE: 2}),
        (make_pod([({"memory": "1Ki"}, {})], init=[({"memory": "2Ki"}, {})]), {"memory": 2048}),
    ],
)
def test_pod_resource_requests(pod, expected):
    assert pod_resource_requests(pod) == expected
    assert pod_requests(pod) == (expected.get("cpu", 0), expected.get("memory", 0))


def test_sidecars_run_beside_each_later_init_container():
    pod = make_pod([({}, {})], sidecars=[({}, {DONGLE: "1"})])
    pod.spec.init_containers.add(name="late", image="x").resources.limits[DONGLE] = "2"
    assert pod_resource_requests(pod) == {DONGLE: 3}  # the sidecar runs while "late" does


@pytest.mark.parametrize(
    ("name", "extended"),
    [(DONGLE, True), ("example.org/fpga", True), ("nvidia/gpu", True), ("cpu", False),
     ("hugepages-2Mi", False), ("kubernetes.io/x", False), ("x.kubernetes.io/y", False),
     ("requests.example.com/x", False)],
)
def test_is_extended_resource(name, extended):
    assert is_extended_resource(name) is extended


GUARANTEED = ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})


@pytest.mark.parametrize(
    ("pod", "qos"),
    [
        (make_pod([({}, {})]), "BestEffort"),
        (make_pod([({}, {DONGLE: "1"})]), "BestEffort"),  # extended resources do not count
        (make_pod([({"ephemeral-storage": "1Gi"}, {})]), "BestEffort"),
        (make_pod([({"cpu": "0"}, {"memory": "0"})]), "BestEffort"),  # zero is nothing
        (make_pod([GUARANTEED]), "Guaranteed"),
        (make_pod([({}, {"cpu": "1", "memory": "1Gi"})]), "Guaranteed"),  # requests default to limits
        (make_pod([({"cpu": "1000m"}, {"cpu": "1", "memory": "1Gi", DONGLE: "1"})]), "Guaranteed"),
        (make_pod([GUARANTEED, ({}, {"cpu": "500m", "memory": "64Mi"})]), "Guaranteed"),
        (make_pod([({"cpu": "500m"}, {"cpu": "1", "memory": "1Gi"})]), "Burstable"),
        (make_pod([({}, {"cpu": "1"})]), "Burstable"),  # no memory limit
        (make_pod([({"memory": "64Mi"}, {})]), "Burstable"),
        (make_pod([GUARANTEED, ({}, {})]), "Burstable"),  # one container without limits
        (make_pod([({}, {"cpu": "1", "memory": "0"})]), "Burstable"),  # a zero limit is no limit
        # init containers count like the others
        (make_pod([GUARANTEED], init=[({}, {})]), "Burstable"),
        (make_pod([GUARANTEED], init=[GUARANTEED]), "Guaranteed"),
        (make_pod([({}, {})], init=[({"cpu": "100m"}, {})]), "Burstable"),
        (make_pod([GUARANTEED], sidecars=[({"cpu": "1"}, {"cpu": "2", "memory": "1Gi"})]), "Burstable"),
    ],
)
def test_qos_class(pod, qos):
    assert qos_class(pod) == qos


# ---- the registry ----


def test_prepare_create_stores_the_qos_class():
    pod = make_pod([({}, {"cpu": "1", "memory": "64Mi"})])
    pod.status.qos_class = "BestEffort"  # a user's status is never taken
    prepare_create(pod, AdmissionPolicy(), "uid-1", 1_000_000)
    assert pod.status.qos_class == "Guaranteed"
    assert dict(pod.spec.containers[0].resources.requests) == {"cpu": "1", "memory": "64Mi"}


@pytest.mark.parametrize(
    ("stored", "reported", "kept"),
    [
        ("Guaranteed", "BestEffort", "Guaranteed"),
        ("Burstable", "", "Burstable"),
        ("", "Burstable", "Burstable"),  # a pod stored without one
    ],
)
def test_merge_agent_status_keeps_the_masters_qos_class(stored, reported, kept):
    merged = merge_agent_status(
        objects_pb2.PodStatus(qos_class=stored), objects_pb2.PodStatus(phase="Running", qos_class=reported)
    )
    assert (merged.phase, merged.qos_class) == ("Running", kept)


async def test_qos_class_through_the_master(resources, agent):
    pod = pod_manifest("web", cpu="100m")
    pod.spec.containers[0].resources.limits.update({"cpu": "100m", "memory": "32Mi"})
    created = await resources.create(pod)
    assert created.status.qos_class == "Guaranteed"
    best_effort = pod_manifest("idle")
    best_effort.spec.containers[0].resources.ClearField("requests")
    assert (await resources.create(best_effort)).status.qos_class == "BestEffort"

    bound = await bound_pod(resources, agent, "burst")  # 100m requested, no limits
    assert bound.status.qos_class == "Burstable"
    status = objects_pb2.PodStatus(phase="Running", qos_class="Guaranteed")  # an agent's wrong class
    uid = bound.metadata.uid
    update = services_pb2.PodStatusUpdate(namespace="default", name="burst", uid=uid, status=status)
    updated = await agent.UpdatePodStatus(update)
    assert (updated.status.phase, updated.status.qos_class) == ("Running", "Burstable")
