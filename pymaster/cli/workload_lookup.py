"""What pyctl reads beside a workload, kubectl's way: the pods a controller owns (by its selector,
then by its controller ownerReference), a Deployment's ReplicaSets with their revisions, which of
them is the new one (its template equals the Deployment's, the pod-template-hash label aside), and
the pod ``logs TYPE/NAME`` reads.
"""

from __future__ import annotations

from typing import Any

from pymaster.api import objects_pb2
from pymaster.api.kinds import PODS, REPLICA_SETS
from pymaster.api.workloads import selector_string
from pymaster.client import Client

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"


def _controller_uid(obj: Any) -> str:
    return next((ref.uid for ref in obj.metadata.owner_references if ref.controller), "")


async def owned(client: Client, resource: str, owner: Any) -> list[Any]:
    """The objects of ``resource`` in the owner's namespace that its selector matches and that it
    controls (kubectl's getPodStatusForController and its ReplicaSet lookup)."""
    selector = selector_string(owner.spec.selector)
    listed = await client.list(resource, owner.metadata.namespace, selector)
    mine = [obj for obj in listed.items if _controller_uid(obj) == owner.metadata.uid]
    return sorted(mine, key=lambda obj: obj.metadata.name)


async def owned_pods(client: Client, owner: Any) -> list[objects_pb2.Pod]:
    return await owned(client, PODS.resource, owner)


def revision(rs: objects_pb2.ReplicaSet) -> int:
    """The deployment.kubernetes.io/revision of a ReplicaSet, 0 without a number."""
    text = rs.metadata.annotations.get(REVISION_ANNOTATION, "")
    return int(text) if text.isdigit() else 0


def template_without_hash(template: objects_pb2.PodTemplateSpec) -> objects_pb2.PodTemplateSpec:
    """A copy of the template without the pod-template-hash label the Deployment controller adds."""
    copy = objects_pb2.PodTemplateSpec()
    copy.CopyFrom(template)
    copy.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    return copy


def new_replica_set(
    deployment: objects_pb2.Deployment, replica_sets: list[objects_pb2.ReplicaSet]
) -> objects_pb2.ReplicaSet | None:
    """The ReplicaSet of the Deployment's current template (the oldest, when several match), or None."""
    matching = [rs for rs in replica_sets
                if template_without_hash(rs.spec.template) == template_without_hash(deployment.spec.template)]
    return min(matching, key=lambda rs: rs.metadata.creation_timestamp.ToNanoseconds(), default=None)


async def deployment_replica_sets(
    client: Client, deployment: objects_pb2.Deployment
) -> tuple[list[objects_pb2.ReplicaSet], objects_pb2.ReplicaSet | None]:
    """(every ReplicaSet the Deployment controls, the new one or None)."""
    replica_sets = await owned(client, REPLICA_SETS.resource, deployment)
    return replica_sets, new_replica_set(deployment, replica_sets)


def _log_rank(pod: objects_pb2.Pod) -> tuple[int, int, float]:
    """kubectl's ByLogging order, simplified: running before pending before finished, ready first,
    then the oldest."""
    phase = {"Running": 0, "Pending": 1}.get(pod.status.phase, 2)
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    return phase, 0 if ready else 1, pod.metadata.creation_timestamp.ToNanoseconds()


async def first_pod(client: Client, owner: Any) -> objects_pb2.Pod | None:
    """The pod ``logs TYPE/NAME`` shows: of those the owner's selector matches, the best to log."""
    listed = await client.list(PODS.resource, owner.metadata.namespace, selector_string(owner.spec.selector))
    return min(listed.items, key=_log_rank, default=None)
