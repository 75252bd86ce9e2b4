"""The workload registry (pymaster/registry/workloads.py) and workload validation
(pymaster/api/workload_validation.py) against a real SQLiteStore: defaults per kind, template
errors under spec.template.*, selector rules, generation bumps, the immutable selector, /scale,
status writes only on change, and deletion propagation (marks + finalizers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import Conflict, NotFound, ValidationError
from pymaster.api.workloads import JOB_CONTROLLER_UID_LABEL, JOB_NAME_LABEL
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.registry.workloads import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from pymaster.store.sqlite import SQLiteStore


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield Registry(store, NodeLeases(40.0))
    await store.close()


def workload(cls, name: str = "web", app: str = "web"):
    obj = cls()
    obj.metadata.name = name
    if cls is not objects_pb2.Job:
        obj.spec.selector.match_labels["app"] = app
    obj.spec.template.metadata.labels["app"] = app
    obj.spec.template.spec.containers.add(name="c", image="pykube/busybox:1.35")
    if cls is objects_pb2.Job:
        obj.spec.template.spec.restart_policy = "Never"
    return obj


def copy(obj):
    new = type(obj)()
    new.CopyFrom(obj)
    return new


async def test_replica_set_defaults(registry):
    rs = await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))
    assert (rs.api_version, rs.kind, rs.metadata.namespace) == ("apps/v1", "ReplicaSet", "default")
    assert rs.spec.replicas == 1 and rs.metadata.generation == 1
    assert rs.spec.template.spec.restart_policy == "Always"
    assert rs.spec.template.spec.termination_grace_period_seconds == 30


async def test_deployment_daemon_set_and_job_defaults(registry):
    d = await registry.deployments.create(workload(objects_pb2.Deployment))
    rolling = d.spec.strategy.rolling_update
    assert d.spec.strategy.type == "RollingUpdate"
    assert (rolling.max_surge.str_value, rolling.max_unavailable.str_value) == ("25%", "25%")
    assert (d.spec.revision_history_limit, d.spec.progress_deadline_seconds) == (10, 600)
    ds = await registry.daemon_sets.create(workload(objects_pb2.DaemonSet))
    assert ds.spec.update_strategy.rolling_update.max_unavailable.int_value == 1
    job = await registry.jobs.create(workload(objects_pb2.Job, "batch"))
    assert (job.spec.parallelism, job.spec.completions, job.spec.backoff_limit) == (1, 1, 6)
    assert dict(job.spec.selector.match_labels) == {JOB_CONTROLLER_UID_LABEL: job.metadata.uid}
    assert job.spec.template.metadata.labels[JOB_NAME_LABEL] == "batch"


async def test_user_status_is_not_stored(registry):
    rs = workload(objects_pb2.ReplicaSet)
    rs.status.replicas = 7
    created = await registry.replica_sets.create(rs)
    assert created.status.replicas == 0


@pytest.mark.parametrize("edit, field, text", [
    (lambda o: setattr(o.spec.template.spec.containers[0], "image", ""),
     "spec.template.spec.containers[0].image", "required"),  # the pod validation's wording
    (lambda o: setattr(o.spec.template.spec, "restart_policy", "Never"),
     "spec.template.spec.restartPolicy", 'Unsupported value: "Never"'),
    (lambda o: setattr(o.spec.template.metadata, "name", "x"), "spec.template.metadata", "only labels"),
    (lambda o: o.spec.template.metadata.labels.__setitem__("app", "other"),
     "spec.template.metadata.labels", "`selector` (app=web) does not match template `labels`"),
    (lambda o: o.spec.selector.Clear(), "spec.selector", "Required value"),
    (lambda o: setattr(o.spec, "replicas", -1), "spec.replicas", "must be greater than or equal to 0"),
])
async def test_invalid_workloads_are_refused_naming_the_field(registry, edit, field, text):
    rs = workload(objects_pb2.ReplicaSet)
    edit(rs)
    with pytest.raises(ValidationError) as err:
        await registry.replica_sets.create(rs)
    assert err.value.field == field
    assert text in err.value.detail


async def test_generation_follows_spec_changes_only(registry):
    created = await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))
    relabelled = copy(created)
    relabelled.metadata.labels["team"] = "a"
    assert (await registry.replica_sets.update(relabelled)).metadata.generation == 1
    await registry.replica_sets.apply(copy(relabelled))  # the last-applied record added
    _, action = await registry.replica_sets.apply(copy(relabelled))
    assert action == "unchanged"
    rescaled = copy(registry.replica_sets.get("default", "web"))
    rescaled.spec.replicas = 4
    updated = await registry.replica_sets.update(rescaled)
    assert (updated.metadata.generation, updated.spec.replicas) == (2, 4)


async def test_selector_is_immutable(registry):
    created = await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))
    changed = copy(created)
    changed.spec.selector.match_labels["tier"] = "x"
    changed.spec.template.metadata.labels["tier"] = "x"
    with pytest.raises(ValidationError) as err:
        await registry.replica_sets.update(changed)
    assert err.value.field == "spec.selector" and "field is immutable" in err.value.detail


async def test_scale_reads_and_sets_replicas(registry):
    created = await registry.deployments.create(workload(objects_pb2.Deployment))
    scale = await registry.deployments.scale("default", "web", None)
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 1, "app=web")
    scale = await registry.deployments.scale("default", "web", 5)
    stored = registry.deployments.get("default", "web")
    assert (scale.spec.replicas, stored.spec.replicas, stored.metadata.generation) == (5, 5, 2)
    with pytest.raises(Conflict):
        await registry.deployments.scale("default", "web", 2, created.metadata.resource_version)
    with pytest.raises(ValidationError, match="spec.replicas: Invalid value: -1"):
        await registry.deployments.scale("default", "web", -1)
    await registry.daemon_sets.create(workload(objects_pb2.DaemonSet))
    with pytest.raises(ValidationError, match="no scale subresource"):
        await registry.daemon_sets.scale("default", "web", 2)


async def test_update_status_writes_only_on_change(registry):
    created = await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))

    def set_replicas(obj) -> bool:
        if obj.status.replicas == 2:
            return False
        obj.status.replicas = 2
        return True

    first = await registry.replica_sets.update_status("default", "web", created.metadata.uid, set_replicas)
    second = await registry.replica_sets.update_status("default", "web", created.metadata.uid, set_replicas)
    assert first.status.replicas == 2
    assert second.metadata.resource_version == first.metadata.resource_version
    with pytest.raises(NotFound):
        await registry.replica_sets.update_status("default", "web", "another-uid", set_replicas)


async def test_foreground_marks_and_removing_the_finalizer_removes(registry):
    created = await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))
    marked = await registry.replica_sets.delete_propagating("default", "web", "Foreground")
    assert marked.metadata.HasField("deletion_timestamp")
    assert list(marked.metadata.finalizers) == [FOREGROUND_FINALIZER]
    assert registry.replica_sets.get("default", "web").metadata.uid == created.metadata.uid
    orphaning = await registry.replica_sets.delete_propagating("default", "web", "Orphan")
    assert list(orphaning.metadata.finalizers) == [ORPHAN_FINALIZER]  # the later policy wins
    await registry.replica_sets.remove_finalizer("default", "web", created.metadata.uid, ORPHAN_FINALIZER)
    with pytest.raises(NotFound):
        registry.replica_sets.get("default", "web")


async def test_background_deletes_at_once_and_unknown_policies_are_refused(registry):
    await registry.replica_sets.create(workload(objects_pb2.ReplicaSet))
    with pytest.raises(ValidationError) as err:
        await registry.replica_sets.delete_propagating("default", "web", "Later")
    assert err.value.field == "propagationPolicy" and 'Unsupported value: "Later"' in err.value.detail
    await registry.replica_sets.delete_propagating("default", "web", "Background")
    with pytest.raises(NotFound):
        registry.replica_sets.get("default", "web")
