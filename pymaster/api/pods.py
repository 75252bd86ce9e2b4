"""Pod facts shared by the master and the agent: phases, grace periods, pull-policy and request
defaulting, what a pod requests per resource (extended resources included), its QoS class, and the
condition types (kube's ``pkg/api/v1/pod`` and ``qos`` helpers).

One home for each rule, so the scheduler, the registry, pyctl and the agent can never disagree
on, say, which phases are final or what a container without a cpu request asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from pymaster.api import objects_pb2
from pymaster.api.quantity import cpu_millis, memory_bytes, parse_quantity

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
    request, the limit (Kubernetes' defaulting, which ``defaults.default_pod`` also stores)."""
    requests = dict(resources.limits)
    requests.update(resources.requests)
    return requests


def is_native_resource(name: str) -> bool:
    """Kubernetes' IsNativeResource: a bare name (cpu, memory, hugepages-2Mi ...) or one under the
    kubernetes.io domain."""
    return "/" not in name or "kubernetes.io/" in name


def is_extended_resource(name: str) -> bool:
    """Kubernetes' IsExtendedResourceName (the name's syntax aside): a domain-prefixed name
    outside kubernetes.io, e.g. ``example.com/dongle``. Extended resources are whole numbers,
    never overcommitted, and do not count for the QoS class."""
    return not is_native_resource(name) and not name.startswith("requests.")


def resource_amount(name: str, quantity: str) -> int:
    """A quantity of resource ``name`` as the whole number the scheduler adds up: milli-cores for
    cpu, else base units (bytes, devices), rounded up.

    Raises:
        ValueError: the quantity does not parse.
    """
    return cpu_millis(quantity) if name == "cpu" else memory_bytes(quantity)


def _container_amounts(container: objects_pb2.Container) -> dict[str, int]:
    return {name: resource_amount(name, q) for name, q in effective_requests(container.resources).items()}


def _add(total: dict[str, int], amounts: Mapping[str, int]) -> None:
    for name, amount in amounts.items():
        total[name] = total.get(name, 0) + amount


def is_sidecar(container: objects_pb2.Container) -> bool:
    """An init container with restartPolicy Always: it keeps running beside the app containers."""
    return container.restart_policy == "Always"


def pod_resource_requests(pod: objects_pb2.Pod) -> dict[str, int]:
    """What a pod asks the scheduler for, per resource (``resource_amount`` units: cpu in
    milli-cores, memory in bytes, extended resources in devices), by Kubernetes' rule: for each
    resource the larger of what runs at the end (the app containers plus the sidecars) and what
    runs while each plain init container runs (it plus the sidecars started before it); each
    container's requests are ``effective_requests``. Expects a validated pod.

    Raises:
        ValueError: a quantity does not parse (the pod was not validated).
    """
    running: dict[str, int] = {}  # the app containers and every sidecar
    sidecars: dict[str, int] = {}  # the sidecars started so far
    peak: dict[str, int] = {}  # the largest need of one plain init container and its sidecars
    for container in pod.spec.init_containers:
        amounts = _container_amounts(container)
        if is_sidecar(container):
            _add(sidecars, amounts)
            _add(running, amounts)
            continue
        during = dict(sidecars)
        _add(during, amounts)
        for name, amount in during.items():
            peak[name] = max(peak.get(name, 0), amount)
    for container in pod.spec.containers:
        _add(running, _container_amounts(container))
    for name, amount in peak.items():
        running[name] = max(running.get(name, 0), amount)
    return running


def pod_requests(pod: objects_pb2.Pod) -> tuple[int, int]:
    """The (cpu milli-cores, memory bytes) of ``pod_resource_requests``.

    Raises:
        ValueError: a quantity does not parse (the pod was not validated).
    """
    requests = pod_resource_requests(pod)
    return requests.get("cpu", 0), requests.get("memory", 0)


# Only these count for the QoS class (Kubernetes' supportedQoSComputeResources).
QOS_RESOURCES = ("cpu", "memory")
GUARANTEED, BURSTABLE, BEST_EFFORT = "Guaranteed", "Burstable", "BestEffort"


def qos_class(pod: objects_pb2.Pod) -> str:
    """The pod's QoS class, Kubernetes' GetPodQOS over every container (init ones included), cpu
    and memory only (extended resources, ephemeral-storage and zero quantities do not count):
    BestEffort when nothing is requested or limited; Guaranteed when every container limits both
    cpu and memory and the pod's summed requests equal its summed limits; Burstable otherwise.
    Requests are ``effective_requests`` (a limit alone is the request); quantities are compared
    by value ("1" == "1000m"). Expects a validated pod.

    Raises:
        ValueError: a quantity does not parse (the pod was not validated).
    """
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for container in [*pod.spec.containers, *pod.spec.init_containers]:
        _add_positive(requests, effective_requests(container.resources))
        limited = _add_positive(limits, container.resources.limits)
        if limited != set(QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return BEST_EFFORT
    return GUARANTEED if guaranteed and requests == limits else BURSTABLE


def _add_positive(total: dict[str, Decimal], quantities: Mapping[str, str]) -> set[str]:
    """Adds the positive cpu and memory ``quantities`` to ``total``; returns their names."""
    added = set()
    for name in QOS_RESOURCES:
        amount = parse_quantity(quantities[name]) if name in quantities else Decimal(0)
        if amount > 0:
            total[name] = total.get(name, Decimal(0)) + amount
            added.add(name)
    return added
