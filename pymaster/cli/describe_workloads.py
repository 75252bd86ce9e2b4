"""``pyctl describe`` of the workload kinds in kubectl 1.32's layout (its DeploymentDescriber,
ReplicaSetDescriber, DaemonSetDescriber and JobDescriber): pure functions of the object, what is
shown beside it (pod counts, the Deployment's ReplicaSets), the events and the current time.

Lines carry tabs between a label and its value and are aligned by ``printers.tabwrite`` as
kubectl's describe output is. Annotations read ``key: value`` as kubectl prints them for these
kinds. ``pod_template_lines`` is also what ``rollout history --revision N`` prints.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymaster.api import objects_pb2
from pymaster.api.workloads import selector_string
from pymaster.cli import printers as p
from pymaster.cli import timefmt
from pymaster.cli.describe import describe_probe, events_lines

Events = Sequence[objects_pb2.Event] | None


@dataclass(frozen=True)
class PodCounts:
    """The pods of a controller by phase: kubectl's "Pods Status" line (Waiting = Pending)."""

    running: int = 0
    waiting: int = 0
    succeeded: int = 0
    failed: int = 0
    ready: int = 0

    @classmethod
    def of(cls, pods: Sequence[objects_pb2.Pod]) -> PodCounts:
        phases = [pod.status.phase or "Pending" for pod in pods]
        ready = sum(
            any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions) for pod in pods
        )
        return cls(phases.count("Running"), phases.count("Pending"), phases.count("Succeeded"),
                   phases.count("Failed"), ready)

    def line(self, label: str = "Pods Status") -> str:
        return (f"{label}:\t{self.running} Running / {self.waiting} Waiting / {self.succeeded} Succeeded / "
                f"{self.failed} Failed")


def _labels(key: str, values: Mapping[str, str], indent: str = "") -> list[str]:
    pairs = [f"{k}={v}" for k, v in sorted(values.items())] or [p.NONE]
    return [f"{indent}{key}:\t{pairs[0]}", *(f"{indent}\t{pair}" for pair in pairs[1:])]


def _annotations(values: Mapping[str, str], indent: str = "") -> list[str]:
    pairs = [f"{k}: {v}" for k, v in sorted(values.items())] or [p.NONE]
    return [f"{indent}Annotations:\t{pairs[0]}", *(f"{indent}\t{pair}" for pair in pairs[1:])]


def _controlled_by(meta: objects_pb2.ObjectMeta) -> list[str]:
    for ref in meta.owner_references:
        if ref.controller:
            return [f"Controlled By:\t{ref.kind}/{ref.name}"]
    return []


def _header(obj: Any, after_selector: Sequence[str] = ()) -> list[str]:
    """Name, Namespace, Selector (and what the kind shows right after it), Labels, Annotations."""
    meta = obj.metadata
    return [
        f"Name:\t{meta.name}",
        f"Namespace:\t{meta.namespace}",
        f"Selector:\t{selector_string(obj.spec.selector) or p.NONE}",
        *after_selector,
        *_labels("Labels", meta.labels),
        *_annotations(meta.annotations),
    ]


def _ports(ports: Sequence[objects_pb2.ContainerPort], host: bool) -> str:
    return ", ".join(f"{pt.host_port if host else pt.container_port}/{pt.protocol or 'TCP'}" for pt in ports)


def _container_lines(container: objects_pb2.Container) -> list[str]:
    ind = "    "
    lines = [f"   {container.name}:", f"{ind}Image:\t{container.image}"]
    ports, host_ports = _ports(container.ports, False), _ports(container.ports, True)
    lines.append(f"{ind}{'Ports' if ',' in ports else 'Port'}:\t{ports or p.NONE}")
    lines.append(f"{ind}{'Host Ports' if ',' in host_ports else 'Host Port'}:\t{host_ports or p.NONE}")
    for key, words in (("Command", container.command), ("Args", container.args)):
        if words:
            lines.append(f"{ind}{key}:")
            lines.extend(f"{ind}  {word}" for word in words)
    for key, values in (("Limits", container.resources.limits), ("Requests", container.resources.requests)):
        if values:
            lines.append(f"{ind}{key}:")
            lines.extend(f"{ind}  {name}:\t{value}" for name, value in sorted(values.items()))
    for label, field in (("Liveness", "liveness_probe"), ("Readiness", "readiness_probe"),
                         ("Startup", "startup_probe")):
        if container.HasField(field):
            lines.append(f"{ind}{label}:\t{describe_probe(getattr(container, field))}")
    if container.env:
        lines.append(f"{ind}Environment:")
        lines.extend(f"{ind}  {env.name}:\t{env.value}" for env in container.env)
    else:
        lines.append(f"{ind}Environment:\t{p.NONE}")
    if container.volume_mounts:
        lines.append(f"{ind}Mounts:")
        for mount in container.volume_mounts:
            mode = "ro" if mount.read_only else "rw"
            lines.append(f"{ind}  {mount.mount_path} from {mount.name} ({mode})")
    else:
        lines.append(f"{ind}Mounts:\t{p.NONE}")
    return lines


def _toleration(t: objects_pb2.Toleration) -> str:
    text = t.key
    if t.operator == "Exists":
        text += " op=Exists" if t.key else "op=Exists"
    elif t.value:
        text += f"={t.value}"
    if t.effect:
        text += f":{t.effect}"
    if t.HasField("toleration_seconds"):
        text += f" for {t.toleration_seconds}s"
    return text


def pod_template_lines(template: objects_pb2.PodTemplateSpec) -> list[str]:
    """kubectl's "Pod Template:" block: labels, annotations, containers, volumes, node
    selectors and tolerations."""
    spec = template.spec
    lines = ["Pod Template:", *_labels("Labels", template.metadata.labels, "  ")]
    if template.metadata.annotations:
        lines += _annotations(template.metadata.annotations, "  ")
    if spec.service_account_name not in ("", "default"):  # defaulted like a pod's; kubectl shows a chosen one
        lines.append(f"  Service Account:\t{spec.service_account_name}")
    if spec.init_containers:
        lines.append("  Init Containers:")
        for container in spec.init_containers:
            lines += _container_lines(container)
    lines.append("  Containers:")
    for container in spec.containers:
        lines += _container_lines(container)
    if spec.volumes:
        lines.append("  Volumes:")
        lines.extend(f"   {volume.name}:" for volume in spec.volumes)
    else:
        lines.append(f"  Volumes:\t{p.NONE}")
    lines += _labels("Node-Selectors", spec.node_selector, "  ")
    tolerations = [_toleration(t) for t in spec.tolerations] or [p.NONE]
    lines.append(f"  Tolerations:\t{tolerations[0]}")
    lines.extend(f"  \t{t}" for t in tolerations[1:])
    return lines


def _conditions(conditions: Sequence[objects_pb2.WorkloadCondition], reason: bool = True) -> list[str]:
    if not conditions:
        return []
    if reason:
        lines = ["Conditions:", "  Type\tStatus\tReason", "  ----\t------\t------"]
        return lines + [f"  {c.type}\t{c.status}\t{c.reason}" for c in conditions]
    lines = ["Conditions:", "  Type\tStatus", "  ----\t------"]
    return lines + [f"  {c.type}\t{c.status}" for c in conditions]


def _replicas(spec: Any) -> int:
    return spec.replicas if spec.HasField("replicas") else 1


def _rs_summary(replica_sets: Sequence[objects_pb2.ReplicaSet]) -> str:
    """"web-5d4f (3/3 replicas created), ..." as kubectl prints the old and new ReplicaSets."""
    parts = [f"{rs.metadata.name} ({rs.status.replicas}/{_replicas(rs.spec)} replicas created)"
             for rs in replica_sets]
    return ", ".join(parts) or p.NONE


def _int_or_string(value: objects_pb2.IntOrString) -> str:
    return value.str_value if value.WhichOneof("value") == "str_value" else str(value.int_value)


def describe_deployment(
    deployment: objects_pb2.Deployment,
    old: Sequence[objects_pb2.ReplicaSet],
    new: objects_pb2.ReplicaSet | None,
    now: float,
    tz: datetime.tzinfo | None = None,
    events: Events = (),
) -> str:
    """kubectl describe deployment.

    Args:
        deployment: the Deployment.
        old: its ReplicaSets other than the new one that still have pods (kubectl's OldReplicaSets).
        new: the ReplicaSet of its current template, or None (``<none>``).
        now: current epoch seconds (the events' ages).
        tz: zone for times; None for the local zone.
        events: the events about it; None leaves the Events section out.
    """
    spec, status, meta = deployment.spec, deployment.status, deployment.metadata
    lines = [f"Name:\t{meta.name}", f"Namespace:\t{meta.namespace}",
             f"CreationTimestamp:\t{timefmt.format_time(meta.creation_timestamp, tz)}"]
    lines += _labels("Labels", meta.labels) + _annotations(meta.annotations)
    lines.append(f"Selector:\t{selector_string(spec.selector) or p.NONE}")
    lines.append(
        f"Replicas:\t{_replicas(spec)} desired | {status.updated_replicas} updated | "
        f"{status.replicas} total | {status.available_replicas} available | "
        f"{status.unavailable_replicas} unavailable"
    )
    lines.append(f"StrategyType:\t{spec.strategy.type}")
    lines.append(f"MinReadySeconds:\t{spec.min_ready_seconds}")
    if spec.strategy.HasField("rolling_update"):
        rolling = spec.strategy.rolling_update
        lines.append(f"RollingUpdateStrategy:\t{_int_or_string(rolling.max_unavailable)} max unavailable, "
                     f"{_int_or_string(rolling.max_surge)} max surge")
    lines += pod_template_lines(spec.template)
    lines += _conditions(status.conditions)
    lines.append(f"OldReplicaSets:\t{_rs_summary(old)}")
    lines.append(f"NewReplicaSet:\t{_rs_summary([new] if new is not None else [])}")
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def describe_replica_set(rs: objects_pb2.ReplicaSet, pods: PodCounts, now: float, events: Events = ()) -> str:
    """kubectl describe replicaset: Replicas "3 current / 3 desired", Pods Status, the template."""
    lines = _header(rs)
    lines += _controlled_by(rs.metadata)
    lines.append(f"Replicas:\t{rs.status.replicas} current / {_replicas(rs.spec)} desired")
    lines.append(pods.line())
    lines += pod_template_lines(rs.spec.template)
    lines += _conditions(rs.status.conditions)
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def describe_daemon_set(ds: objects_pb2.DaemonSet, pods: PodCounts, now: float, events: Events = ()) -> str:
    """kubectl describe daemonset: the node counts, Pods Status, the template."""
    status = ds.status
    lines = _header(ds, _labels("Node-Selector", ds.spec.template.spec.node_selector))
    lines += [
        f"Desired Number of Nodes Scheduled:\t{status.desired_number_scheduled}",
        f"Current Number of Nodes Scheduled:\t{status.current_number_scheduled}",
        f"Number of Nodes Scheduled with Up-to-date Pods:\t{status.updated_number_scheduled}",
        f"Number of Nodes Scheduled with Available Pods:\t{status.number_available}",
        f"Number of Nodes Misscheduled:\t{status.number_misscheduled}",
        pods.line(),
    ]
    lines += pod_template_lines(ds.spec.template)
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def describe_job(
    job: objects_pb2.Job, pods: PodCounts, now: float, tz: datetime.tzinfo | None = None, events: Events = ()
) -> str:
    """kubectl describe job: parallelism, completions, backoff limit, times and pod counts."""
    spec, status = job.spec, job.status
    lines = _header(job)
    lines += _controlled_by(job.metadata)
    lines.append(f"Parallelism:\t{spec.parallelism if spec.HasField('parallelism') else 1}")
    lines.append(f"Completions:\t{spec.completions if spec.HasField('completions') else '<unset>'}")
    lines.append(f"Completion Mode:\t{spec.completion_mode or 'NonIndexed'}")
    lines.append(f"Suspend:\t{'true' if spec.suspend else 'false'}")
    lines.append(f"Backoff Limit:\t{spec.backoff_limit if spec.HasField('backoff_limit') else 6}")
    if spec.HasField("ttl_seconds_after_finished"):
        lines.append(f"TTL Seconds After Finished:\t{spec.ttl_seconds_after_finished}")
    if status.HasField("start_time"):
        lines.append(f"Start Time:\t{timefmt.format_time(status.start_time, tz)}")
        if status.HasField("completion_time"):
            lines.append(f"Completed At:\t{timefmt.format_time(status.completion_time, tz)}")
            seconds = timefmt.timestamp_seconds(status.completion_time) - timefmt.timestamp_seconds(
                status.start_time)
            lines.append(f"Duration:\t{timefmt.human_duration(seconds)}")
    if spec.HasField("active_deadline_seconds"):
        lines.append(f"Active Deadline Seconds:\t{spec.active_deadline_seconds}s")
    ready = status.ready if status.HasField("ready") else pods.ready
    lines.append(f"Pods Statuses:\t{status.active} Active ({ready} Ready) / {status.succeeded} Succeeded / "
                 f"{status.failed} Failed")
    lines += pod_template_lines(spec.template)
    lines += _conditions(job.status.conditions, reason=False)
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)
