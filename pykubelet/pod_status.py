"""A pod's API status from what the engine holds for it (pure; kubelet's generateAPIPodStatus).

- containerStatuses, in spec order: ``running`` (startedAt), ``terminated`` (exitCode, reason
  Completed / Error / OOMKilled / ContainerCannotRun, times, containerID) or ``waiting``
  (ContainerCreating, or the reason of the last failed start: ErrImagePull,
  CreateContainerError, InfraImageMissing ...); lastState is the previous dead container;
  restartCount the newest container's attempt number; ready = running (no probes yet).
- phase, by kubelet's getPhase: Pending while a container waits to start for the first time;
  Running once all started and one runs (or, under Always/OnFailure, restarts); Succeeded /
  Failed once all terminated and the restart policy runs none again. A terminal phase is final.
- podIP from the running infra container (kept from the previous status once it stopped); on
  the host's network (spec.hostNetwork) the node's address, as in Kubernetes; hostIP, startTime
  (kept once set: infra creation or first computation).
- conditions Initialized, Ready, ContainersReady; lastTransitionTime is kept from the previous
  status while a condition's status does not change. PodScheduled is the master's.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.sync import ContainerFailure
from pymaster.api import objects_pb2
from pymaster.api.pods import FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL_PHASES


def compute_pod_status(
    pod: objects_pb2.Pod,
    observed: PodRuntime | None,
    failures: dict[str, ContainerFailure] | None,
    host_ip: str,
    now: datetime,
    previous: objects_pb2.PodStatus | None = None,
) -> objects_pb2.PodStatus:
    """The status the agent reports for ``pod``.

    Args:
        pod: the desired pod.
        observed: its containers in the engine (None: none).
        failures: the last start failure per container name (from ``executor.execute``); shown as
            the waiting reason of a container that is not running.
        host_ip: the node's address.
        now: the current time (timezone-aware), for new transition times and startTime.
        previous: the last status reported (or the master's copy): keeps lastTransitionTime,
            startTime, podIP of a stopped sandbox, and a terminal phase.

    Returns:
        A new PodStatus (without PodScheduled).
    """
    failures = failures or {}
    status = objects_pb2.PodStatus(host_ip=host_ip)
    for container in pod.spec.containers:
        history = [c for c in observed.containers if c.name == container.name] if observed is not None else []
        status.container_statuses.append(_container_status(container, history, failures.get(container.name)))

    phase = get_phase(pod.spec.restart_policy or "Always", list(status.container_statuses))
    if previous is not None and previous.phase in TERMINAL_PHASES:
        phase = previous.phase  # a finished pod never runs again
    status.phase = phase

    infra = observed.infra if observed is not None else None
    if pod.spec.host_network:
        status.pod_ip = host_ip  # the infra container has no address of its own there
    elif infra is not None and infra.state == "running" and infra.ip:
        status.pod_ip = infra.ip
    elif previous is not None:
        status.pod_ip = previous.pod_ip

    if previous is not None and previous.HasField("start_time"):
        status.start_time.CopyFrom(previous.start_time)
    else:
        status.start_time.CopyFrom(_timestamp(_sandbox_created(observed) or now))

    status.conditions.extend(_conditions(status, previous, now))
    return status


def get_phase(restart_policy: str, statuses: list[objects_pb2.ContainerStatus]) -> str:
    """kubelet's getPhase over the containers' statuses (one per spec container)."""
    running = waiting = stopped = succeeded = 0
    for cs in statuses:
        state = cs.state
        if state.HasField("running"):
            running += 1
        elif state.HasField("terminated"):
            stopped += 1
            succeeded += state.terminated.exit_code == 0
        elif cs.last_state.HasField("terminated"):
            stopped += 1  # waiting to restart: it has run before
        else:
            waiting += 1
    if waiting > 0:
        return PENDING  # at least one container has never started
    if running > 0:
        return RUNNING
    if stopped > 0:
        if restart_policy == "Always":
            return RUNNING  # all restarting
        if stopped == succeeded:
            return SUCCEEDED
        if restart_policy == "Never":
            return FAILED
        return RUNNING  # OnFailure: the failed ones restart
    return PENDING


def _container_status(
    spec: objects_pb2.Container, history: list[ContainerInfo], failure: ContainerFailure | None
) -> objects_pb2.ContainerStatus:
    """The status of one spec container; ``history`` is its Docker containers, newest first."""
    latest = history[0] if history else None
    cs = objects_pb2.ContainerStatus(name=spec.name, image=spec.image)
    previous_dead = next((c for c in history[1:] if c.state == "exited"), None)
    if latest is not None:
        cs.restart_count = latest.restart_count
        cs.image = latest.image or spec.image
        cs.image_id = f"docker://{latest.image_id}" if latest.image_id else ""
        cs.container_id = f"docker://{latest.id}"

    if latest is not None and latest.state == "running":
        if latest.started_at is not None:
            cs.state.running.started_at.CopyFrom(_timestamp(latest.started_at))
        else:
            cs.state.running.SetInParent()
        cs.ready = cs.started = True
    elif failure is not None:
        cs.state.waiting.reason = failure.reason
        cs.state.waiting.message = failure.message
        if latest is not None and latest.state == "exited":
            previous_dead = latest  # the attempt that ended is the last state now
    elif latest is not None and latest.state == "exited":
        cs.state.terminated.CopyFrom(_terminated(latest))
    elif latest is not None and latest.state == "unknown":
        cs.state.waiting.reason = "ContainerStatusUnknown"
        cs.state.waiting.message = "the container is neither running nor exited (paused, restarting?)"
    else:  # not created yet, or created and not started
        cs.state.waiting.reason = "ContainerCreating"
    if previous_dead is not None:
        cs.last_state.terminated.CopyFrom(_terminated(previous_dead))
    return cs


def _terminated(container: ContainerInfo) -> objects_pb2.ContainerStateTerminated:
    exit_code = container.exit_code or 0
    if container.oom_killed:
        reason = "OOMKilled"
    elif container.error:
        reason = "ContainerCannotRun"  # the start failed; Docker's error says why
    elif exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    terminated = objects_pb2.ContainerStateTerminated(
        exit_code=exit_code, reason=reason, message=container.error, container_id=f"docker://{container.id}"
    )
    if container.started_at is not None:
        terminated.started_at.CopyFrom(_timestamp(container.started_at))
    if container.finished_at is not None:
        terminated.finished_at.CopyFrom(_timestamp(container.finished_at))
    return terminated


def _conditions(
    status: objects_pb2.PodStatus, previous: objects_pb2.PodStatus | None, now: datetime
) -> list[objects_pb2.PodCondition]:
    unready = [cs.name for cs in status.container_statuses if not cs.ready]
    if not unready:
        ready = objects_pb2.PodCondition(status="True")
    elif status.phase == SUCCEEDED:
        ready = objects_pb2.PodCondition(status="False", reason="PodCompleted")
    else:
        ready = objects_pb2.PodCondition(
            status="False",
            reason="ContainersNotReady",
            message=f"containers with unready status: [{' '.join(unready)}]",
        )
    conditions = [objects_pb2.PodCondition(type="Initialized", status="True")]
    for kind in ("Ready", "ContainersReady"):
        condition = objects_pb2.PodCondition()
        condition.CopyFrom(ready)
        condition.type = kind
        conditions.append(condition)
    old = {c.type: c for c in previous.conditions} if previous is not None else {}
    for condition in conditions:
        before = old.get(condition.type)
        unchanged = before is not None and before.status == condition.status
        if unchanged and before.HasField("last_transition_time"):
            condition.last_transition_time.CopyFrom(before.last_transition_time)
        else:
            condition.last_transition_time.CopyFrom(_timestamp(now))
    return conditions


def _sandbox_created(observed: PodRuntime | None) -> datetime | None:
    """When the pod's first (still known) infra container was created."""
    if observed is None:
        return None
    times = [c.created_at for c in observed.containers if c.name == INFRA_CONTAINER_NAME and c.created_at]
    return min(times, default=None)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
