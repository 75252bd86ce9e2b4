"""Tests of the scheduling framework (NodeInfo sums, one decision, the unschedulable message);
the queue's are in test_scheduler_queue.py."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from pymaster.api import objects_pb2
from pymaster.scheduler.framework import NodeInfo, PodInfo, ScheduleResult, unschedulable_message
from pymaster.scheduler.plugin_registry import build_framework

_names = itertools.count()


def make_pod(cpu: str = "", memory: str = "", limits_cpu: str = "", phase: str = "") -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = f"web-{next(_names)}", "default"
    container = pod.spec.containers.add(name="app", image="busybox:1.35")
    if cpu:
        container.resources.requests["cpu"] = cpu
    if memory:
        container.resources.requests["memory"] = memory
    if limits_cpu:
        container.resources.limits["cpu"] = limits_cpu
    pod.status.phase = phase
    return pod


def make_node(
    name: str,
    cpu: str = "2",
    memory: str = "4Gi",
    ready: bool = True,
    unschedulable: bool = False,
    use_capacity: bool = False,
) -> objects_pb2.Node:
    node = objects_pb2.Node()
    node.metadata.name = name
    node.spec.unschedulable = unschedulable
    resources = node.status.capacity if use_capacity else node.status.allocatable
    resources.update({"cpu": cpu, "memory": memory, "pods": "110"})
    node.status.conditions.add(type="Ready", status="True" if ready else "False")
    return node


def test_node_info_sums_requests_of_running_pods():
    pods = [
        make_pod("500m", "1Gi"),
        make_pod(limits_cpu="250m"),  # limits count as requests
        make_pod("1", "1Gi", phase="Succeeded"),  # terminal: holds nothing
        make_pod(),  # request-less: counts only in the scoring sums
    ]
    info = NodeInfo.from_node(make_node("n1"), pods)
    assert (info.allocatable_cpu_millis, info.allocatable_memory_bytes, info.allocatable_pods) == (
        2000,
        4 * 1024**3,
        110,
    )
    assert (info.requested_cpu_millis, info.requested_memory_bytes, info.pod_count) == (750, 1024**3, 3)
    assert info.nonzero_cpu_millis == 750 + 100
    assert info.nonzero_memory_bytes == 1024**3 + 2 * 200 * 1024**2
    assert info.ready and info.name == "n1"


def test_node_info_falls_back_to_capacity():
    info = NodeInfo.from_node(make_node("n1", cpu="4", use_capacity=True))
    assert info.allocatable_cpu_millis == 4000


@pytest.mark.parametrize(
    ("total", "reasons", "message"),
    [
        (0, {}, "no nodes available to schedule pods"),
        (2, {"Insufficient cpu": 2}, "0/2 nodes are available: 2 Insufficient cpu."),
        (
            3,
            {"node(s) were unschedulable": 2, "Insufficient memory": 1},
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) were unschedulable.",
        ),
    ],
)
def test_unschedulable_message(total, reasons, message):
    assert unschedulable_message(total, Counter(reasons)) == message


@pytest.mark.parametrize(
    ("nodes", "pod", "expected"),
    [
        pytest.param(
            [], make_pod(), ScheduleResult(None, "no nodes available to schedule pods"), id="none"
        ),
        pytest.param(
            [make_node("n1"), make_node("n2")],
            make_pod("3"),
            ScheduleResult(None, "0/2 nodes are available: 2 Insufficient cpu."),
            id="too big",
        ),
        pytest.param(
            [
                make_node("n1", unschedulable=True),
                make_node("n2", unschedulable=True),
                make_node("n3", memory="1Gi"),
            ],
            make_pod("1", "2Gi"),
            ScheduleResult(
                None, "0/3 nodes are available: 1 Insufficient memory, 2 node(s) were unschedulable."
            ),
            id="mixed reasons",
        ),
        pytest.param(
            [make_node("n1", cpu="1", memory="1Gi"), make_node("n2", cpu="4", memory="8Gi")],
            make_pod("500m", "512Mi"),
            ScheduleResult("n2"),
            id="least allocated wins",
        ),
        pytest.param(
            [make_node("n1", ready=False), make_node("n2", cpu="1")],
            make_pod("500m"),
            ScheduleResult("n2"),
            id="skips not ready",
        ),
        pytest.param(
            [make_node("n1", cpu="3", memory="1Gi")],
            make_pod("1", "1Gi", phase=""),
            ScheduleResult("n1"),
            id="exact memory fit",
        ),
    ],
)
def test_framework_schedule(nodes, pod, expected):
    infos = [NodeInfo.from_node(n) for n in nodes]
    assert build_framework().schedule(PodInfo.from_pod(pod), infos) == expected


def test_framework_breaks_ties_randomly_among_best():
    infos = [NodeInfo.from_node(make_node(name)) for name in ("a", "b", "c")]
    framework = build_framework(rng=random.Random(7))
    chosen = {framework.schedule(PodInfo.from_pod(make_pod("100m")), infos).node_name for _ in range(50)}
    assert chosen == {"a", "b", "c"}


def test_framework_counts_each_reason_of_a_node():
    infos = [NodeInfo.from_node(make_node("n1", cpu="1", memory="1Gi"))]
    result = build_framework().schedule(PodInfo.from_pod(make_pod("2", "2Gi")), infos)
    assert result.message == "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."


def test_extended_resources_in_node_info_and_message():
    dongle = "example.com/dongle"
    n1, n2 = make_node("n1"), make_node("n2")
    n1.status.allocatable[dongle] = "2"
    holder = make_pod()
    holder.spec.containers[0].resources.limits[dongle] = "2"
    done = make_pod(phase="Failed")
    done.spec.containers[0].resources.limits[dongle] = "2"
    infos = [NodeInfo.from_node(n1, [holder, done]), NodeInfo.from_node(n2)]
    assert (infos[0].allocatable_extended, infos[0].requested_extended) == ({dongle: 2}, {dongle: 2})
    assert (infos[1].allocatable_extended, infos[1].requested_extended) == ({}, {})
    wants = make_pod()
    wants.spec.containers[0].resources.limits[dongle] = "1"
    assert PodInfo.from_pod(wants).extended == {dongle: 1}
    result = build_framework().schedule(PodInfo.from_pod(wants), infos)
    assert result == ScheduleResult(None, "0/2 nodes are available: 2 Insufficient example.com/dongle.")
    n2.status.allocatable[dongle] = "1"
    assert build_framework().schedule(PodInfo.from_pod(wants), [infos[0], NodeInfo.from_node(n2)]) == (
        ScheduleResult("n2")
    )


def test_ephemeral_storage_in_node_info_and_message():
    n1 = make_node("n1")
    n1.status.allocatable["ephemeral-storage"] = "10Gi"
    holder, done = make_pod(), make_pod(phase="Succeeded")
    holder.spec.containers[0].resources.requests["ephemeral-storage"] = "8Gi"
    done.spec.containers[0].resources.requests["ephemeral-storage"] = "8Gi"
    info = NodeInfo.from_node(n1, [holder, done])
    assert (info.allocatable_ephemeral_storage_bytes, info.requested_ephemeral_storage_bytes) == (
        10 * 1024**3, 8 * 1024**3
    )
    wants = make_pod()
    wants.spec.containers[0].resources.limits["ephemeral-storage"] = "3Gi"
    assert PodInfo.from_pod(wants).ephemeral_storage_bytes == 3 * 1024**3
    result = build_framework().schedule(PodInfo.from_pod(wants), [info, NodeInfo.from_node(make_node("n2"))])
    assert result == ScheduleResult(None, "0/2 nodes are available: 2 Insufficient ephemeral-storage.")
