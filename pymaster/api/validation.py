"""Validation of API objects (pods, nodes, events), with Kubernetes' rules and field paths; the
building blocks are ``pymaster.api.checks``, a pod's containers ``container_validation``.

Every check raises ``ValidationError`` naming the field (``spec.containers[0].image: required``);
the first error found is raised, in a fixed order: metadata, then spec fields in declaration
order, map keys sorted. ``validate_pod`` accepts a pod both before and after defaulting
(``pymaster.api.defaults``): fields that defaulting fills (restartPolicy, imagePullPolicy, protocol,
namespace) may be empty.
Status is never validated: the server owns it.

Hostile input: counts and sizes are bounded (``MAX_CONTAINERS`` containers, ``MAX_VOLUMES``
volumes, ``MAX_ENV`` env entries, ``MAX_STRING_BYTES`` per command/args/env string ...), checked
before the elements themselves so a huge pod costs little to refuse, and a value quoted in a
message is cut to ``checks.QUOTE_MAX`` characters so an error always fits in a gRPC status.

Volumes are ``volume_validation``'s (Kubernetes' rules for every source pykube supports);
``securityContext.privileged`` and ``hostNetwork`` are valid whatever their value: whether they
are allowed is the master's admission policy (and the agent's), not validation.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    DNS1123_SUBDOMAIN_MAX,
    check_count,
    check_dns_label,
    check_dns_subdomain,
    check_enum,
    check_labels,
    check_metadata,
    check_quantities,
    check_string_size,
    check_type_meta,
)
from pymaster.api.container_validation import check_container
from pymaster.api.dns_validation import check_pod_dns
from pymaster.api.errors import ValidationError
from pymaster.api.resource_validation import check_pod_resources
from pymaster.api.scheduling_validation import (
    check_scheduling,
    check_scheduling_gates_update,
    check_taints,
    check_tolerations_update,
)
from pymaster.api.security_validation import check_apparmor_annotation_update, check_pod_security
from pymaster.api.volume_validation import check_volumes

MAX_CONTAINERS = 64  # app containers, and init containers
MAX_VOLUMES = 64
RESTART_POLICIES = ("Always", "OnFailure", "Never")
NODE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")
CONDITION_STATUSES = ("True", "False", "Unknown")
_IMMUTABLE = (
    "field is immutable (a pod update may only change labels, annotations, container images and "
    "activeDeadlineSeconds)"
)


# ---- pods ----


def validate_pod(pod: objects_pb2.Pod) -> None:
    """Check a pod's metadata and spec the way Kubernetes' API server does.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    check_type_meta(pod.api_version, pod.kind, "Pod")
    check_metadata(pod.metadata, namespaced=True)
    spec = pod.spec
    if not spec.containers:
        raise ValidationError("spec.containers", "required")
    check_count("spec.containers", spec.containers, MAX_CONTAINERS, "containers")
    check_count("spec.volumes", spec.volumes, MAX_VOLUMES, "volumes")
    # Mounts are checked against the volumes' names; the volumes themselves in field order.
    volume_names = {volume.name for volume in spec.volumes}
    names: set[str] = set()
    ports_seen: set[tuple] = set()
    check_count("spec.initContainers", spec.init_containers, MAX_CONTAINERS, "init containers")
    for i, container in enumerate(spec.init_containers):
        path = f"spec.initContainers[{i}]"
        check_container(path, container, names, ports_seen, spec, volume_names, init=True)
    for i, container in enumerate(spec.containers):
        check_container(f"spec.containers[{i}]", container, names, ports_seen, spec, volume_names)
    check_enum("spec.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    if spec.node_name:
        check_dns_subdomain("spec.nodeName", spec.node_name)
    check_labels("spec.nodeSelector", spec.node_selector)
    if spec.HasField("termination_grace_period_seconds") and spec.termination_grace_period_seconds < 0:
        raise ValidationError("spec.terminationGracePeriodSeconds", "must be greater than or equal to 0")
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds < 1:
        raise ValidationError("spec.activeDeadlineSeconds", "must be greater than 0")
    if spec.service_account_name:
        check_dns_subdomain("spec.serviceAccountName", spec.service_account_name)
    check_pod_dns(spec)
    check_scheduling(spec)
    check_pod_security(spec, pod.metadata.annotations)
    check_pod_resources(spec)
    check_volumes(spec.volumes, (c.name for c in (*spec.init_containers, *spec.containers)))


def _first_difference(path: str, old: Message, new: Message, skip: Callable[[str], bool]) -> str | None:
    """The path of the first field (in declaration order) that differs, or None."""
    for field in old.DESCRIPTOR.fields:
        name = field.json_name
        if skip(name):
            continue
        # Presence matters for optional scalars (an unset grace period is not 0), not for messages:
        # an empty `resources: {}` is the same as none.
        is_scalar = field.message_type is None
        if is_scalar and field.has_presence and old.HasField(field.name) != new.HasField(field.name):
            return f"{path}.{name}"
        if getattr(old, field.name) != getattr(new, field.name):
            return f"{path}.{name}"
    return None


def validate_pod_update(old: objects_pb2.Pod, new: objects_pb2.Pod) -> None:
    """Check that an update changes only what Kubernetes lets a pod update change.

    ``new`` must itself be a valid pod; besides, only metadata.labels, metadata.annotations (not
    the AppArmor ones), the images of spec.containers and spec.initContainers,
    spec.activeDeadlineSeconds (set, or made shorter), spec.tolerations (added, or an existing
    one's tolerationSeconds made shorter) and spec.schedulingGates (removed) may differ from
    ``old`` (both are expected to be defaulted). Fields the server manages (uid, resourceVersion,
    timestamps, generation) and status are not compared.

    Raises:
        ValidationError: naming the first field that is invalid or must not change.
    """
    validate_pod(new)
    for name in ("name", "namespace"):
        if getattr(old.metadata, name) != getattr(new.metadata, name):
            raise ValidationError(f"metadata.{name}", _IMMUTABLE)
    check_apparmor_annotation_update(old.metadata.annotations, new.metadata.annotations)
    lists = ("containers", "initContainers", "activeDeadlineSeconds", "tolerations", "schedulingGates")
    changed = _first_difference("spec", old.spec, new.spec, lambda name: name in lists)
    if changed:
        raise ValidationError(changed, _IMMUTABLE)
    check_tolerations_update(old.spec.tolerations, new.spec.tolerations)
    check_scheduling_gates_update(old.spec.scheduling_gates, new.spec.scheduling_gates)
    if new.spec.HasField("active_deadline_seconds") and not (
        not old.spec.HasField("active_deadline_seconds")
        or new.spec.active_deadline_seconds <= old.spec.active_deadline_seconds
    ) or (old.spec.HasField("active_deadline_seconds") and not new.spec.HasField("active_deadline_seconds")):
        raise ValidationError("spec.activeDeadlineSeconds", "may only be set, or made shorter")
    for field, json in (("init_containers", "initContainers"), ("containers", "containers")):
        before, after = getattr(old.spec, field), getattr(new.spec, field)
        if len(before) != len(after):
            raise ValidationError(f"spec.{json}", "may not add or remove containers")
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            changed = _first_difference(f"spec.{json}[{i}]", a, b, lambda name: name == "image")
            if changed:
                raise ValidationError(changed, _IMMUTABLE)


# ---- nodes ----


def validate_node(node: objects_pb2.Node) -> None:
    """Check a node: cluster-scoped metadata, taints, quantities in capacity/allocatable,
    addresses, conditions and the daemon endpoint port.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    check_type_meta(node.api_version, node.kind, "Node")
    check_metadata(node.metadata, namespaced=False)
    check_taints("spec.taints", node.spec.taints)
    status = node.status
    check_quantities("status.capacity", status.capacity, NODE_RESOURCES)
    check_quantities("status.allocatable", status.allocatable, NODE_RESOURCES)
    for i, condition in enumerate(status.conditions):
        if not condition.type:
            raise ValidationError(f"status.conditions[{i}].type", "required")
        check_enum(f"status.conditions[{i}].status", condition.status, CONDITION_STATUSES, required=True)
    for i, address in enumerate(status.addresses):
        check_enum(f"status.addresses[{i}].type", address.type, NODE_ADDRESS_TYPES, required=True)
        if not address.address:
            raise ValidationError(f"status.addresses[{i}].address", "required")
    port = status.daemon_endpoints.kubelet_endpoint.port
    if not 0 <= port <= 65535:
        raise ValidationError("status.daemonEndpoints.kubeletEndpoint.Port", "must be between 1 and 65535")


# ---- events ----

EVENT_TYPES = ("Normal", "Warning")
MAX_EVENT_MESSAGE_BYTES = 1024  # Kubernetes' events.k8s.io "note" limit


def validate_event(event: objects_pb2.Event, named: bool = True) -> None:
    """Check an event: the object it is about, namespaced metadata, a reason, a known type, a
    message of at most ``MAX_EVENT_MESSAGE_BYTES``, a positive count (timestamps are checked
    when defaulted: ``registry.events.default_event``). The involved object comes first: an
    event's name and namespace are made from it.

    Args:
        event: the event.
        named: False: its metadata is not checked (it has no name yet).

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    check_type_meta(event.api_version, event.kind, "Event")
    involved = event.involved_object
    if not involved.kind:
        raise ValidationError("involvedObject.kind", "required")
    if not involved.name:
        raise ValidationError("involvedObject.name", "required")
    if involved.namespace:
        check_dns_label("involvedObject.namespace", involved.namespace)
    if named:
        check_metadata(event.metadata, namespaced=True)
    if not event.reason:
        raise ValidationError("reason", "required")
    check_string_size("reason", event.reason, 128)
    check_enum("type", event.type, EVENT_TYPES, required=True)
    check_string_size("message", event.message, MAX_EVENT_MESSAGE_BYTES)
    for path, value in (("source.component", event.source.component), ("source.host", event.source.host)):
        check_string_size(path, value, DNS1123_SUBDOMAIN_MAX)
    if event.count < 1:
        raise ValidationError("count", "must be at least 1")
