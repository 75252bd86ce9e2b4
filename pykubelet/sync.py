"""One pod's sync: plan what to do with its containers (pure), then do it on the runtime.

The plan follows kubelet's ``computePodActions``: from the desired pod and what the engine holds
for it, decide whether to kill the whole pod, (re)create its sandbox (the infra container), which
app containers to start, which to kill and which dead ones to garbage-collect. It is a pure
function of its inputs, so a sync is level-triggered: whatever woke it (new spec, a container
died, the periodic resync), it recomputes from scratch and a missed event costs latency only.

``execute`` then carries the plan out. Failures to start one container (image pull, create,
start) do not raise: they come back as ``ContainerFailure`` for the pod status (waiting reason
``ErrImagePull``, ``CreateContainerError`` ...), while an unreachable engine (RuntimeUnavailable)
propagates so the worker retries the whole sync.

Restart policy (Always / OnFailure / Never) is applied with kubelet's crash-loop back-off: the
first restart is immediate, then 10 s, 20 s, 40 s ... capped at 300 s; a container that ran
10 minutes before it exited restarts at once again. The back-off is derived from what Docker
holds (the dead container's restart count and times), so it survives an agent restart and needs
no state of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerRuntimeError,
    PodRuntime,
    Runtime,
    RuntimeUnavailable,
)
from pykubelet.runtime.labels import container_spec_hash
from pymaster.api import objects_pb2

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 30
TERMINAL_PHASES = ("Succeeded", "Failed")
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
        containers_to_start: names of spec containers to start, in spec order.
        containers_to_kill: container id -> why it is stopped (spec changed, not in the spec ...).
        containers_to_remove: ids of dead containers to garbage-collect (all but the newest dead
            container of each name, which keeps the restart count and the last state).
        backoff: a CrashLoopBackOff failure for each container that should restart but whose
            crash-loop back-off has not expired yet (reported in the status; not an action).
    """

    kill_pod: bool = False
    create_sandbox: bool = False
    containers_to_start: list[str] = field(default_factory=list)
    containers_to_kill: dict[str, str] = field(default_factory=dict)
    containers_to_remove: list[str] = field(default_factory=list)
    backoff: list[ContainerFailure] = field(default_factory=list)

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
    pod: objects_pb2.Pod, observed: PodRuntime | None, now: datetime | None = None
) -> PodActions:
    """Plans one sync of ``pod`` against what the engine holds for it (pure).

    Args:
        pod: the desired pod.
        observed: its containers as the runtime sees them (None: it has none).
        now: the current time (timezone-aware) for the crash-loop back-off; None: no back-off.

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
        actions.containers_to_start = _containers_for_new_sandbox(pod, observed)
        actions.create_sandbox = bool(actions.containers_to_start)
        return actions

    assert observed is not None  # the infra container came from it
    spec_names = {c.name for c in pod.spec.containers}
    keep = 0
    for container in pod.spec.containers:
        latest = observed.latest(container.name)
        if latest is not None and latest.state == "running":
            if latest.spec_hash == container_spec_hash(container):
                keep += 1
                continue
            # Restarted whatever the restart policy: the spec changed (e.g. a new image).
            actions.containers_to_kill[latest.id] = f"container {container.name} definition changed"
            actions.containers_to_start.append(container.name)
        elif should_restart(pod, latest):
            wait = restart_backoff(latest, now) if latest is not None and now is not None else 0.0
            if wait > 0:
                message = (
                    f"back-off {_backoff_delay(latest):.0f}s restarting failed container={container.name} "
                    f"pod={pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})"
                )
                actions.backoff.append(ContainerFailure(container.name, "CrashLoopBackOff", message))
                keep += 1  # still a container of the pod: the sandbox stays
                continue
            actions.containers_to_start.append(container.name)
    for container in live:
        newest = observed.latest(container.name)
        if container.name != INFRA_CONTAINER_NAME and container.name not in spec_names:
            actions.containers_to_kill[container.id] = f"container {container.name} is not in the pod spec"
        elif newest is not None and newest.id != container.id:
            actions.containers_to_kill[container.id] = f"container {container.name} has a newer instance"
    if keep == 0 and not actions.containers_to_start:
        # Every container finished and none restarts (Never/OnFailure): stop the sandbox too.
        actions.kill_pod = True
    return actions


def _backoff_delay(latest: ContainerInfo) -> float:
    return min(BACKOFF_INITIAL_SECONDS * 2 ** (latest.restart_count - 1), BACKOFF_MAX_SECONDS)


def _containers_for_new_sandbox(pod: objects_pb2.Pod, observed: PodRuntime | None) -> list[str]:
    """The spec containers a new sandbox would run; empty when the pod must not get one."""
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
    return names


def _garbage(pod: objects_pb2.Pod, containers: list[ContainerInfo]) -> list[str]:
    """Dead containers to remove: all but the newest dead one of each spec container (and of the
    infra), and every dead one whose name left the spec."""
    keep_names = {c.name for c in pod.spec.containers} | {INFRA_CONTAINER_NAME}
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


def pod_grace_seconds(pod: objects_pb2.Pod) -> float:
    """The grace period to stop ``pod``'s containers with: the deletion's, else the spec's
    terminationGracePeriodSeconds, else 30."""
    if pod.metadata.HasField("deletion_timestamp") and pod.metadata.HasField("deletion_grace_period_seconds"):
        return float(pod.metadata.deletion_grace_period_seconds)
    if pod.spec.HasField("termination_grace_period_seconds"):
        return float(pod.spec.termination_grace_period_seconds)
    return float(DEFAULT_GRACE_SECONDS)


def next_restart_count(observed: PodRuntime | None, name: str) -> int:
    """The restart count of the next container ``name``: the newest one's + 1, 0 for the first."""
    latest = observed.latest(name) if observed is not None else None
    return latest.restart_count + 1 if latest is not None else 0


async def execute(
    runtime: Runtime,
    pod: objects_pb2.Pod,
    actions: PodActions,
    node_name: str,
    infra_image: str,
    observed: PodRuntime | None,
    grace_seconds: float | None = None,
) -> list[ContainerFailure]:
    """Carries out ``actions`` for ``pod``: kill, create the sandbox, start containers in spec
    order, remove old dead containers.

    Args:
        runtime: the container runtime.
        pod: the desired pod.
        actions: ``compute_pod_actions(pod, observed)``.
        node_name: this node (labels).
        infra_image: the infra container's image.
        observed: what ``actions`` was computed from.
        grace_seconds: overrides ``pod_grace_seconds(pod)`` for the kills.

    Returns:
        The containers that could not be started and why (a failed sandbox fails them all).

    Raises:
        RuntimeUnavailable: the engine did not answer; nothing more was attempted.
        ContainerRuntimeError: stopping a container failed (starting a second copy beside it
            would be worse than retrying the sync).
    """
    key = f"{pod.metadata.namespace}/{pod.metadata.name}"
    grace = grace_seconds if grace_seconds is not None else pod_grace_seconds(pod)
    if actions.kill_pod and observed is not None:
        log.info("killing pod pod=%s uid=%s grace=%s", key, pod.metadata.uid, grace)
        await kill_pod(runtime, observed, grace, remove=False)
    elif actions.containers_to_kill:
        for container_id, reason in actions.containers_to_kill.items():
            log.info("killing container pod=%s id=%s reason=%s", key, container_id[:12], reason)
        await _all(runtime.stop_container(cid, grace) for cid in actions.containers_to_kill)

    failures: list[ContainerFailure] = []
    infra = observed.infra if observed is not None else None
    if actions.create_sandbox:
        try:
            infra = await runtime.start_infra(
                pod, node_name, infra_image, next_restart_count(observed, INFRA_CONTAINER_NAME)
            )
            log.info("sandbox started pod=%s id=%s ip=%s", key, infra.id[:12], infra.ip)
        except RuntimeUnavailable:
            raise
        except ContainerRuntimeError as err:
            log.warning("sandbox failed pod=%s reason=%s message=%s", key, err.reason, err.message)
            failures = [ContainerFailure(n, err.reason, err.message) for n in actions.containers_to_start]

    if infra is not None and not failures:
        for container in pod.spec.containers:  # spec order, like kubelet
            if container.name in actions.containers_to_start:
                failure = await _start(runtime, pod, container, node_name, infra, observed)
                if failure is not None:
                    failures.append(failure)

    await _remove_garbage(runtime, actions.containers_to_remove, key)
    return failures


async def _start(
    runtime: Runtime,
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    node_name: str,
    infra: ContainerInfo,
    observed: PodRuntime | None,
) -> ContainerFailure | None:
    key = f"{pod.metadata.namespace}/{pod.metadata.name}"
    restart_count = next_restart_count(observed, container.name)
    try:
        await runtime.ensure_image(container.image, container.image_pull_policy)
        started = await runtime.start_container(pod, container, node_name, infra, restart_count)
    except RuntimeUnavailable:
        raise
    except ContainerRuntimeError as err:
        log.warning("container start failed pod=%s container=%s reason=%s message=%s", key, container.name,
                    err.reason, err.message)
        return ContainerFailure(container.name, err.reason, err.message)
    log.info("container started pod=%s container=%s id=%s restart_count=%d", key, container.name,
             started.id[:12], restart_count)
    return None


async def _remove_garbage(runtime: Runtime, container_ids: list[str], key: str) -> None:
    """Best effort: a container that could not be removed now is removed at a later sync."""
    results = await asyncio.gather(
        *(runtime.remove_container(cid) for cid in container_ids), return_exceptions=True
    )
    for container_id, result in zip(container_ids, results, strict=True):
        if isinstance(result, RuntimeUnavailable):
            raise result
        if isinstance(result, ContainerRuntimeError):
            log.warning("removing dead container failed pod=%s id=%s error=%s", key, container_id[:12],
                        result)
        elif isinstance(result, BaseException):
            raise result


async def kill_pod(runtime: Runtime, observed: PodRuntime, grace_seconds: float, remove: bool) -> None:
    """Stops every live container of a pod, app containers in parallel first, then the infra
    container(s); with ``remove``, then removes all of its containers and, once they are gone,
    its volumes (emptyDir contents).

    Without ``remove`` the volumes stay: a pod whose sandbox is re-created keeps its emptyDir
    data, as in Kubernetes.

    Args:
        runtime: the container runtime.
        observed: the pod's containers.
        grace_seconds: SIGTERM to SIGKILL delay for each container.
        remove: also remove the containers and the pod's volumes (deleted pods, orphans).

    Raises:
        ContainerRuntimeError: a stop or removal failed (after the others were attempted); the
            volumes are then left for the next attempt, never removed under a live container.
    """
    apps = [c for c in observed.containers if c.name != INFRA_CONTAINER_NAME and c.state in LIVE_STATES]
    infras = [c for c in observed.containers if c.name == INFRA_CONTAINER_NAME and c.state in LIVE_STATES]
    await _all(runtime.stop_container(c.id, grace_seconds) for c in apps)
    await _all(runtime.stop_container(c.id, grace_seconds) for c in infras)
    if remove:
        await _all(runtime.remove_container(c.id) for c in observed.containers)
        await runtime.remove_pod_volumes(observed.uid)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Awaits every call concurrently; raises the first error once all are done."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
