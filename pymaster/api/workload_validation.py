"""Validation of the workload kinds (Kubernetes' ``pkg/apis/apps/validation`` and
``pkg/apis/batch/validation``, the rules users meet): metadata, a selector that selects the
template's labels, counts that are not negative, the update strategy, and the pod template
checked exactly as a pod of it will be at creation (validation and the master's admission
policy), so a template that could never make a pod is refused at apply with its path under
``spec.template``. Updates keep what Kubernetes keeps immutable (the selector; a Job's template
and completions).

Messages follow Kubernetes' wording (``spec.selector: Required value``,
``spec.template.metadata.labels: Invalid value: ...: `selector` does not match template
`labels```).
"""

from __future__ import annotations

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy, check_pod
from pymaster.api.checks import check_metadata, quote
from pymaster.api.default_tolerations import add_default_tolerations
from pymaster.api.errors import Forbidden, ValidationError
from pymaster.api.label_selectors import label_selector_matches
from pymaster.api.limits import check_pod_limits
from pymaster.api.priority import resolve_priority
from pymaster.api.scheduling_validation import check_label_selector
from pymaster.api.validation import validate_pod
from pymaster.api.workloads import (
    APPS_V1,
    BATCH_V1,
    NON_INDEXED,
    ON_DELETE,
    RECREATE,
    ROLLING_UPDATE,
    WorkloadMessage,
    scaled_value,
    selector_string,
)

_TEMPLATE_POD_NAME = "template"


def _unsupported(path: str, value: str, supported: tuple[str, ...]) -> ValidationError:
    return ValidationError(
        path, f"Unsupported value: {quote(value)}: supported values: {', '.join(quote(v) for v in supported)}"
    )


def _non_negative(path: str, value: int) -> None:
    if value < 0:
        raise ValidationError(path, f"Invalid value: {value}: must be greater than or equal to 0")


def validate_workload(obj: WorkloadMessage, policy: AdmissionPolicy | None = None) -> None:
    """Checks a defaulted workload (``pymaster.api.workloads.default_workload``).

    Raises:
        ValidationError: naming the field; Forbidden: the template asks for what the master's
            admission policy refuses.
    """
    kind = type(obj).__name__
    expected_version = BATCH_V1 if kind == "Job" else APPS_V1
    if obj.api_version != expected_version:
        raise ValidationError("apiVersion", f"unsupported apiVersion {quote(obj.api_version)} for {kind}; "
                                            f"supported: {expected_version}")
    if obj.kind != kind:
        raise ValidationError("kind", f"must be {kind}, not {quote(obj.kind)}")
    check_metadata(obj.metadata, namespaced=True)
    spec = obj.spec
    if kind in ("ReplicaSet", "Deployment"):
        _non_negative("spec.replicas", spec.replicas)
    if kind != "Job":
        _non_negative("spec.minReadySeconds", spec.min_ready_seconds)
        _non_negative("spec.revisionHistoryLimit", getattr(spec, "revision_history_limit", 0))
    _check_selector(obj)
    if kind == "Deployment":
        _check_deployment(obj)
    elif kind == "DaemonSet":
        _check_daemon_set(obj)
    elif kind == "Job":
        _check_job(obj)
    _check_template(obj, policy)


def _check_selector(obj: WorkloadMessage) -> None:
    selector = obj.spec.selector
    if not selector.match_labels and not selector.match_expressions:
        if type(obj).__name__ == "Job":
            raise ValidationError("spec.selector", "Required value: with manualSelector: true")
        raise ValidationError("spec.selector", "Required value")
    check_label_selector("spec.selector", selector)
    labels = obj.spec.template.metadata.labels
    if not label_selector_matches(selector, labels):
        shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        raise ValidationError(
            "spec.template.metadata.labels",
            f"Invalid value: {quote(shown)}: `selector` ({selector_string(selector)}) does not match "
            "template `labels`",
        )


def _check_int_or_percent(path: str, value: objects_pb2.IntOrString) -> int:
    """The value scaled out of 100 (percentages as written), checked."""
    try:
        scaled = scaled_value(value, 100, round_up=True)
    except ValueError:
        raise ValidationError(
            path, f"Invalid value: {quote(value.str_value)}: a valid percent string must be a numeric string "
            "followed by an ending '%' (e.g. '1%',  or '93%')"
        ) from None
    _non_negative(path, scaled)
    if value.WhichOneof("value") == "str_value" and scaled > 100:
        raise ValidationError(path, f"Invalid value: {quote(value.str_value)}: must not be greater than 100%")
    return scaled


def _check_rolling(path: str, rolling: Message) -> None:
    surge = _check_int_or_percent(f"{path}.maxSurge", rolling.max_surge)
    unavailable = _check_int_or_percent(f"{path}.maxUnavailable", rolling.max_unavailable)
    if surge == 0 and unavailable == 0:
        raise ValidationError(f"{path}.maxUnavailable", "Invalid value: 0: may not be 0 when `maxSurge` is 0")


def _check_deployment(deployment: objects_pb2.Deployment) -> None:
    spec = deployment.spec
    strategy = spec.strategy
    if strategy.type not in (ROLLING_UPDATE, RECREATE):
        raise _unsupported("spec.strategy.type", strategy.type, (RECREATE, ROLLING_UPDATE))
    if strategy.type == RECREATE:
        if strategy.HasField("rolling_update"):
            raise ValidationError("spec.strategy.rollingUpdate",
                                  "Forbidden: may not be specified when strategy `type` is 'Recreate'")
    else:
        _check_rolling("spec.strategy.rollingUpdate", strategy.rolling_update)
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        raise ValidationError("spec.progressDeadlineSeconds",
                              f"Invalid value: {spec.progress_deadline_seconds}: must be greater than "
                              "minReadySeconds")


def _check_daemon_set(daemon_set: objects_pb2.DaemonSet) -> None:
    strategy = daemon_set.spec.update_strategy
    if strategy.type not in (ROLLING_UPDATE, ON_DELETE):
        raise _unsupported("spec.updateStrategy.type", strategy.type, (ON_DELETE, ROLLING_UPDATE))
    if strategy.type == ROLLING_UPDATE:
        rolling = strategy.rolling_update
        if _check_int_or_percent("spec.updateStrategy.rollingUpdate.maxSurge", rolling.max_surge):
            # Surge needs two pods of one DaemonSet on a node at once (host ports collide);
            # Kubernetes' default, 0, is what pykube offers.
            raise ValidationError("spec.updateStrategy.rollingUpdate.maxSurge",
                                  "not supported: only 0 (replace a node's pod after stopping the old one)")
        unavailable = _check_int_or_percent("spec.updateStrategy.rollingUpdate.maxUnavailable",
                                            rolling.max_unavailable)
        if unavailable == 0:
            raise ValidationError("spec.updateStrategy.rollingUpdate.maxUnavailable",
                                  "Invalid value: 0: may not be 0 when `maxSurge` is 0")


def _check_job(job: objects_pb2.Job) -> None:
    spec = job.spec
    for path, field in (("spec.parallelism", "parallelism"), ("spec.completions", "completions"),
                        ("spec.backoffLimit", "backoff_limit")):
        if spec.HasField(field):
            _non_negative(path, getattr(spec, field))
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds <= 0:
        raise ValidationError("spec.activeDeadlineSeconds",
                              f"Invalid value: {spec.active_deadline_seconds}: must be greater than 0")
    if spec.HasField("ttl_seconds_after_finished"):
        _non_negative("spec.ttlSecondsAfterFinished", spec.ttl_seconds_after_finished)
    if spec.completion_mode != NON_INDEXED:
        raise _unsupported("spec.completionMode", spec.completion_mode, (NON_INDEXED,))
    if spec.suspend:
        raise ValidationError("spec.suspend", "not supported yet: a Job runs from its creation")
    policy = spec.template.spec.restart_policy
    if policy not in ("OnFailure", "Never"):
        raise _unsupported("spec.template.spec.restartPolicy", policy, ("OnFailure", "Never"))


def template_pod(obj: WorkloadMessage) -> objects_pb2.Pod:
    """The pod a workload's template describes (named "template"), as the controller would
    create it before the server's own defaulting."""
    template = obj.spec.template
    pod = objects_pb2.Pod(api_version="v1", kind="Pod", spec=template.spec)
    pod.metadata.name = _TEMPLATE_POD_NAME
    pod.metadata.namespace = obj.metadata.namespace
    pod.metadata.labels.update(template.metadata.labels)
    pod.metadata.annotations.update(template.metadata.annotations)
    return pod


def _check_template(obj: WorkloadMessage, policy: AdmissionPolicy | None) -> None:
    template = obj.spec.template
    if template.metadata.name or template.metadata.namespace or template.metadata.owner_references:
        raise ValidationError("spec.template.metadata",
                              "only labels and annotations may be set (the controller names its pods)")
    if type(obj).__name__ != "Job" and template.spec.restart_policy != "Always":
        raise _unsupported("spec.template.spec.restartPolicy", template.spec.restart_policy, ("Always",))
    pod = template_pod(obj)
    try:
        check_pod_limits(pod)
        if policy is not None:
            add_default_tolerations(pod, policy.not_ready_toleration_seconds,
                                    policy.unreachable_toleration_seconds)
        validate_pod(pod)
        resolve_priority(pod)
    except ValidationError as exc:
        raise ValidationError(_template_path(exc.field), exc.detail) from None
    if policy is not None:
        violations = check_pod(pod, policy)
        if violations:
            raise Forbidden("spec.template: " + "; ".join(str(v) for v in violations))


def _template_path(field: str) -> str:
    """A pod's field path as the template's ("spec.containers[0]" -> "spec.template.spec.containers[0]")."""
    return f"spec.template.{field}" if field else "spec.template"


def validate_workload_update(current: WorkloadMessage, new: WorkloadMessage) -> None:
    """What an update may not change (after ``validate_workload`` of ``new``).

    Raises:
        ValidationError: naming the immutable field.
    """
    if current.spec.selector != new.spec.selector:
        raise ValidationError("spec.selector", f"Invalid value: {quote(selector_string(new.spec.selector))}: "
                                               "field is immutable")
    if type(current).__name__ == "Job":
        if current.spec.template != new.spec.template:
            raise ValidationError("spec.template", "Invalid value: field is immutable")
        if current.spec.completions != new.spec.completions:
            raise ValidationError("spec.completions",
                                  f"Invalid value: {new.spec.completions}: field is immutable")
