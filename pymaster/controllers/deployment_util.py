"""Pure facts about a Deployment and its ReplicaSets (Kubernetes' ``pkg/controller/deployment/
util/deployment_util.go``): the pod-template-hash, which ReplicaSet is the new one, revisions and
the replica annotations, maxSurge / maxUnavailable resolved against spec.replicas, and the new
ReplicaSet's size during a rolling update. Nothing here reads or writes the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymaster.api import objects_pb2
from pymaster.api.workloads import RECREATE, ROLLING_UPDATE, scaled_value

Deployment = objects_pb2.Deployment
ReplicaSet = objects_pb2.ReplicaSet

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
# Annotations a Deployment does not pass on to its ReplicaSets (kube's skipCopyAnnotation).
_NOT_COPIED = frozenset({REVISION_ANNOTATION, DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION,
                         REVISION_HISTORY_ANNOTATION, LAST_APPLIED_ANNOTATION})

# rand.SafeEncodeString's alphabet: no vowels (no words), no look-alike characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes) -> int:
    """The 32-bit FNV-1a hash of ``data``."""
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: each character mapped into a vowel-free alphabet."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def template_without_hash(template: objects_pb2.PodTemplateSpec) -> objects_pb2.PodTemplateSpec:
    """A copy of ``template`` without the pod-template-hash label."""
    copy = objects_pb2.PodTemplateSpec()
    copy.CopyFrom(template)
    if POD_TEMPLATE_HASH_LABEL in copy.metadata.labels:
        del copy.metadata.labels[POD_TEMPLATE_HASH_LABEL]
    return copy


def compute_hash(template: objects_pb2.PodTemplateSpec, collision_count: int | None = None) -> str:
    """The pod-template-hash of a template (kube's ``ComputeHash``: FNV-1a over the template, then
    the collision count as 4 little-endian bytes, printed in decimal and safe-encoded). The
    template is hashed as deterministic protobuf bytes, so the value is stable across processes
    and restarts but differs from what Kubernetes computes for the same template."""
    data = template_without_hash(template).SerializeToString(deterministic=True)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def equal_ignore_hash(a: objects_pb2.PodTemplateSpec, b: objects_pb2.PodTemplateSpec) -> bool:
    """Whether two templates are the same but for the pod-template-hash label (kube's
    ``EqualIgnoreHash``)."""
    return template_without_hash(a) == template_without_hash(b)


def created_key(rs: ReplicaSet) -> tuple[int, int, str]:
    """Sort key oldest first (creation time, then name, as kube's ReplicaSetsByCreationTimestamp)."""
    ts = rs.metadata.creation_timestamp
    return ts.seconds, ts.nanos, rs.metadata.name


def revision(rs: ReplicaSet) -> int:
    """The revision annotation of a ReplicaSet (0 when absent or not a number)."""
    try:
        return int(rs.metadata.annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def max_revision(replica_sets: Iterable[ReplicaSet]) -> int:
    return max((revision(rs) for rs in replica_sets), default=0)


def find_new_rs(deployment: Deployment, replica_sets: Iterable[ReplicaSet]) -> ReplicaSet | None:
    """The ReplicaSet whose template is the Deployment's (the oldest if several: kube's
    ``FindNewReplicaSet``), or None."""
    matching = [rs for rs in replica_sets if equal_ignore_hash(rs.spec.template, deployment.spec.template)]
    return min(matching, key=created_key) if matching else None


def find_old_rss(deployment: Deployment, replica_sets: Iterable[ReplicaSet]) -> list[ReplicaSet]:
    """Every ReplicaSet but the new one."""
    replica_sets = list(replica_sets)
    new_rs = find_new_rs(deployment, replica_sets)
    return [rs for rs in replica_sets if new_rs is None or rs.metadata.uid != new_rs.metadata.uid]


def active(replica_sets: Iterable[ReplicaSet | None]) -> list[ReplicaSet]:
    """The ReplicaSets with spec.replicas > 0."""
    return [rs for rs in replica_sets if rs is not None and rs.spec.replicas > 0]


def find_active_or_latest(new_rs: ReplicaSet | None, old_rss: list[ReplicaSet]) -> ReplicaSet | None:
    """The only active ReplicaSet; with none active, the new one or else the newest old one; with
    several active, None (kube's ``FindActiveOrLatest``)."""
    everything = ([new_rs] if new_rs is not None else []) + list(old_rss)
    running = active(everything)
    if len(running) == 1:
        return running[0]
    if not running:
        if new_rs is not None:
            return new_rs
        return max(old_rss, key=created_key) if old_rss else None
    return None


def resolve_fenceposts(deployment: Deployment) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts out of spec.replicas, surge rounded up and
    unavailability down; both 0 would stall the rollout, so maxUnavailable becomes 1 then (kube's
    ``ResolveFenceposts``)."""
    replicas = deployment.spec.replicas
    rolling = deployment.spec.strategy.rolling_update
    surge = scaled_value(rolling.max_surge, replicas, True) if rolling.HasField("max_surge") else 0
    unavailable = (scaled_value(rolling.max_unavailable, replicas, False)
                   if rolling.HasField("max_unavailable") else 0)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: Deployment) -> int:
    """maxSurge as a count (0 for Recreate)."""
    if deployment.spec.strategy.type != ROLLING_UPDATE:
        return 0
    return resolve_fenceposts(deployment)[0]


def max_unavailable(deployment: Deployment) -> int:
    """maxUnavailable as a count, at most spec.replicas (0 for Recreate or no replicas)."""
    if deployment.spec.strategy.type != ROLLING_UPDATE or deployment.spec.replicas == 0:
        return 0
    return min(resolve_fenceposts(deployment)[1], deployment.spec.replicas)


def set_replicas_annotations(rs: ReplicaSet, desired: int, maximum: int) -> bool:
    """Sets desired-replicas and max-replicas in place; True if either changed."""
    annotations = rs.metadata.annotations
    changed = False
    for key, value in ((DESIRED_REPLICAS_ANNOTATION, str(desired)), (MAX_REPLICAS_ANNOTATION, str(maximum))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def int_annotation(rs: ReplicaSet, key: str) -> int | None:
    value = rs.metadata.annotations.get(key)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def copy_deployment_annotations(deployment: Deployment, rs: ReplicaSet) -> bool:
    """Copies the Deployment's own annotations onto a ReplicaSet in place; True if any changed."""
    changed = False
    for key, value in deployment.metadata.annotations.items():
        if key in _NOT_COPIED or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def new_rs_new_replicas(deployment: Deployment, all_rss: list[ReplicaSet], new_rs: ReplicaSet | None) -> int:
    """How many replicas the new ReplicaSet should have now (kube's ``NewRSNewReplicas``): for a
    rolling update, as many more as keep the total of every ReplicaSet's spec.replicas within
    replicas + maxSurge and the new one within replicas; for Recreate, replicas."""
    replicas = deployment.spec.replicas
    current_new = new_rs.spec.replicas if new_rs is not None else 0
    if deployment.spec.strategy.type == RECREATE:
        return replicas
    surge = max_surge(deployment)
    current_total = sum(rs.spec.replicas for rs in all_rss)
    max_total = replicas + surge
    if current_total >= max_total:
        return current_new
    scale_up = min(max_total - current_total, replicas - current_new)
    return current_new + max(scale_up, 0)


def deployment_complete(deployment: Deployment, status: objects_pb2.DeploymentStatus) -> bool:
    """Every replica is updated and available, none old is left, the spec observed."""
    replicas = deployment.spec.replicas
    return (status.updated_replicas == replicas and status.replicas == replicas
            and status.available_replicas == replicas
            and status.observed_generation >= deployment.metadata.generation)


def deployment_progressing(deployment: Deployment, status: objects_pb2.DeploymentStatus) -> bool:
    """Whether ``status`` shows progress over the stored one: more updated, ready or available
    replicas, or fewer old ones (kube's ``DeploymentProgressing``)."""
    old = deployment.status
    old_old = old.replicas - old.updated_replicas
    new_old = status.replicas - status.updated_replicas
    return (status.updated_replicas > old.updated_replicas or new_old < old_old
            or status.ready_replicas > old.ready_replicas
            or status.available_replicas > old.available_replicas)
