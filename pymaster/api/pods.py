"""Pod facts shared by the master and the agent: phases, grace periods, pull-policy and request
defaulting, and the condition types (kube's ``pkg/api/v1/pod`` helpers).

One home for each rule, so the scheduler, the registry, pyctl and the agent can never disagree
on, say, which phases are final or what a container without a cpu request asks for.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymaster.api import objects_pb2
from pymaster.api.quantity import cpu_millis, memory_bytes

PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN = "Pending", "Running", "Succeeded", "Failed", "Unknown"
POD_PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN)
# A pod in one of these phases never runs again and no longer holds node resources.
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

DEFAULT_GRACE_PERIOD_SECONDS = 30

# Condition types. PodScheduled is the master's; the others belong to the agent running the pod.
POD_SCHEDULED = "PodScheduled"
INITIALIZED = "Initialized"
CONTAINERS_READY = "ContainersReady"
READY = "Ready"
MASTER_POD_CONDITIONS = frozenset({POD_SCHEDULED})


def pod_key(pod: objects_pb2.Pod) -> str:
    """ "namespace/name", the key logs and caches use for a pod."""
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def is_terminal(pod: objects_pb2.Pod) -> bool:
    """True once the pod's phase is Succeeded or Failed."""
    return pod.status.phase in TERMINAL_PHASES


def is_pending_schedule(pod: objects_pb2.Pod) -> bool:
    """True when the scheduler should place the pod: unbound and not being deleted."""
    return not pod.spec.node_name and not pod.metadata.HasField("deletion_timestamp")


def grace_period_seconds(pod: objects_pb2.Pod) -> int:
    """The grace period to stop ``pod`` with: the deletion's when it is being deleted, else the
    spec's terminationGracePeriodSeconds, else the default (30)."""
    meta, spec = pod.metadata, pod.spec
    if meta.HasField("deletion_timestamp") and meta.HasField("deletion_grace_period_seconds"):
        return meta.deletion_grace_period_seconds
    if spec.HasField("termination_grace_period_seconds"):
        return spec.termination_grace_period_seconds
    return DEFAULT_GRACE_PERIOD_SECONDS


def _image_tag(image: str) -> tuple[str, bool]:
    """(tag, has_digest) of an image reference; the tag is "" when absent."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    return tag, bool(digest)


def default_pull_policy(image: str) -> str:
    """Kubernetes' default imagePullPolicy: Always for the tag ":latest" (also when pinned by a
    digest, as Kubernetes decides by the tag alone) or no tag and no digest, else IfNotPresent."""
    tag, has_digest = _image_tag(image)
    if tag == "latest" or (not tag and not has_digest):
        return "Always"
    return "IfNotPresent"


def effective_requests(resources: objects_pb2.ResourceRequirements) -> Mapping[str, str]:
    """What a container requests: its requests, and for each resource with a limit but no
    request, the limit (Kubernetes' defaulting)."""
    requests = dict(resources.limits)
    requests.update(resources.requests)
    return requests


def _container_requests(container: objects_pb2.Container) -> tuple[int, int]:
    requests = effective_requests(container.resources)
    cpu = cpu_millis(requests["cpu"]) if "cpu" in requests else 0
    memory = memory_bytes(requests["memory"]) if "memory" in requests else 0
    return cpu, memory


def is_sidecar(container: objects_pb2.Container) -> bool:
    """An init container with restartPolicy Always: it keeps running beside the app containers."""
    return container.restart_policy == "Always"


def pod_requests(pod: objects_pb2.Pod) -> tuple[int, int]:
    """The (cpu milli-cores, memory bytes) a pod asks the scheduler for, by Kubernetes' rule:
    the larger of what runs at the end (the app containers plus the sidecars) and what runs while
    each plain init container runs (it plus the sidecars started before it); each container's
    requests are ``effective_requests``. Expects a validated pod.

    Raises:
        ValueError: a quantity does not parse (the pod was not validated).
    """
    cpu = memory = 0  # what runs along: the sidecars started so far
    peak_cpu = peak_memory = 0
    for container in pod.spec.init_containers:
        c, m = _container_requests(container)
        if is_sidecar(container):
            cpu, memory = cpu + c, memory + m
        else:
            peak_cpu, peak_memory = max(peak_cpu, cpu + c), max(peak_memory, memory + m)
    for container in pod.spec.containers:
        c, m = _container_requests(container)
        cpu, memory = cpu + c, memory + m
    return max(cpu, peak_cpu), max(memory, peak_memory)


def qos_class(pod: objects_pb2.Pod) -> str:
    """The pod's QoS class by Kubernetes' rules for cpu and memory: Guaranteed when every
    container limits both and its (effective) requests equal the limits, BestEffort when none
    requests or limits anything, Burstable otherwise."""
    any_set, guaranteed = False, True
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        limits = container.resources.limits
        requests = effective_requests(container.resources)
        for resource in ("cpu", "memory"):
            if resource in requests:
                any_set = True
            if resource not in limits or requests[resource] != limits[resource]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
