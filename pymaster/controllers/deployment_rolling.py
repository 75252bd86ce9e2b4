"""The sizes a Deployment's ReplicaSets should have, as pure plans (Kubernetes'
``pkg/controller/deployment/rolling.go`` and ``sync.go``'s ``scale``):

- ``plan_new_rs``: the new ReplicaSet's size in a rolling update (up to replicas + maxSurge pods
  in total, counting every ReplicaSet's spec.replicas);
- ``plan_old_scale_down``: old ReplicaSets scaled down so that available pods never go below
  replicas - maxUnavailable, unhealthy old replicas cleaned up first;
- ``plan_scale``: a change of spec.replicas with no new template, spread over the ReplicaSets in
  proportion to their sizes during a rollout (the max-replicas annotation says what they were
  sized for).

A plan is a dict of ReplicaSet name -> new spec.replicas, holding only the ones to change.
"""

from __future__ import annotations

from pymaster.api.workloads import ROLLING_UPDATE
from pymaster.controllers.deployment_util import (
    MAX_REPLICAS_ANNOTATION,
    Deployment,
    ReplicaSet,
    active,
    created_key,
    find_active_or_latest,
    int_annotation,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
)

Plan = dict[str, int]


def plan_new_rs(deployment: Deployment, new_rs: ReplicaSet, old_rss: list[ReplicaSet]) -> Plan:
    """The new ReplicaSet's size now (kube's ``reconcileNewReplicaSet``)."""
    replicas = deployment.spec.replicas
    current = new_rs.spec.replicas
    if current == replicas:
        return {}
    if current > replicas:
        return {new_rs.metadata.name: replicas}
    wanted = new_rs_new_replicas(deployment, [new_rs, *old_rss], new_rs)
    return {new_rs.metadata.name: wanted} if wanted != current else {}


def plan_old_scale_down(deployment: Deployment, new_rs: ReplicaSet | None, old_rss: list[ReplicaSet]) -> Plan:
    """Old ReplicaSets scaled down as far as availability allows (kube's
    ``reconcileOldReplicaSets``): first their unhealthy replicas (they count for nothing), oldest
    ReplicaSet first, then healthy ones while available pods stay at replicas - maxUnavailable."""
    sizes = {rs.metadata.name: rs.spec.replicas for rs in old_rss}
    if sum(sizes.values()) == 0:
        return {}
    everything = list(old_rss) + ([new_rs] if new_rs is not None else [])
    all_pods = sum(rs.spec.replicas for rs in everything)
    min_available = deployment.spec.replicas - max_unavailable(deployment)
    new_unavailable = (new_rs.spec.replicas - new_rs.status.available_replicas) if new_rs is not None else 0
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    oldest_first = sorted(old_rss, key=created_key)
    cleaned = 0
    for rs in oldest_first:
        if cleaned >= max_scaled_down:
            break
        name = rs.metadata.name
        unhealthy = sizes[name] - rs.status.available_replicas
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        count = min(max_scaled_down - cleaned, unhealthy)
        sizes[name] -= count
        cleaned += count
    # Then healthy replicas, as far as the available pods allow. A ReplicaSet's available pods
    # beyond its spec.replicas (scaled down, its status not caught up yet) are about to go and
    # do not count: kube counts them, and on such a status steps below replicas - maxUnavailable.
    available = sum(min(rs.status.available_replicas, rs.spec.replicas) for rs in everything)
    to_scale_down = available - min_available
    scaled = 0
    for rs in oldest_first:
        if scaled >= to_scale_down:
            break
        name = rs.metadata.name
        if sizes[name] == 0:
            continue
        count = min(sizes[name], to_scale_down - scaled)
        sizes[name] -= count
        scaled += count
    return {rs.metadata.name: sizes[rs.metadata.name] for rs in old_rss
            if sizes[rs.metadata.name] != rs.spec.replicas}


def _round_half_away(value: float) -> int:
    """Go's math.Round (half away from zero), not Python's banker's rounding."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def _fraction(rs: ReplicaSet, deployment: Deployment) -> int:
    """How many replicas ``rs`` gains (or loses) in proportion to the Deployment's new size
    (kube's ``getReplicaSetFraction``)."""
    if deployment.spec.replicas == 0:
        return -rs.spec.replicas
    deployment_replicas = deployment.spec.replicas + max_surge(deployment)
    annotated = int_annotation(rs, MAX_REPLICAS_ANNOTATION)
    if annotated is None or annotated == 0:
        annotated = deployment.status.replicas
    if annotated == 0:
        return 0
    return _round_half_away(rs.spec.replicas * deployment_replicas / annotated) - rs.spec.replicas


def plan_scale(deployment: Deployment, new_rs: ReplicaSet | None, old_rss: list[ReplicaSet]) -> Plan:
    """The ReplicaSets' sizes after a change of spec.replicas (kube's ``scale``): the one active
    (or the latest) ReplicaSet takes the whole count; a saturated new ReplicaSet means the old ones
    go to 0; during a rolling update the difference is spread in proportion to the sizes, the
    rounding leftover going to the largest (newest on ties when adding, oldest when removing)."""
    replicas = deployment.spec.replicas
    target = find_active_or_latest(new_rs, old_rss)
    if target is not None:
        return {} if target.spec.replicas == replicas else {target.metadata.name: replicas}
    if (new_rs is not None and new_rs.spec.replicas == replicas
            and new_rs.status.available_replicas == replicas):
        return {rs.metadata.name: 0 for rs in active(old_rss)}
    if deployment.spec.strategy.type != ROLLING_UPDATE:
        return {}
    running = active(([new_rs] if new_rs is not None else []) + list(old_rss))
    allowed = replicas + max_surge(deployment) if replicas > 0 else 0
    to_add = allowed - sum(rs.spec.replicas for rs in running)
    if to_add == 0:
        return {}
    ts = created_key
    if to_add > 0:  # larger first, newer first on ties
        ordered = sorted(running, key=lambda rs: (-rs.spec.replicas, tuple(-x for x in ts(rs)[:2])))
    else:  # larger first, older first on ties
        ordered = sorted(running, key=lambda rs: (-rs.spec.replicas, ts(rs)[:2]))
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        proportion = 0
        if rs.spec.replicas > 0 and to_add != added:
            fraction = _fraction(rs, deployment)
            allowed_left = to_add - added
            proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
        sizes[rs.metadata.name] = rs.spec.replicas + proportion
        added += proportion
    first = ordered[0].metadata.name
    sizes[first] = max(sizes[first] + to_add - added, 0)
    return {rs.metadata.name: sizes[rs.metadata.name] for rs in ordered
            if sizes[rs.metadata.name] != rs.spec.replicas}
