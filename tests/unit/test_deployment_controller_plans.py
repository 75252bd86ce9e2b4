"""The Deployment controller's pure plans: the pod-template-hash, the new ReplicaSet, the rolling
update's steps (simulated to the end: never above replicas + maxSurge pods, never below
replicas - maxUnavailable available), proportional scaling and the status conditions."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.workloads import int_or_string
from pymaster.controllers.deployment_rolling import plan_new_rs, plan_old_scale_down, plan_scale
from pymaster.controllers.deployment_status import rollout_status, timed_out
from pymaster.controllers.deployment_util import (
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH_LABEL,
    compute_hash,
    equal_ignore_hash,
    find_new_rs,
    resolve_fenceposts,
)


def template(image: str = "busybox:1") -> objects_pb2.PodTemplateSpec:
    t = objects_pb2.PodTemplateSpec()
    t.metadata.labels["app"] = "web"
    t.spec.containers.add(name="c", image=image)
    return t


def deployment(replicas: int, surge="25%", unavailable="25%", image="busybox:2") -> objects_pb2.Deployment:
    d = objects_pb2.Deployment()
    d.metadata.name, d.metadata.generation = "web", 1
    d.spec.replicas = replicas
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rolling_update.max_surge.CopyFrom(int_or_string(surge))
    d.spec.strategy.rolling_update.max_unavailable.CopyFrom(int_or_string(unavailable))
    d.spec.template.CopyFrom(template(image))
    d.spec.progress_deadline_seconds = 600
    return d


def rs(name: str, replicas: int, available: int, created: int, image="busybox:1", max_replicas=None):
    r = objects_pb2.ReplicaSet()
    r.metadata.name, r.metadata.uid = name, name
    r.metadata.creation_timestamp.seconds = created
    r.spec.replicas = replicas
    r.spec.template.CopyFrom(template(image))
    r.status.replicas = replicas
    r.status.available_replicas = available
    if max_replicas is not None:
        r.metadata.annotations[MAX_REPLICAS_ANNOTATION] = str(max_replicas)
    return r


def test_hash_is_stable_and_ignores_its_own_label() -> None:
    t = template()
    h = compute_hash(t)
    assert h == compute_hash(template()) and h.isalnum()
    labelled = template()
    labelled.metadata.labels[POD_TEMPLATE_HASH_LABEL] = h
    assert compute_hash(labelled) == h and equal_ignore_hash(labelled, t)
    assert compute_hash(template("busybox:2")) != h
    assert compute_hash(t, 1) != h != compute_hash(t, 0)
    assert not set(h) & set("aeiou")


def test_the_new_replica_set_is_the_one_with_the_template() -> None:
    d = deployment(3, image="busybox:1")
    old, same = rs("old", 0, 0, 1, image="busybox:0"), rs("same", 0, 0, 2)
    same.spec.template.metadata.labels[POD_TEMPLATE_HASH_LABEL] = "xyz"
    assert find_new_rs(d, [old, same]).metadata.name == "same"
    assert find_new_rs(deployment(3, image="other"), [old, same]) is None


@pytest.mark.parametrize(("replicas", "surge", "unavailable", "expected"), [
    (10, "25%", "25%", (3, 2)),
    (4, "25%", "25%", (1, 1)),
    (1, "25%", "25%", (1, 0)),
    (3, 0, 0, (0, 1)),
    (6, 2, "50%", (2, 3)),
])
def test_fenceposts(replicas, surge, unavailable, expected) -> None:
    assert resolve_fenceposts(deployment(replicas, surge, unavailable)) == expected


def simulate(replicas: int, surge, unavailable, ready_per_step: int = 1) -> list[tuple[int, int]]:
    """Runs the rolling update to the end, pods becoming available ``ready_per_step`` at a time;
    returns (total pods, available pods) after every step."""
    d = deployment(replicas, surge, unavailable)
    old = rs("old", replicas, replicas, 1)
    new = rs("new", 0, 0, 2, image="busybox:2")
    seen = []
    for _ in range(200):
        plan = plan_new_rs(d, new, [old]) or plan_old_scale_down(d, new, [old])
        for r in (old, new):
            if r.metadata.name in plan:
                r.spec.replicas = plan[r.metadata.name]
                # Scale down takes pods away at once; new pods start unavailable.
                r.status.available_replicas = min(r.status.available_replicas, r.spec.replicas)
        if not plan:
            if new.status.available_replicas == new.spec.replicas == replicas and old.spec.replicas == 0:
                return seen
            ready = new.status.available_replicas + ready_per_step
            new.status.available_replicas = min(new.spec.replicas, ready)
        seen.append((old.spec.replicas + new.spec.replicas,
                     old.status.available_replicas + new.status.available_replicas))
    raise AssertionError(f"rollout did not finish: {seen[-5:]}")


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    (6, "25%", "25%"), (6, 1, 0), (6, 0, 1), (10, "50%", "10%"), (3, 0, 0), (1, 1, 0), (5, 5, 5),
])
def test_rolling_update_stays_within_surge_and_unavailability(replicas, surge, unavailable) -> None:
    d = deployment(replicas, surge, unavailable)
    max_surge, max_unavailable = resolve_fenceposts(d)
    max_unavailable = min(max_unavailable, replicas)
    steps = simulate(replicas, surge, unavailable)
    assert steps
    for total, available in steps:
        assert total <= replicas + max_surge
        assert available >= replicas - max_unavailable


def test_unhealthy_old_replicas_are_cleaned_up_first() -> None:
    d = deployment(4, 0, 1)
    oldest, older = rs("a", 2, 0, 1, image="x"), rs("b", 2, 2, 2, image="y")
    new = rs("new", 0, 0, 3, image="busybox:2")
    # Four pods, three must stay: one of a's unavailable replicas goes, b's available ones stay.
    assert plan_old_scale_down(d, new, [oldest, older]) == {"a": 1}


def test_available_pods_beyond_a_scaled_down_replica_sets_size_do_not_count() -> None:
    d = deployment(4, 1, 1)
    # old was scaled 4 -> 3 and its status still says 4 available; new has 1 of 2 available.
    old, new = rs("old", 3, 4, 1), rs("new", 2, 1, 2, image="busybox:2")
    # 3 + 1 pods will be available, 3 must stay: one more old one may go, not two.
    assert plan_old_scale_down(d, new, [old]) == {"old": 2}


def test_proportional_scaling_during_a_rollout() -> None:
    d = deployment(20, 3, 0)  # was 10 + 3 surge = 13 spread as 8 old + 5 new
    old = rs("old", 8, 8, 1, max_replicas=13)
    new = rs("new", 5, 0, 2, image="busybox:2", max_replicas=13)
    plan = plan_scale(d, new, [old])
    assert sum(plan.values()) == 23
    assert plan == {"old": 14, "new": 9}


def test_one_active_replica_set_takes_the_whole_count() -> None:
    d = deployment(7)
    assert plan_scale(d, rs("new", 3, 3, 2, image="busybox:2"), [rs("old", 0, 0, 1)]) == {"new": 7}


def test_progress_conditions() -> None:
    d = deployment(2)
    new = rs("web-abc", 2, 2, 2, image="busybox:2")
    status = rollout_status(d, [new], new, now=1000)
    cond = {c.type: c for c in status.conditions}
    assert (cond["Available"].status, cond["Available"].reason) == ("True", "MinimumReplicasAvailable")
    assert cond["Progressing"].reason == "NewReplicaSetAvailable"
    assert cond["Progressing"].message == 'ReplicaSet "web-abc" has successfully progressed.'
    stuck = rs("web-abc", 2, 0, 2, image="busybox:2")
    d.status.replicas = d.status.updated_replicas = 2
    progressing = d.status.conditions.add(type="Progressing", status="True", reason="ReplicaSetUpdated")
    progressing.last_update_time.seconds = 10
    assert timed_out(d, d.status, now=611) and not timed_out(d, d.status, now=609)
    status = rollout_status(d, [stuck], stuck, now=700)
    cond = {c.type: c for c in status.conditions}
    assert (cond["Progressing"].status, cond["Progressing"].reason) == ("False", "ProgressDeadlineExceeded")
    assert cond["Available"].reason == "MinimumReplicasUnavailable"
