"""One pod's sync plan (kubelet's ``computePodActions``), a pure function: from the desired pod,
what the engine holds for it and what the probes found, decide whether to kill the whole pod,
(re)create its sandbox (the infra container), which app containers to start (with the restart
count each new container gets), which to kill and which dead ones to garbage-collect, and when to
look again. Whatever woke the sync (new spec, a container died, the periodic resync), it
recomputes from scratch, so a missed event costs latency only. ``pykubelet.executor`` carries the
plan out.

Restart policy (Always / OnFailure / Never) is applied with kubelet's crash-loop back-off: the
first restart is immediate, then 10 s, 20 s, 40 s ... capped at 300 s; a container that ran
10 minutes before it exited restarts at once again. The back-off is derived from what Docker
holds (the dead container's restart count and times), so it survives an agent restart and needs
no state of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.runtime.labels import container_spec_hash
from pymaster.api import objects_pb2
from pymaster.api.pods import TERMINAL_PHASES

# Docker states in which a container's process may still be alive and needs stopping.
LIVE_STATES = ("running", "unknown")
BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
# A container that ran this long before it exited is restarted at once, as after a first crash.
BACKOFF_RESET_SECONDS = 600.0


@dataclass
class PodActions:
    """What one sync does to a pod's containers.

    Attributes:
        kill_pod: stop every live container of the pod, app containers first, then the infra.
        create_sandbox: create and start a new infra container (after the kill, if any).
        sandbox_restart_count: the attempt number of that new infra container.
        containers_to_start: spec container name -> the restart count of its new container
            (its attempt number: the newest container's + 1, 0 for the first), in spec order.
        containers_to_kill: container id -> why it is stopped (spec changed, not in the spec ...).
        containers_to_remove: ids of dead containers to garbage-collect (all but the newest dead
            container of each name, which keeps the restart count and the last state).
        backoff: a CrashLoopBackOff failure for each container that should restart but whose
            crash-loop back-off has not expired yet (reported in the status; not an action).
        requeue_after: seconds until the plan may change by the clock alone (a back-off ending),
            so the worker syncs again then; None: only when something happens.
    """

    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_restart_count: int = 0
    containers_to_start: dict[str, int] = field(default_factory=dict)
    containers_to_kill: dict[str, str] = field(default_factory=dict)
    containers_to_remove: list[str] = field(default_factory=list)
    backoff: list[ContainerFailure] = field(default_factory=list)
    requeue_after: float | None = None

    def requeue_at_most(self, seconds: float) -> None:
        """Asks to look again in ``seconds`` at the latest."""
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)

    def is_noop(self) -> bool:
        """True when the pod is as it should be and executing would change nothing."""
        return not (
            self.kill_pod
            or self.create_sandbox
            or self.containers_to_start
            or self.containers_to_kill
            or self.containers_to_remove
        )


@dataclass(frozen=True)
class ContainerFailure:
    """A container ``execute`` could not start; ``reason`` becomes its waiting reason."""

    container_name: str
    reason: str
    message: str


def should_restart(pod: objects_pb2.Pod, latest: ContainerInfo | None) -> bool:
    """Whether a spec container whose newest Docker container is ``latest`` must be started
    (kubelet's ShouldContainerBeRestarted).

    Never started, or created but never run, or in an unknown state: yes. Running: no. Exited:
    per restartPolicy (Always: yes; OnFailure: exit code != 0; Never: no).

    Back-off is not decided here but in ``restart_backoff``.
    """
    if latest is None or latest.state in ("created", "unknown"):
        return True
    if latest.state == "running":
        return False
    policy = pod.spec.restart_policy or "Always"
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return latest.exit_code != 0
    return True


def restart_backoff(latest: ContainerInfo, now: datetime) -> float:
    """Seconds until the exited container ``latest`` may be restarted (0: now).

    kubelet's crash-loop back-off: the first restart is immediate, the n-th waits
    10 s * 2^(n-1), at most 300 s, counted from when the container finished.
    """
    if latest.restart_count == 0 or latest.finished_at is None:
        return 0.0
    if latest.started_at is not None:
        ran = (latest.finished_at - latest.started_at).total_seconds()
        if ran >= BACKOFF_RESET_SECONDS:
            return 0.0
    waited = (now - latest.finished_at).total_seconds()
    return max(0.0, _backoff_delay(latest) - waited)


def compute_pod_actions(
    pod: objects_pb2.Pod,
    observed: PodRuntime | None,
    now: datetime | None = None,
    probe_failures: Mapping[str, str] | None = None,
    not_started: Collection[str] = (),
) -> PodActions:
    """Plans one sync of ``pod`` against what the engine holds for it (pure).

    Init containers run first, one at a time and in order, each to completion (exit 0) before the
    next; a failed one is restarted with back-off (or, under restartPolicy Never, fails the pod).
    A sidecar (an init container with restartPolicy Always) is started in its turn and must be
    running (and past its startup probe) before the next init container; it is restarted
    whenever it dies, whatever the pod's restartPolicy, and does not keep a Never/OnFailure pod
    from completing. The app containers start once every init container is done. A new sandbox
    runs the init containers again from the first.

    Args:
        pod: the desired pod.
        observed: its containers as the runtime sees them (None: it has none).
        now: the current time (timezone-aware) for the crash-loop back-off; None: no back-off.
        probe_failures: spec container name -> why its running container must be restarted (a
            failed liveness or startup probe). It is killed, and started again unless the restart
            policy is Never (kubelet's rule; sidecars always), counting a restart.
        not_started: running sidecars whose startup probe has not succeeded yet (the next init
            container waits for them).

    Returns:
        The plan; ``is_noop()`` when nothing is to be done.
    """
    containers = observed.containers if observed is not None else []
    actions = PodActions(containers_to_remove=_garbage(pod, containers))
    live = [c for c in containers if c.state in LIVE_STATES]
    if pod.metadata.HasField("deletion_timestamp") or pod.status.phase in TERMINAL_PHASES:
        # Being deleted, or finished for good: nothing may start again.
        actions.kill_pod = bool(live)
        return actions

    infra = observed.infra if observed is not None else None
    if infra is None or infra.state != "running":
        # No working sandbox: whatever is left goes, then a new sandbox with its containers.
        actions.kill_pod = bool(live)
        actions.containers_to_start = {
            name: next_restart_count(observed, name) for name in _containers_for_new_sandbox(pod, observed)
        }
        actions.create_sandbox = bool(actions.containers_to_start)
        actions.sandbox_restart_count = next_restart_count(observed, INFRA_CONTAINER_NAME)
        return actions

    assert observed is not None  # the infra container came from it
    plan = _Planner(pod, observed, infra, now, probe_failures or {}, set(not_started), actions)
    initialized = plan.init_containers()
    plan.stray_containers(live)
    if initialized:
        plan.app_containers()
    elif plan.init_failed:
        actions.kill_pod = True  # restartPolicy Never: the failed init container failed the pod
    return actions


def is_sidecar(container: objects_pb2.Container) -> bool:
    """An init container with restartPolicy Always: it keeps running beside the app containers."""
    return container.restart_policy == "Always"


class _Planner:
    """One sync's plan of a pod whose sandbox runs (the steps of ``compute_pod_actions``)."""

    def __init__(
        self,
        pod: objects_pb2.Pod,
        observed: PodRuntime,
        infra: ContainerInfo,
        now: datetime | None,
        probe_failures: Mapping[str, str],
        not_started: set[str],
        actions: PodActions,
    ):
        self.pod, self.observed, self.infra, self.now = pod, observed, infra, now
        self.probe_failures, self.not_started, self.actions = probe_failures, not_started, actions
        self.init_failed = False

    def _latest(self, name: str) -> ContainerInfo | None:
        return self.observed.latest(name)

    def _in_this_sandbox(self, container: ContainerInfo | None) -> ContainerInfo | None:
        """``container`` if it belongs to the running sandbox: one created before the sandbox ran
        in an older one, and init containers run again in a new sandbox."""
        if container is None or self.infra.created_at is None or container.created_at is None:
            return container
        return container if container.created_at >= self.infra.created_at else None

    def _start(self, name: str) -> None:
        self.actions.containers_to_start[name] = next_restart_count(self.observed, name)

    def _backoff(self, container: objects_pb2.Container, latest: ContainerInfo | None) -> bool:
        """Records a CrashLoopBackOff for ``container`` if its back-off runs; True if it does."""
        wait = restart_backoff(latest, self.now) if latest is not None and self.now is not None else 0.0
        if wait <= 0:
            return False
        assert latest is not None
        meta = self.pod.metadata
        message = (
            f"back-off {_backoff_delay(latest):.0f}s restarting failed container={container.name} "
            f"pod={meta.name}_{meta.namespace}({meta.uid})"
        )
        self.actions.backoff.append(ContainerFailure(container.name, "CrashLoopBackOff", message))
        self.actions.requeue_at_most(wait)
        return True

    def _keep_running(self, container: objects_pb2.Container, latest: ContainerInfo) -> bool:
        """A running container: restarted when its spec changed, killed when a probe failed.
        True if it keeps running.

        A container a probe failed is only killed here: a later sync sees it exited and restarts
        it per the restart policy with the crash-loop back-off, so a container that keeps failing
        its liveness probe backs off like one that keeps crashing (as with the kubelet)."""
        if latest.spec_hash != container_spec_hash(container):
            # Restarted whatever the restart policy: the spec changed (e.g. a new image).
            self.actions.containers_to_kill[latest.id] = f"container {container.name} definition changed"
            self._start(container.name)
            return False
        if container.name in self.probe_failures:
            self.actions.containers_to_kill[latest.id] = self.probe_failures[container.name]
            return False
        return True

    def init_containers(self) -> bool:
        """Plans the init containers in order; True once every one is done (regular ones
        completed, sidecars running and started)."""
        for container in self.pod.spec.init_containers:
            latest = self._in_this_sandbox(self._latest(container.name))
            if is_sidecar(container):
                if latest is not None and latest.state == "running":
                    if not self._keep_running(container, latest):
                        return False
                    if container.name in self.not_started:
                        return False  # the next one waits for its startup probe
                    continue
                if not self._backoff(container, latest):
                    self._start(container.name)
                return False
            if latest is None or latest.state in ("created", "unknown"):
                self._start(container.name)
                return False
            if latest.state == "running":
                return False  # wait for it to complete
            if latest.exit_code == 0:
                continue
            if self.pod.spec.restart_policy == "Never":
                self.init_failed = True
            elif not self._backoff(container, latest):
                self._start(container.name)
            return False
        return True

    def app_containers(self) -> None:
        """Plans the app containers (and keeps the sidecars running)."""
        pod, actions = self.pod, self.actions
        for container in pod.spec.init_containers:
            if not is_sidecar(container):
                continue
            latest = self._latest(container.name)
            if latest is not None and latest.state == "running":
                self._keep_running(container, latest)
            elif not self._backoff(container, latest):
                self._start(container.name)
        keep = 0
        for container in pod.spec.containers:
            latest = self._latest(container.name)
            if latest is not None and latest.state == "running":
                # One killed now but restarted later still holds the sandbox.
                keep += self._keep_running(container, latest) or pod.spec.restart_policy != "Never"
            elif should_restart(pod, latest):
                if self._backoff(container, latest):
                    keep += 1  # still a container of the pod: the sandbox stays
                    continue
                self._start(container.name)
        if keep == 0 and not any(c.name in actions.containers_to_start for c in pod.spec.containers):
            # Every app container finished and none restarts (Never/OnFailure): stop the
            # sidecars and the sandbox too.
            actions.kill_pod = True

    def stray_containers(self, live: list[ContainerInfo]) -> None:
        """Kills running containers no longer in the spec, and older instances of a name."""
        spec_names = {c.name for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]}
        for container in live:
            newest = self._latest(container.name)
            if container.name != INFRA_CONTAINER_NAME and container.name not in spec_names:
                self.actions.containers_to_kill[container.id] = (
                    f"container {container.name} is not in the pod spec"
                )
            elif newest is not None and newest.id != container.id:
                self.actions.containers_to_kill[container.id] = (
                    f"container {container.name} has a newer instance"
                )


def _backoff_delay(latest: ContainerInfo) -> float:
    return min(BACKOFF_INITIAL_SECONDS * 2 ** (latest.restart_count - 1), BACKOFF_MAX_SECONDS)


def _containers_for_new_sandbox(pod: objects_pb2.Pod, observed: PodRuntime | None) -> list[str]:
    """What a new sandbox starts with: the first init container when there are any (they run
    again in a new sandbox), else the app containers to run; empty when the pod must not get one."""
    policy = pod.spec.restart_policy or "Always"
    ran = observed is not None and any(c.name != INFRA_CONTAINER_NAME for c in observed.containers)
    if policy == "Never" and ran:
        # Its containers already ran in a sandbox that is gone: the pod is done, not restarted.
        return []
    names = []
    for container in pod.spec.containers:
        latest = observed.latest(container.name) if observed is not None else None
        succeeded = latest is not None and latest.state == "exited" and latest.exit_code == 0
        if policy == "OnFailure" and succeeded:
            continue  # OnFailure does not run a succeeded container again
        names.append(container.name)
    if names and pod.spec.init_containers:
        return [pod.spec.init_containers[0].name]
    return names


def _garbage(pod: objects_pb2.Pod, containers: list[ContainerInfo]) -> list[str]:
    """Dead containers to remove: all but the newest dead one of each spec container (init ones
    included) and of the infra, and every dead one whose name left the spec."""
    keep_names = {c.name for c in [*pod.spec.init_containers, *pod.spec.containers]} | {INFRA_CONTAINER_NAME}
    kept: set[str] = set()
    garbage = []
    for container in containers:  # newest first per name
        if container.state in LIVE_STATES:
            continue
        if container.name in keep_names and container.name not in kept:
            kept.add(container.name)
            continue
        garbage.append(container.id)
    return garbage


def next_restart_count(observed: PodRuntime | None, name: str) -> int:
    """The restart count of the next container ``name``: the newest one's + 1, 0 for the first."""
    latest = observed.latest(name) if observed is not None else None
    return latest.restart_count + 1 if latest is not None else 0
