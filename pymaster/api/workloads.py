"""Facts about the workload kinds (ReplicaSet, Deployment, DaemonSet, Job) that the registry, the
controllers and pyctl share: their defaults (Kubernetes' ``SetDefaults_*`` of apps/v1 and
batch/v1, the pod template defaulted as a pod is), the pod a template makes, IntOrString
percentages scaled as Kubernetes scales them, a label selector as a string, and the owner
reference a controller puts on what it creates.
"""

from __future__ import annotations

import math
import secrets

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.defaults import default_pod

APPS_V1 = "apps/v1"
BATCH_V1 = "batch/v1"

ROLLING_UPDATE = "RollingUpdate"
RECREATE = "Recreate"
ON_DELETE = "OnDelete"
NON_INDEXED = "NonIndexed"

# The apiserver's generateName: 5 characters of an alphabet without vowels (no words) and
# without look-alikes (0/o, 1/l); the base is cut so that the whole name stays within 63.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
MAX_GENERATED_BASE = 63 - NAME_SUFFIX_LENGTH

DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = "25%"
DEFAULT_REVISION_HISTORY_LIMIT = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_BACKOFF_LIMIT = 6

# Labels the Job controller's selector uses (Kubernetes 1.27+ names).
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

WorkloadMessage = objects_pb2.ReplicaSet | objects_pb2.Deployment | objects_pb2.DaemonSet | objects_pb2.Job


def generate_name(base: str) -> str:
    """A new object name from a generateName base ("web-" -> "web-x7k2q"), as the controllers name
    their pods."""
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
    return base[:MAX_GENERATED_BASE] + suffix


def int_or_string(value: int | str) -> objects_pb2.IntOrString:
    """An IntOrString holding ``value``."""
    if isinstance(value, int):
        return objects_pb2.IntOrString(int_value=value)
    return objects_pb2.IntOrString(str_value=value)


def scaled_value(value: objects_pb2.IntOrString, total: int, round_up: bool) -> int:
    """An IntOrString as a count out of ``total``: the number itself, or "N%" of ``total``
    rounded up (maxSurge) or down (maxUnavailable), as Kubernetes'
    ``GetScaledValueFromIntOrPercent``.

    Raises:
        ValueError: a string that is not "N%".
    """
    if value.WhichOneof("value") != "str_value":
        return value.int_value
    text = value.str_value
    if not text.endswith("%") or not text[:-1].isdigit():
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {text!r}")
    exact = int(text[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def selector_string(selector: objects_pb2.LabelSelector) -> str:
    """A LabelSelector in the string form kubectl shows ("app=web,tier in (a,b)")."""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for expr in selector.match_expressions:
        values = ",".join(sorted(expr.values))
        if expr.operator == "In":
            parts.append(f"{expr.key} in ({values})")
        elif expr.operator == "NotIn":
            parts.append(f"{expr.key} notin ({values})")
        elif expr.operator == "Exists":
            parts.append(expr.key)
        elif expr.operator == "DoesNotExist":
            parts.append(f"!{expr.key}")
    return ",".join(parts)


def default_template(template: objects_pb2.PodTemplateSpec, namespace: str) -> None:
    """The pod template defaulted as a pod of it would be (restartPolicy, grace period, pull
    policies, probe defaults ...), in place, as Kubernetes defaults a template's PodSpec."""
    pod = objects_pb2.Pod(spec=template.spec)
    pod.metadata.namespace = namespace
    default_pod(pod)
    template.spec.CopyFrom(pod.spec)


def default_workload(obj: WorkloadMessage) -> None:
    """apiVersion, kind, namespace and the kind's spec defaults, in place."""
    kind = type(obj).__name__
    obj.api_version = obj.api_version or (BATCH_V1 if kind == "Job" else APPS_V1)
    obj.kind = obj.kind or kind
    obj.metadata.namespace = obj.metadata.namespace or "default"
    spec = obj.spec
    if kind == "Job":
        _default_job(obj)
    elif kind == "DaemonSet":
        strategy = spec.update_strategy
        strategy.type = strategy.type or ROLLING_UPDATE
        if strategy.type == ROLLING_UPDATE:
            if not strategy.rolling_update.HasField("max_unavailable"):
                strategy.rolling_update.max_unavailable.int_value = 1
            if not strategy.rolling_update.HasField("max_surge"):
                strategy.rolling_update.max_surge.int_value = 0
        if not spec.HasField("revision_history_limit"):
            spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    else:
        if not spec.HasField("replicas"):
            spec.replicas = 1
        if kind == "Deployment":
            _default_deployment(obj)
    default_template(spec.template, obj.metadata.namespace)


def _default_deployment(deployment: objects_pb2.Deployment) -> None:
    spec = deployment.spec
    spec.strategy.type = spec.strategy.type or ROLLING_UPDATE
    if spec.strategy.type == ROLLING_UPDATE:
        rolling = spec.strategy.rolling_update
        if not rolling.HasField("max_surge"):
            rolling.max_surge.str_value = DEFAULT_MAX_SURGE
        if not rolling.HasField("max_unavailable"):
            rolling.max_unavailable.str_value = DEFAULT_MAX_UNAVAILABLE
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = DEFAULT_PROGRESS_DEADLINE_SECONDS


def _default_job(job: objects_pb2.Job) -> None:
    spec = job.spec
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
        spec.parallelism = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = DEFAULT_BACKOFF_LIMIT
    if not spec.HasField("completion_mode"):
        spec.completion_mode = NON_INDEXED
    if not spec.HasField("suspend"):
        spec.suspend = False


def label_job(job: objects_pb2.Job) -> None:
    """A new Job's generated selector and template labels (its uid and name, under the current
    and the legacy label names, as Kubernetes' job strategy does), in place, unless it chose its
    own selector (``manualSelector: true``)."""
    if job.spec.manual_selector:
        return
    labels = {JOB_CONTROLLER_UID_LABEL: job.metadata.uid, JOB_NAME_LABEL: job.metadata.name,
              "controller-uid": job.metadata.uid, "job-name": job.metadata.name}
    job.spec.selector.Clear()
    job.spec.selector.match_labels[JOB_CONTROLLER_UID_LABEL] = job.metadata.uid
    job.spec.template.metadata.labels.update(labels)


def controller_reference(owner: Message, block_owner_deletion: bool = True) -> objects_pb2.OwnerReference:
    """The ownerReference a controller puts on what it creates (controller: true)."""
    return objects_pb2.OwnerReference(
        api_version=owner.api_version, kind=owner.kind, name=owner.metadata.name,
        uid=owner.metadata.uid, controller=True, block_owner_deletion=block_owner_deletion,
    )


def controller_of(obj: Message) -> objects_pb2.OwnerReference | None:
    """The ownerReference with controller: true, or None."""
    for ref in obj.metadata.owner_references:
        if ref.controller:
            return ref
    return None


def pod_from_template(
    template: objects_pb2.PodTemplateSpec, owner: Message, name: str
) -> objects_pb2.Pod:
    """A new pod of ``owner`` from its template: the template's labels, annotations and spec,
    the owner's namespace and a controller reference to it."""
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.namespace = owner.metadata.namespace
    pod.metadata.labels.update(template.metadata.labels)
    pod.metadata.annotations.update(template.metadata.annotations)
    pod.metadata.owner_references.append(controller_reference(owner))
    pod.spec.CopyFrom(template.spec)
    return pod
