"""A Deployment's ReplicaSets as its revision history (Kubernetes' ``getNewReplicaSet`` and
``cleanupDeployment``): the ReplicaSet a new template gets, and the old ones that
revisionHistoryLimit lets go. Pure: the controller writes what these return.
"""

from __future__ import annotations

from pymaster.api.workloads import controller_reference
from pymaster.controllers.deployment_util import (
    POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION,
    Deployment,
    ReplicaSet,
    compute_hash,
    copy_deployment_annotations,
    created_key,
    max_surge,
    new_rs_new_replicas,
    revision,
    set_replicas_annotations,
)


def new_replica_set(
    deployment: Deployment, old_rss: list[ReplicaSet], next_revision: int, collision_count: int | None
) -> ReplicaSet:
    """The ReplicaSet for the Deployment's current template: named ``<deployment>-<hash>``, the
    hash label added to its labels, selector and template, revision ``next_revision``, the
    replica annotations, the Deployment's own annotations, a controller reference to it and as many
    replicas as the strategy allows now."""
    pod_hash = compute_hash(deployment.spec.template, collision_count)
    rs = ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    meta = rs.metadata
    meta.name = f"{deployment.metadata.name}-{pod_hash}"
    meta.namespace = deployment.metadata.namespace
    meta.labels.update(deployment.spec.template.metadata.labels)
    meta.labels[POD_TEMPLATE_HASH_LABEL] = pod_hash
    meta.owner_references.append(controller_reference(deployment))
    copy_deployment_annotations(deployment, rs)
    meta.annotations[REVISION_ANNOTATION] = str(next_revision)
    replicas = deployment.spec.replicas
    set_replicas_annotations(rs, replicas, replicas + max_surge(deployment))
    rs.spec.selector.CopyFrom(deployment.spec.selector)
    rs.spec.selector.match_labels[POD_TEMPLATE_HASH_LABEL] = pod_hash
    rs.spec.template.CopyFrom(deployment.spec.template)
    rs.spec.template.metadata.labels[POD_TEMPLATE_HASH_LABEL] = pod_hash
    rs.spec.min_ready_seconds = deployment.spec.min_ready_seconds
    rs.spec.replicas = new_rs_new_replicas(deployment, old_rss, None)
    return rs


def history_to_delete(deployment: Deployment, old_rss: list[ReplicaSet]) -> list[ReplicaSet]:
    """The old ReplicaSets beyond revisionHistoryLimit, lowest revision first, that run nothing
    (no replicas wanted or reported, their last change observed); the caller also checks that no
    pod of theirs is left."""
    cleanable = [rs for rs in old_rss if not rs.metadata.HasField("deletion_timestamp")]
    excess = len(cleanable) - deployment.spec.revision_history_limit
    if excess <= 0:
        return []
    oldest = sorted(cleanable, key=lambda rs: (revision(rs), created_key(rs)))[:excess]
    return [rs for rs in oldest if not (rs.status.replicas or rs.spec.replicas
                                        or rs.metadata.generation > rs.status.observed_generation)]
