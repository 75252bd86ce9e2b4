"""What the master adds to and checks of a pod's scheduling fields at creation and update: the
DefaultTolerationSeconds tolerations (with the master's flags), the priority from the
priorityClassName, and Kubernetes' update rules for tolerations and scheduling gates."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.errors import Forbidden, ValidationError
from pymaster.api.manifest import load_pods
from pymaster.api.taints import NO_EXECUTE, NOT_READY, UNREACHABLE
from pymaster.registry.pods import prepare_create, prepare_update

NOW = 1_700_000_000.0


def pod(extra_spec: str = "", metadata: str = "") -> objects_pb2.Pod:
    manifest = f"""
apiVersion: v1
kind: Pod
metadata:
  name: web
{metadata}
spec:
  containers: [{{name: app, image: busybox}}]
{extra_spec}
"""
    return load_pods(manifest)[0]


def created(p: objects_pb2.Pod, policy: AdmissionPolicy | None = None) -> objects_pb2.Pod:
    prepare_create(p, policy or AdmissionPolicy(), "uid-1", NOW)
    return p


def tolerations(p: objects_pb2.Pod) -> list[tuple[str, str, str, int | None]]:
    return [
        (t.key, t.operator, t.effect, t.toleration_seconds if t.HasField("toleration_seconds") else None)
        for t in p.spec.tolerations
    ]


def test_every_new_pod_tolerates_a_failed_node_for_five_minutes() -> None:
    assert tolerations(created(pod())) == [
        (NOT_READY, "Exists", NO_EXECUTE, 300),
        (UNREACHABLE, "Exists", NO_EXECUTE, 300),
    ]


def test_the_masters_flags_set_the_default_toleration_seconds() -> None:
    policy = AdmissionPolicy.of(not_ready_toleration_seconds=7, unreachable_toleration_seconds=3)
    assert [t[3] for t in tolerations(created(pod(), policy))] == [7, 3]


def test_a_pod_that_tolerates_a_failed_node_itself_keeps_its_own() -> None:
    own = """  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 6000}
  - {operator: Exists}
"""
    assert tolerations(created(pod(own))) == [
        (UNREACHABLE, "Exists", NO_EXECUTE, 6000),
        ("", "Exists", "", None),
    ]


def test_re_applying_the_same_manifest_changes_nothing() -> None:
    current = created(pod())
    assert prepare_update(current, pod(), AdmissionPolicy()) is None


def test_tolerations_may_be_added_but_not_removed() -> None:
    current = created(pod())
    added = pod("  tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]\n")
    updated = prepare_update(current, added, AdmissionPolicy())
    assert updated is not None and updated.spec.tolerations[0].key == "dedicated"
    with pytest.raises(ValidationError, match="spec.tolerations: existing toleration can not be modified"):
        prepare_update(updated, pod(), AdmissionPolicy())


def test_an_existing_tolerations_seconds_may_only_shrink() -> None:
    spec = "  tolerations: [{key: k, operator: Exists, effect: NoExecute, tolerationSeconds: %d}]\n"
    current = created(pod(spec % 60))
    assert prepare_update(current, pod(spec % 30), AdmissionPolicy()) is not None
    with pytest.raises(ValidationError, match="may only be made shorter"):
        prepare_update(current, pod(spec % 90), AdmissionPolicy())


def test_priority_comes_from_the_priority_class() -> None:
    assert created(pod()).spec.priority == 0
    critical = created(pod("  priorityClassName: system-node-critical\n"))
    assert critical.spec.priority == 2000001000


def test_an_unknown_priority_class_is_refused() -> None:
    with pytest.raises(Forbidden, match="no PriorityClass with name gold was found"):
        created(pod("  priorityClassName: gold\n"))


def test_a_stated_priority_must_be_the_classes() -> None:
    with pytest.raises(Forbidden, match=r"the integer value of priority \(5\) must not be provided"):
        created(pod("  priority: 5\n"))
    stated = pod("  priorityClassName: system-cluster-critical\n  priority: 2000000000\n")
    assert created(stated).spec.priority == 2000000000


def test_owner_references_are_checked_and_user_finalizers_refused() -> None:
    ref = "{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: u1, controller: true}"
    kept = created(pod(metadata=f"  ownerReferences: [{ref}]"))
    assert kept.metadata.owner_references[0].uid == "u1"
    with pytest.raises(ValidationError, match=r"metadata.ownerReferences\[0\].uid: Required value"):
        pod(metadata="  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web}]")
    with pytest.raises(ValidationError, match="Only one reference can have Controller set to true"):
        pod(metadata=f"  ownerReferences: [{ref}, {ref.replace('u1', 'u2')}]")
    with pytest.raises(ValidationError, match="metadata.finalizers: not supported"):
        pod(metadata="  finalizers: [example.com/keep]")


def test_a_gated_pod_says_why_it_waits_from_its_creation() -> None:
    gated = created(pod("  schedulingGates: [{name: example.com/quota}]\n"))
    (condition,) = gated.status.conditions
    assert (condition.type, condition.status) == ("PodScheduled", "False")
    assert condition.reason == "SchedulingGated"
    assert not created(pod()).status.conditions
