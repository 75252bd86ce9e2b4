"""``pyctl get`` columns of the workload kinds, as kubectl 1.32 prints them (its printDeployment,
printReplicaSet, printDaemonSet and printJob): pure functions of the object and the current time.

Each kind has a ``*_header(wide=...)`` and a ``*_row(obj, now, wide=...)``; ``-o wide`` adds
CONTAINERS, IMAGES and SELECTOR (the pod template's container names and images, comma-joined, and
the label selector in its string form).
"""

from __future__ import annotations

from typing import Any

from pymaster.api import objects_pb2
from pymaster.api.workloads import selector_string
from pymaster.cli.printers import NONE, format_labels
from pymaster.cli.timefmt import age, human_duration, timestamp_seconds

WIDE = ["CONTAINERS", "IMAGES", "SELECTOR"]


def _age(obj: Any, now: float) -> str:
    meta = obj.metadata
    return age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp"))


def _wide(template: objects_pb2.PodTemplateSpec, selector: objects_pb2.LabelSelector) -> list[str]:
    containers = template.spec.containers
    return [
        ",".join(c.name for c in containers),
        ",".join(c.image for c in containers),
        selector_string(selector) or NONE,
    ]


def _replicas(spec: Any) -> int:
    """spec.replicas, 1 when unset (the API defaults it; a manifest read locally may lack it)."""
    return spec.replicas if spec.HasField("replicas") else 1


def deployment_header(*, wide: bool = False) -> list[str]:
    """kubectl get deployments: NAME READY UP-TO-DATE AVAILABLE AGE."""
    return ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", *(WIDE if wide else [])]


def deployment_row(deployment: objects_pb2.Deployment, now: float, *, wide: bool = False) -> list[str]:
    """READY is ready/desired replicas."""
    status = deployment.status
    row = [
        deployment.metadata.name,
        f"{status.ready_replicas}/{_replicas(deployment.spec)}",
        str(status.updated_replicas),
        str(status.available_replicas),
        _age(deployment, now),
    ]
    return row + (_wide(deployment.spec.template, deployment.spec.selector) if wide else [])


def replica_set_header(*, wide: bool = False) -> list[str]:
    """kubectl get replicasets: NAME DESIRED CURRENT READY AGE."""
    return ["NAME", "DESIRED", "CURRENT", "READY", "AGE", *(WIDE if wide else [])]


def replica_set_row(rs: objects_pb2.ReplicaSet, now: float, *, wide: bool = False) -> list[str]:
    row = [
        rs.metadata.name,
        str(_replicas(rs.spec)),
        str(rs.status.replicas),
        str(rs.status.ready_replicas),
        _age(rs, now),
    ]
    return row + (_wide(rs.spec.template, rs.spec.selector) if wide else [])


def daemon_set_header(*, wide: bool = False) -> list[str]:
    """kubectl get daemonsets: NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE."""
    header = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    return header + (WIDE if wide else [])


def daemon_set_row(ds: objects_pb2.DaemonSet, now: float, *, wide: bool = False) -> list[str]:
    status = ds.status
    row = [
        ds.metadata.name,
        str(status.desired_number_scheduled),
        str(status.current_number_scheduled),
        str(status.number_ready),
        str(status.updated_number_scheduled),
        str(status.number_available),
        format_labels(ds.spec.template.spec.node_selector),
        _age(ds, now),
    ]
    return row + (_wide(ds.spec.template, ds.spec.selector) if wide else [])


def _has_condition(job: objects_pb2.Job, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in job.status.conditions)


def job_status(job: objects_pb2.Job) -> str:
    """The STATUS column: Complete, Failed, Terminating, Suspended, FailureTarget,
    SuccessCriteriaMet or Running, in kubectl's order of precedence."""
    if _has_condition(job, "Complete"):
        return "Complete"
    if _has_condition(job, "Failed"):
        return "Failed"
    if job.metadata.HasField("deletion_timestamp"):
        return "Terminating"
    for condition in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has_condition(job, condition):
            return condition
    return "Running"


def job_completions(job: objects_pb2.Job) -> str:
    """The COMPLETIONS column: "succeeded/completions", or "succeeded/1 of parallelism" for a
    work-queue Job (no completions) running several pods at once."""
    succeeded, spec = job.status.succeeded, job.spec
    if spec.HasField("completions"):
        return f"{succeeded}/{spec.completions}"
    parallelism = spec.parallelism if spec.HasField("parallelism") else 1
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(job: objects_pb2.Job, now: float) -> str:
    """The DURATION column: from the start to completion (or to now while running); empty before start."""
    status = job.status
    if not status.HasField("start_time"):
        return ""
    end = timestamp_seconds(status.completion_time) if status.HasField("completion_time") else now
    return human_duration(end - timestamp_seconds(status.start_time))


def job_header(*, wide: bool = False) -> list[str]:
    """kubectl get jobs: NAME STATUS COMPLETIONS DURATION AGE."""
    return ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", *(WIDE if wide else [])]


def job_row(job: objects_pb2.Job, now: float, *, wide: bool = False) -> list[str]:
    row = [job.metadata.name, job_status(job), job_completions(job), job_duration(job, now), _age(job, now)]
    return row + (_wide(job.spec.template, job.spec.selector) if wide else [])
