"""Table tests of the pod registry's pure rules (pymaster.registry.pods) and the pod facts and
condition helpers they use (pymaster.api.pods, pymaster.api.conditions)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.conditions import find_condition, set_condition
from pymaster.api.errors import FailedPrecondition, ValidationError
from pymaster.api.pods import is_pending_schedule
from pymaster.registry.pods import (
    DeletePlan,
    apply_delete_plan,
    keep_defaulted_fields,
    log_container,
    merge_agent_status,
    merge_update,
    plan_delete,
    prepare_create,
    same_desired_state,
)

NOW = 1_000_000


def make_pod(
    name: str = "web",
    namespace: str = "default",
    node: str = "",
    containers: tuple[str, ...] = ("app",),
    grace: int | None = None,
    labels: dict[str, str] | None = None,
    phase: str = "",
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = name, namespace, "uid-1"
    pod.metadata.labels.update(labels or {})
    for container in containers:
        pod.spec.containers.add(name=container, image="busybox:1.35")
    pod.spec.node_name = node
    if grace is not None:
        pod.spec.termination_grace_period_seconds = grace
    pod.status.phase = phase
    return pod


# ---- conditions ----


def test_set_condition_adds_then_reports_no_change():
    pod = make_pod()
    assert set_condition(pod.status.conditions, "PodScheduled", "False", "Unschedulable", "0/1", now=NOW)
    condition = find_condition(pod.status.conditions, "PodScheduled")
    assert (condition.status, condition.reason, condition.message) == ("False", "Unschedulable", "0/1")
    assert condition.last_transition_time.seconds == NOW
    conditions = pod.status.conditions
    assert not set_condition(conditions, "PodScheduled", "False", "Unschedulable", "0/1", now=NOW + 5)


@pytest.mark.parametrize(
    ("status", "message", "transition"),
    [
        ("False", "0/2", NOW),  # same status, new message: transition time stays
        ("True", "", NOW + 5),  # status changes: transition time moves
    ],
)
def test_set_condition_transition_time(status, message, transition):
    pod = make_pod()
    set_condition(pod.status.conditions, "PodScheduled", "False", "Unschedulable", "0/1", now=NOW)
    assert set_condition(pod.status.conditions, "PodScheduled", status, "Unschedulable", message, now=NOW + 5)
    condition = find_condition(pod.status.conditions, "PodScheduled")
    assert condition.last_transition_time.seconds == transition
    assert len(pod.status.conditions) == 1


def test_merge_agent_status_keeps_scheduler_condition():
    current = objects_pb2.PodStatus(phase="Pending")
    current.conditions.add(type="PodScheduled", status="True")
    current.conditions.add(type="Ready", status="False")
    reported = objects_pb2.PodStatus(phase="Running", pod_ip="172.17.0.5")
    reported.conditions.add(type="PodScheduled", status="False")  # not the agent's to say
    reported.conditions.add(type="Initialized", status="True")
    reported.conditions.add(type="Ready", status="True")
    reported.container_statuses.add(name="app", ready=True)

    merged = merge_agent_status(current, reported)

    assert merged.phase == "Running" and merged.pod_ip == "172.17.0.5"
    assert [(c.type, c.status) for c in merged.conditions] == [
        ("Initialized", "True"),
        ("Ready", "True"),
        ("PodScheduled", "True"),
    ]
    assert merged.container_statuses[0].ready
    assert merge_agent_status(merged, reported) == merged  # idempotent: the servicer skips the write


# ---- create / update ----


def test_prepare_create_sets_system_fields_and_clears_status():
    pod = make_pod()
    pod.spec.containers[0].image = "pykube/busybox:1.35"
    pod.metadata.resource_version = "7"
    pod.metadata.deletion_timestamp.seconds = 5
    pod.status.phase = "Running"
    pod.status.conditions.add(type="Ready", status="True")

    prepare_create(pod, AdmissionPolicy(), "new-uid", NOW)

    assert pod.metadata.uid == "new-uid"
    assert pod.metadata.generation == 1
    assert pod.metadata.creation_timestamp.seconds == NOW
    assert pod.metadata.resource_version == ""
    assert not pod.metadata.HasField("deletion_timestamp")
    assert pod.status == objects_pb2.PodStatus(phase="Pending", qos_class="BestEffort")


def test_merge_update_keeps_system_fields():
    current = make_pod(node="n1", labels={"app": "web"})
    current.metadata.generation = 1
    current.metadata.resource_version = "9"
    current.status.phase = "Running"
    desired = make_pod(labels={"app": "web", "tier": "front"})  # nodeName empty in the manifest
    desired.metadata.uid = ""

    merged = merge_update(current, desired)

    assert dict(merged.metadata.labels) == {"app": "web", "tier": "front"}
    assert merged.spec.node_name == "n1"
    assert merged.metadata.uid == "uid-1"
    assert merged.metadata.resource_version == "9"
    assert merged.status.phase == "Running"
    assert merged.metadata.generation == 1  # labels only: the spec did not change


def test_merge_update_bumps_generation_on_spec_change():
    current = make_pod(node="n1")
    current.metadata.generation = 3
    desired = make_pod()
    desired.spec.containers[0].image = "busybox:1.36"

    merged = merge_update(current, desired)

    assert merged.metadata.generation == 4
    assert not same_desired_state(current, merged)


def test_keep_defaulted_fields_keeps_pull_policy_of_existing_containers():
    current = make_pod(containers=("a", "b"))
    current.spec.containers[0].image_pull_policy = "IfNotPresent"
    current.spec.containers[1].image_pull_policy = "Always"
    desired = make_pod(containers=("a", "b", "c"))
    desired.spec.containers[0].image = "busybox:latest"  # would default to Always
    desired.spec.containers[1].image_pull_policy = "Never"  # set by the user: kept

    keep_defaulted_fields(current, desired)

    assert [c.image_pull_policy for c in desired.spec.containers] == ["IfNotPresent", "Never", ""]


def test_same_desired_state_ignores_status_and_metadata_bookkeeping():
    a = make_pod(node="n1")
    b = make_pod(node="n1")
    b.status.phase = "Running"
    b.metadata.resource_version = "42"
    assert same_desired_state(a, b)
    b.metadata.annotations["note"] = "x"
    assert not same_desired_state(a, b)


@pytest.mark.parametrize(
    ("node", "deleting", "expected"),
    [("", False, True), ("n1", False, False), ("", True, False)],
)
def test_is_pending_schedule(node, deleting, expected):
    pod = make_pod(node=node)
    if deleting:
        pod.metadata.deletion_timestamp.seconds = NOW
    assert is_pending_schedule(pod) is expected


# ---- graceful delete ----


def _marked(pod: objects_pb2.Pod, deadline: int, grace: int) -> objects_pb2.Pod:
    pod.metadata.deletion_timestamp.seconds = deadline
    pod.metadata.deletion_grace_period_seconds = grace
    return pod


@pytest.mark.parametrize(
    ("pod", "node_exists", "grace", "force", "expected"),
    [
        pytest.param(make_pod(), True, None, False, DeletePlan(True), id="unbound: at once"),
        pytest.param(make_pod(node="n1"), False, None, False, DeletePlan(True), id="node gone: at once"),
        pytest.param(make_pod(node="n1"), True, 0, True, DeletePlan(True), id="force grace 0: at once"),
        pytest.param(make_pod(node="n1"), True, None, True, DeletePlan(True), id="force without grace: 0"),
        pytest.param(
            make_pod(node="n1"), True, None, False, DeletePlan(False, 30, NOW + 30), id="default grace 30"
        ),
        pytest.param(
            make_pod(node="n1", grace=5), True, None, False, DeletePlan(False, 5, NOW + 5), id="pod's grace"
        ),
        pytest.param(
            make_pod(node="n1", grace=5),
            True,
            12,
            False,
            DeletePlan(False, 12, NOW + 12),
            id="request's grace wins",
        ),
        pytest.param(
            make_pod(node="n1"),
            True,
            0,
            False,
            DeletePlan(False, 1, NOW + 1),
            id="grace 0 without force counts as 1",
        ),
        pytest.param(
            make_pod(node="n1"),
            True,
            3,
            True,
            DeletePlan(False, 3, NOW + 3),
            id="force with grace > 0 still waits",
        ),
        pytest.param(
            _marked(make_pod(node="n1"), NOW + 10, 10),
            True,
            30,
            False,
            DeletePlan(False, 10, None),
            id="never lengthen",
        ),
        pytest.param(
            _marked(make_pod(node="n1"), NOW + 10, 10),
            True,
            2,
            False,
            DeletePlan(False, 2, NOW + 2),
            id="shorten",
        ),
    ],
)
def test_plan_delete(pod, node_exists, grace, force, expected):
    assert plan_delete(pod, node_exists=node_exists, grace_period=grace, force=force, now=NOW) == expected


def test_plan_delete_rejects_negative_grace():
    with pytest.raises(ValidationError) as err:
        plan_delete(make_pod(node="n1"), node_exists=True, grace_period=-1, force=False, now=NOW)
    assert err.value.field == "gracePeriodSeconds"


def test_apply_delete_plan_marks_pod():
    pod = make_pod(node="n1")
    assert apply_delete_plan(pod, DeletePlan(False, 5, NOW + 5))
    assert pod.metadata.deletion_timestamp.seconds == NOW + 5
    assert pod.metadata.deletion_grace_period_seconds == 5
    assert not apply_delete_plan(pod, DeletePlan(False, 5, None))


# ---- logs ----


def test_log_container_requires_a_node():
    with pytest.raises(FailedPrecondition, match="^pod web is not scheduled yet$"):
        log_container(make_pod(), "")


@pytest.mark.parametrize(
    ("containers", "asked", "expected"),
    [(("app",), "", "app"), (("a", "b"), "b", "b")],
)
def test_log_container_choice(containers, asked, expected):
    assert log_container(make_pod(node="n1", containers=containers), asked) == expected


def test_log_container_must_be_named_when_several():
    with pytest.raises(ValidationError) as err:
        log_container(make_pod(node="n1", containers=("a", "b")), "")
    assert str(err.value) == "container: a container name must be specified for pod web, choose one of: [a b]"


def test_log_container_unknown():
    with pytest.raises(ValidationError) as err:
        log_container(make_pod(node="n1", containers=("a", "b")), "c")
    assert err.value.field == "container"
    assert "c is not valid for pod web" in str(err.value)
