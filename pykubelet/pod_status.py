"""A pod's API status from what the engine holds for it (pure; kubelet's generateAPIPodStatus).

- containerStatuses (spec order) and initContainerStatuses: ``running`` (startedAt),
  ``terminated`` (exitCode, reason Completed / Error / OOMKilled / ContainerCannotRun, the
  termination message, times, containerID) or ``waiting`` (ContainerCreating, PodInitializing
  while init containers run, or the reason of the last failed start: ErrImagePull,
  CreateContainerError, CrashLoopBackOff ...); lastState is the previous dead container;
  restartCount the newest container's attempt number. ``started`` is true once the container
  runs and its startup probe (if any) succeeded; ``ready`` once it also passes its readiness probe
  (app containers and sidecars); a plain init container is ready once it completed.
- phase, by kubelet's getPhase: Pending while init containers run or a container waits to start
  for the first time (Failed when an init container failed under restartPolicy Never); Running
  once all started and one runs (or, under Always/OnFailure, restarts); Succeeded / Failed once
  all app containers terminated and the restart policy runs none again (sidecars do not count).
  A terminal phase is final; so is a pod past its activeDeadlineSeconds (Failed,
  DeadlineExceeded).
- podIP (and podIPs, its one entry) from the running infra container (kept from the previous
  status once it stopped); on the host's network (spec.hostNetwork) the node's address, as in
  Kubernetes; hostIP, startTime (kept once set: infra creation or first computation).
- conditions Initialized (every init container done), ContainersReady and Ready (every app
  container and sidecar ready); lastTransitionTime is kept from the previous status while a
  condition's status does not change. PodScheduled is the master's.
- qosClass: the master's (set at creation, immutable), computed from the spec only for a pod
  that has none (Kubernetes' GetPodQOS, ``pymaster.api.pods.qos_class``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.sync import ContainerFailure, is_sidecar
from pymaster.api import objects_pb2
from pymaster.api.pods import FAILED, PENDING, RUNNING, SUCCEEDED, TERMINAL_PHASES, qos_class

DEADLINE_EXCEEDED = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def _always(name: str) -> bool:
    return True


@dataclass
class Observations:
    """What the agent knows of a pod besides its containers.

    Attributes:
        failures: the last start failure per container name (from ``executor.execute``); shown
            as the waiting reason of a container that is not running.
        ready: a running container passes its readiness probe (default: no probes, ready).
        started: a running container passed its startup probe (default: started).
        messages: container id -> termination message read for that (exited) container.
        deadline_exceeded: the pod ran longer than its activeDeadlineSeconds.
    """

    failures: Mapping[str, ContainerFailure] = field(default_factory=dict)
    ready: Callable[[str], bool] = _always
    started: Callable[[str], bool] = _always
    messages: Mapping[str, str] = field(default_factory=dict)
    deadline_exceeded: bool = False


def compute_pod_status(
    pod: objects_pb2.Pod,
    observed: PodRuntime | None,
    seen: Observations | None,
    host_ip: str,
    now: datetime,
    previous: objects_pb2.PodStatus | None = None,
) -> objects_pb2.PodStatus:
    """The status the agent reports for ``pod``.

    Args:
        pod: the desired pod.
        observed: its containers in the engine (None: none).
        seen: start failures, probe results, termination messages, the deadline.
        host_ip: the node's address.
        now: the current time (timezone-aware), for new transition times and startTime.
        previous: the last status reported (or the master's copy): keeps lastTransitionTime,
            startTime, podIP of a stopped sandbox, and a terminal phase.

    Returns:
        A new PodStatus (without PodScheduled).
    """
    seen = seen or Observations()
    status = objects_pb2.PodStatus(host_ip=host_ip, qos_class=pod.status.qos_class or qos_class(pod))

    def history(name: str) -> list[ContainerInfo]:
        return [c for c in observed.containers if c.name == name] if observed is not None else []

    for container in pod.spec.init_containers:
        cs = _container_status(container, history(container.name), seen)
        if not is_sidecar(container):
            terminated = cs.state.terminated
            cs.ready = cs.state.HasField("terminated") and terminated.exit_code == 0
        status.init_container_statuses.append(cs)
    initialized = _initialized(pod, status)
    for container in pod.spec.containers:
        cs = _container_status(container, history(container.name), seen)
        if not initialized and cs.state.waiting.reason == "ContainerCreating":
            cs.state.waiting.reason = "PodInitializing"
        status.container_statuses.append(cs)

    phase = get_phase(pod, list(status.init_container_statuses), list(status.container_statuses))
    if previous is not None and previous.phase in TERMINAL_PHASES:
        phase = previous.phase  # a finished pod never runs again
        status.reason, status.message = previous.reason, previous.message
    if seen.deadline_exceeded and phase not in TERMINAL_PHASES:
        phase, status.reason, status.message = FAILED, DEADLINE_EXCEEDED, DEADLINE_MESSAGE
    status.phase = phase

    infra = observed.infra if observed is not None else None
    if pod.spec.host_network:
        status.pod_ip = host_ip  # the infra container has no address of its own there
    elif infra is not None and infra.state == "running" and infra.ip:
        status.pod_ip = infra.ip
    elif previous is not None:
        status.pod_ip = previous.pod_ip
    if status.pod_ip:
        status.pod_ips.add(ip=status.pod_ip)  # one address family here: podIPs[0] is podIP

    if previous is not None and previous.HasField("start_time"):
        status.start_time.CopyFrom(previous.start_time)
    else:
        status.start_time.CopyFrom(_timestamp(_sandbox_created(observed) or now))

    status.conditions.extend(_conditions(pod, status, initialized, previous, now))
    return status


def _initialized(pod: objects_pb2.Pod, status: objects_pb2.PodStatus) -> bool:
    """Every init container done: plain ones completed, sidecars running and started."""
    for container, cs in zip(pod.spec.init_containers, status.init_container_statuses, strict=True):
        if is_sidecar(container):
            if not (cs.state.HasField("running") and cs.started):
                return False
        elif not cs.ready:
            return False
    return True


def get_phase(
    pod: objects_pb2.Pod,
    init_statuses: list[objects_pb2.ContainerStatus],
    statuses: list[objects_pb2.ContainerStatus],
) -> str:
    """kubelet's getPhase over the init containers' and the app containers' statuses (one per
    spec container, in spec order).

    A plain init container not completed keeps the pod Pending (Failed once one failed under
    restartPolicy Never); a sidecar counts as running while it runs and not at all once stopped
    (it is stopped after the app containers finish), so a pod whose app containers completed
    Succeeds whatever its sidecars did.
    """
    policy = pod.spec.restart_policy or "Always"
    pending_init = failed_init = 0
    running = waiting = stopped = succeeded = 0
    for container, cs in zip(pod.spec.init_containers, init_statuses, strict=True):
        state = cs.state
        if is_sidecar(container):
            if state.HasField("running"):
                running += 1
                pending_init += not cs.started
            elif not state.HasField("terminated") and not cs.last_state.HasField("terminated"):
                pending_init += 1  # never started yet
                waiting += 1
        elif state.HasField("terminated"):
            failed_init += state.terminated.exit_code != 0
        elif cs.last_state.HasField("terminated") and not state.HasField("running"):
            failed_init += cs.last_state.terminated.exit_code != 0  # waiting to run again
        else:
            pending_init += 1
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
    if failed_init > 0 and policy == "Never":
        return FAILED
    if pending_init > 0 or waiting > 0:
        return PENDING  # initializing, or a container has never started
    if running > 0:
        return RUNNING
    if stopped > 0:
        if policy == "Always":
            return RUNNING  # all restarting
        if stopped == succeeded:
            return SUCCEEDED
        if policy == "Never":
            return FAILED
        return RUNNING  # OnFailure: the failed ones restart
    return PENDING


def _container_status(
    spec: objects_pb2.Container, history: list[ContainerInfo], seen: Observations
) -> objects_pb2.ContainerStatus:
    """The status of one spec container; ``history`` is its Docker containers, newest first."""
    latest = history[0] if history else None
    failure = seen.failures.get(spec.name)
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
        cs.started = seen.started(spec.name)
        cs.ready = cs.started and seen.ready(spec.name)
    elif failure is not None:
        cs.state.waiting.reason = failure.reason
        cs.state.waiting.message = failure.message
        if latest is not None and latest.state == "exited":
            previous_dead = latest  # the attempt that ended is the last state now
    elif latest is not None and latest.state == "exited":
        cs.state.terminated.CopyFrom(_terminated(latest, seen))
    elif latest is not None and latest.state == "unknown":
        cs.state.waiting.reason = "ContainerStatusUnknown"
        cs.state.waiting.message = "the container is neither running nor exited (paused, restarting?)"
    else:  # not created yet, or created and not started
        cs.state.waiting.reason = "ContainerCreating"
    if previous_dead is not None:
        cs.last_state.terminated.CopyFrom(_terminated(previous_dead, seen))
    return cs


def _terminated(container: ContainerInfo, seen: Observations) -> objects_pb2.ContainerStateTerminated:
    exit_code = container.exit_code or 0
    if container.oom_killed:
        reason = "OOMKilled"
    elif container.error:
        reason = "ContainerCannotRun"  # the start failed; Docker's error says why
    elif exit_code == 0:
        reason = "Completed"
    else:
        reason = "Error"
    message = seen.messages.get(container.id) or container.error
    terminated = objects_pb2.ContainerStateTerminated(
        exit_code=exit_code, reason=reason, message=message, container_id=f"docker://{container.id}"
    )
    if container.started_at is not None:
        terminated.started_at.CopyFrom(_timestamp(container.started_at))
    if container.finished_at is not None:
        terminated.finished_at.CopyFrom(_timestamp(container.finished_at))
    return terminated


def _conditions(
    pod: objects_pb2.Pod,
    status: objects_pb2.PodStatus,
    initialized: bool,
    previous: objects_pb2.PodStatus | None,
    now: datetime,
) -> list[objects_pb2.PodCondition]:
    sidecars = [
        cs for c, cs in zip(pod.spec.init_containers, status.init_container_statuses, strict=True)
        if is_sidecar(c)
    ]
    unready = [cs.name for cs in [*sidecars, *status.container_statuses] if not cs.ready]
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
    if initialized:
        init = objects_pb2.PodCondition(type="Initialized", status="True")
    else:
        incomplete = [
            cs.name for c, cs in zip(pod.spec.init_containers, status.init_container_statuses, strict=True)
            if not (cs.ready or (is_sidecar(c) and cs.state.HasField("running") and cs.started))
        ]
        init = objects_pb2.PodCondition(
            type="Initialized", status="False", reason="ContainersNotInitialized",
            message=f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    conditions = [init]
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
