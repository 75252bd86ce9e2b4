"""Where a DaemonSet's pods go, as pure functions (Kubernetes' pkg/controller/daemon util and
``NodeShouldRunDaemonPod``): the tolerations every daemon pod gets, whether a node should run
(or may keep running) a daemon pod, the node a daemon pod is meant for, the pod for one node
(pinned by required node affinity on ``metadata.name``, so the scheduler places it), the
template's revision hash and pod availability (minReadySeconds).
"""

from __future__ import annotations

import hashlib

from pymaster.api import objects_pb2
from pymaster.api.conditions import find_condition
from pymaster.api.label_selectors import node_selector_matches
from pymaster.api.pods import READY
from pymaster.api.taints import NO_EXECUTE, NO_SCHEDULE, NOT_READY, UNREACHABLE, UNSCHEDULABLE, untolerated
from pymaster.api.workloads import generate_name, pod_from_template

REVISION_HASH_LABEL = "controller-revision-hash"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
NAME_FIELD = "metadata.name"

# Kubernetes' generateName: a base of at most 58 characters and 5 from an alphabet without vowels
# (no accidental words) and without look-alikes.


def add_daemon_tolerations(spec: objects_pb2.PodSpec) -> None:
    """Adds, in place, the tolerations kube's DaemonSet controller gives every daemon pod (without
    tolerationSeconds: a daemon pod stays on a failed node, it would only come back there), unless
    the template already tolerates the taint."""
    wanted = [(NOT_READY, NO_EXECUTE), (UNREACHABLE, NO_EXECUTE), (DISK_PRESSURE, NO_SCHEDULE),
              (MEMORY_PRESSURE, NO_SCHEDULE), (PID_PRESSURE, NO_SCHEDULE), (UNSCHEDULABLE, NO_SCHEDULE)]
    if spec.host_network:
        wanted.append((NETWORK_UNAVAILABLE, NO_SCHEDULE))
    for key, effect in wanted:
        if untolerated([objects_pb2.Taint(key=key, effect=effect)], spec.tolerations, (effect,)) is not None:
            spec.tolerations.add(key=key, operator="Exists", effect=effect)


def template_hash(ds: objects_pb2.DaemonSet) -> str:
    """The ``controller-revision-hash`` of the DaemonSet's current template: stable across
    restarts (a digest of its deterministic serialisation), changed by any template change."""
    data = ds.spec.template.SerializeToString(deterministic=True)
    return hashlib.sha256(data).hexdigest()[:10]


def daemon_spec(ds: objects_pb2.DaemonSet) -> objects_pb2.PodSpec:
    """The pod spec of ``ds``'s pods as placement sees it: the template's, with the daemon
    tolerations (computed once per sync, then matched against every node)."""
    spec = objects_pb2.PodSpec()
    spec.CopyFrom(ds.spec.template.spec)
    add_daemon_tolerations(spec)
    return spec


def node_should_run(spec: objects_pb2.PodSpec, node: objects_pb2.Node) -> tuple[bool, bool]:
    """(should run, should continue running) a daemon pod of ``spec`` (``daemon_spec``) on
    ``node``, as kube's ``NodeShouldRunDaemonPod``: nodeSelector and required node affinity must
    match; a NoSchedule or NoExecute taint the pod does not tolerate stops new pods, and only a
    NoExecute one also removes the pods already there."""
    labels = node.metadata.labels
    if any(labels.get(key) != value for key, value in spec.node_selector.items()):
        return False, False
    affinity = spec.affinity.node_affinity
    if affinity.HasField("required_during_scheduling_ignored_during_execution"):
        if not node_selector_matches(affinity.required_during_scheduling_ignored_during_execution, node):
            return False, False
    taints = node.spec.taints
    if untolerated(taints, spec.tolerations, (NO_SCHEDULE, NO_EXECUTE)) is None:
        return True, True
    return False, untolerated(taints, spec.tolerations, (NO_EXECUTE,)) is None


def target_node(pod: objects_pb2.Pod) -> str:
    """The node a daemon pod is for: its spec.nodeName once bound, else the node its required
    affinity pins it to ("" when neither says)."""
    if pod.spec.node_name:
        return pod.spec.node_name
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in required.node_selector_terms:
        for field in term.match_fields:
            if field.key == NAME_FIELD and field.operator == "In" and len(field.values) == 1:
                return field.values[0]
    return ""


def daemon_pod(ds: objects_pb2.DaemonSet, node_name: str, revision: str) -> objects_pb2.Pod:
    """The new pod of ``ds`` for ``node_name``: the template, the daemon tolerations, the revision
    label, and the template's required node affinity replaced by ``metadata.name In [node]`` (as
    kube's ``ReplaceDaemonSetPodNodeNameNodeAffinity``: the controller has already checked the
    template's own terms against the node)."""
    pod = pod_from_template(ds.spec.template, ds, generate_name(f"{ds.metadata.name}-"))
    pod.metadata.labels[REVISION_HASH_LABEL] = revision
    add_daemon_tolerations(pod.spec)
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    required.Clear()
    required.node_selector_terms.add().match_fields.add(key=NAME_FIELD, operator="In", values=[node_name])
    return pod


def pod_ready(pod: objects_pb2.Pod) -> bool:
    condition = find_condition(pod.status.conditions, READY)
    return condition is not None and condition.status == "True"


def available_in(pod: objects_pb2.Pod, min_ready_seconds: int, now: float) -> float | None:
    """Seconds until ``pod`` is available (0: it is; ready for ``min_ready_seconds``), or None
    while it is not ready (kube's ``IsPodAvailable``)."""
    condition = find_condition(pod.status.conditions, READY)
    if condition is None or condition.status != "True":
        return None
    if min_ready_seconds <= 0:
        return 0.0
    return max(0.0, condition.last_transition_time.seconds + min_ready_seconds - now)
