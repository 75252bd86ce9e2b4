"""The READY, STATUS and RESTARTS columns of a pod table, by kubectl's printPod rules (1.32), init
containers and sidecars included:

- READY: ready running app containers and started-and-ready sidecars, over app containers plus
  sidecars (init containers with restartPolicy Always).
- STATUS: the phase (or the pod's status reason, e.g. "Evicted"); while the pod initializes, the
  first init container not done decides ("Init:1/3", "Init:Error", "Init:CrashLoopBackOff",
  "Init:ExitCode:2"); once initialized, the app containers' last waiting or terminated reason
  ("ContainerCreating", "CrashLoopBackOff", "Completed", "Error", "ExitCode:N", "Signal:N"),
  "Completed" read as "Running"/"NotReady" while a container still runs; "Terminating" while a
  pod not yet finished is marked for deletion, "Unknown" when that pod's node was lost.
- RESTARTS: the restarts of the app containers and sidecars (of every init container while the
  pod initializes), with the age of the latest ("3 (2m ago)").
"""

from __future__ import annotations

from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.pods import TERMINAL_PHASES, is_sidecar
from pymaster.cli.timefmt import human_duration, timestamp_seconds

# Kubernetes' NodeUnreachablePodReason: a pod marked for deletion on a lost node shows "Unknown".
NODE_LOST = "NodeLost"
_POD_INITIALIZING = "PodInitializing"


@dataclass(frozen=True)
class PodColumns:
    """The three computed columns of one pod."""

    ready: str
    status: str
    restarts: str


class _Restarts:
    """A sum of restart counts and the latest restart's time."""

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None

    def add(self, cs: objects_pb2.ContainerStatus) -> None:
        self.count += cs.restart_count
        terminated = cs.last_state.terminated
        if cs.last_state.HasField("terminated") and terminated.HasField("finished_at"):
            finished = timestamp_seconds(terminated.finished_at)
            self.last = finished if self.last is None else max(self.last, finished)

    def text(self, now: float) -> str:
        if self.count and self.last is not None:
            return f"{self.count} ({human_duration(now - self.last)} ago)"
        return str(self.count)


def _terminated_reason(term: objects_pb2.ContainerStateTerminated) -> str:
    if term.reason:
        return term.reason
    return f"Signal:{term.signal}" if term.signal else f"ExitCode:{term.exit_code}"


def pod_columns(pod: objects_pb2.Pod, now: float) -> PodColumns:
    """READY, STATUS and RESTARTS of ``pod`` at ``now`` (epoch seconds)."""
    status = pod.status
    sidecars = {c.name for c in pod.spec.init_containers if is_sidecar(c)}
    total = len(pod.spec.containers) + len(sidecars)
    ready = 0
    reason = status.reason or status.phase or "Pending"
    every_init, sidecar_restarts = _Restarts(), _Restarts()

    initializing = False
    for i, cs in enumerate(status.init_container_statuses):
        every_init.add(cs)
        if cs.name in sidecars:
            sidecar_restarts.add(cs)
        state = cs.state
        if state.HasField("terminated") and state.terminated.exit_code == 0:
            continue
        if cs.name in sidecars and cs.started:
            ready += cs.ready
            continue
        initializing = True
        if state.HasField("terminated"):
            reason = "Init:" + _terminated_reason(state.terminated)
        elif state.HasField("waiting") and state.waiting.reason and state.waiting.reason != _POD_INITIALIZING:
            reason = "Init:" + state.waiting.reason
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        break

    restarts = every_init
    initialized = any(c.type == "Initialized" and c.status == "True" for c in status.conditions)
    if not initializing or initialized:
        restarts = sidecar_restarts
        has_running = False
        for cs in reversed(status.container_statuses):
            restarts.add(cs)
            state = cs.state
            if state.HasField("waiting") and state.waiting.reason:
                reason = state.waiting.reason
            elif state.HasField("terminated"):
                reason = _terminated_reason(state.terminated)
            elif cs.ready and state.HasField("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
            reason = "Running" if pod_ready else "NotReady"

    if pod.metadata.HasField("deletion_timestamp"):
        if status.reason == NODE_LOST:
            reason = "Unknown"
        elif status.phase not in TERMINAL_PHASES:
            reason = "Terminating"
    return PodColumns(f"{ready}/{total}", reason, restarts.text(now))
