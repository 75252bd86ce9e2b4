"""The prober manager (kubelet's ``prober/prober_manager.go``): keeps one worker per (pod uid,
container name, container id, probe type) for every running container with probes, app containers
and sidecars (init containers with restartPolicy Always), and answers the pod workers' questions
from the workers' current results: is this container ready, has it started, which containers
failed their liveness or startup probe and must be restarted.

The probing never runs on the sync path: ``sync`` only starts and stops worker tasks (it is called
at every pod sync, and is cheap and idempotent), and the answers are plain reads. A worker whose
result flips calls ``on_change(uid)`` so the pod worker syncs the pod again (level-triggered: the
sync then reads the results).

Choices where the kubelet leaves room, or that differ from it:
- Keys carry the container id: a restarted container (new id) gets fresh workers and fresh
  results (not ready, not started, alive), and a failure recorded against the old one disappears
  with it. Results are kept in memory only; after an agent restart a container is not ready until
  its readiness probe succeeds again (as with the kubelet).
- A readiness probe that has not succeeded yet means not ready; a container the manager knows no
  readiness probe for is ready (the caller checks that it runs). The answers are about the pod
  spec given to the last ``sync``, so the pod worker calls ``sync`` before it reads them.
- While the pod is being deleted, liveness and startup workers stop with a success on record, so
  nothing is restarted during the graceful stop; readiness goes on probing (kubelet's rule).
- Every failed attempt records a Warning ``Unhealthy`` event (``Liveness probe failed: ...``); an
  attempt that could not be run at all records ``... probe errored: ...`` and is not counted; a
  redirect the HTTP probe did not follow records ``ProbeWarning`` and counts as a success.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pykubelet.events import EventRecorder
from pykubelet.prober.metrics import ProbeMetrics
from pykubelet.prober.results import Outcome, ProbeType, Result, Timing
from pykubelet.prober.targets import ProbeTarget, Runner, run_probe
from pykubelet.prober.worker import Worker
from pykubelet.runtime.base import ContainerInfo, PodRuntime, Runtime
from pymaster.api import objects_pb2

log = logging.getLogger(__name__)

SIDECAR_RESTART_POLICY = "Always"


def _now() -> datetime:
    return datetime.now(UTC)


def probed_containers(pod: objects_pb2.Pod) -> list[objects_pb2.Container]:
    """The pod's containers that may have running probes: sidecars, then app containers."""
    sidecars = [c for c in pod.spec.init_containers if c.restart_policy == SIDECAR_RESTART_POLICY]
    return [c for c in [*sidecars, *pod.spec.containers] if any(t.spec(c) is not None for t in ProbeType)]


@dataclass
class _Container:
    """The workers of one running container instance."""

    name: str
    container_id: str
    workers: dict[ProbeType, Worker] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        """No startup probe, or it succeeded."""
        startup = self.workers.get(ProbeType.STARTUP)
        return startup is None or startup.state.success


@dataclass
class _Pod:
    pod: objects_pb2.Pod
    pod_ip: str = ""
    containers: dict[str, _Container] = field(default_factory=dict)  # by container name
    with_probe: dict[ProbeType, frozenset[str]] = field(default_factory=dict)  # names, from the spec
    names: set[str] = field(default_factory=set)  # every container name that had workers (metrics)


class ProbeManager:
    """Runs the probes of the node's pods (see the module docstring).

    Args:
        runtime: the container runtime (exec probes).
        host_ip: the node's address: the pod IP of pods on the host's network.
        on_change: called with a pod's uid when one of its probe results flipped.
        recorder: records the ``Unhealthy`` events; None: none.
        clock: monotonic seconds.
        metrics: where attempts are counted; None: not counted.
        sleep: waits ``clock`` seconds (tests give a fake clock's).
        wall_clock: the current time, to place a container's startedAt on ``clock``.
        runner: runs one probe attempt (tests give fakes); default: the real handlers.
    """

    def __init__(
        self,
        runtime: Runtime,
        host_ip: str,
        on_change: Callable[[str], None],
        recorder: EventRecorder | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        metrics: ProbeMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], datetime] = _now,
        runner: Runner | None = None,
    ):
        self._host_ip = host_ip
        self._on_change = on_change
        self._recorder = recorder
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._wall = wall_clock
        self._runner: Runner = runner or functools.partial(run_probe, runtime)
        self._pods: dict[str, _Pod] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._born = clock()

    # ---- what the pod workers call ----

    def sync(self, pod: objects_pb2.Pod, observed: PodRuntime | None) -> None:
        """Matches the workers to ``pod``'s running containers: starts the missing ones (keyed by
        container id), stops those of containers gone, restarted or no longer running, or of
        probes no longer in the spec. Idempotent; cheap when nothing changed."""
        uid = pod.metadata.uid
        specs = probed_containers(pod)
        entry = self._pods.get(uid)
        if not specs:
            if entry is not None:
                self.remove(uid)
            return
        if entry is None:
            entry = self._pods[uid] = _Pod(pod)
        entry.pod = pod
        entry.pod_ip = self._pod_ip(pod, observed)
        entry.with_probe = {t: frozenset(c.name for c in specs if t.spec(c) is not None) for t in ProbeType}
        deleting = pod.metadata.HasField("deletion_timestamp")
        running: set[str] = set()
        for spec in specs:
            latest = observed.latest(spec.name) if observed is not None else None
            if latest is None or latest.state != "running":
                continue
            running.add(spec.name)
            probes = entry.containers.get(spec.name)
            if probes is not None and probes.container_id != latest.id:
                self._stop_container(probes)
                probes = None
            if probes is None:
                probes = entry.containers[spec.name] = _Container(spec.name, latest.id)
                entry.names.add(spec.name)
            self._sync_workers(entry, probes, spec, latest, deleting)
        for name in [n for n in entry.containers if n not in running]:
            self._stop_container(entry.containers.pop(name))

    def remove(self, uid: str) -> None:
        """Stops every worker of a pod that left the node and forgets its results."""
        entry = self._pods.pop(uid, None)
        if entry is None:
            return
        for probes in entry.containers.values():
            self._stop_container(probes)
        if self._metrics is not None:
            meta = entry.pod.metadata
            self._metrics.forget(sorted(entry.names), meta.name, meta.namespace)

    async def stop(self) -> None:
        """Stops every worker and waits for their tasks to end."""
        for uid in list(self._pods):
            self.remove(uid)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def readiness(self, uid: str, name: str) -> bool:
        """Whether container ``name`` is ready as far as probes go: it has no readiness probe, or
        the readiness probe of its running instance currently succeeds."""
        worker = self._worker(uid, name, ProbeType.READINESS)
        if worker is not None:
            return worker.state.success
        entry = self._pods.get(uid)
        return entry is None or name not in entry.with_probe.get(ProbeType.READINESS, ())

    def started(self, uid: str, name: str) -> bool:
        """Whether container ``name`` has started as far as probes go: it has no startup probe, or
        the startup probe of its running instance succeeded."""
        worker = self._worker(uid, name, ProbeType.STARTUP)
        if worker is not None:
            return worker.state.success
        entry = self._pods.get(uid)
        return entry is None or name not in entry.with_probe.get(ProbeType.STARTUP, ())

    def liveness_failures(self, uid: str) -> dict[str, str]:
        """Container name -> why it must be restarted, for the running containers whose liveness
        or startup probe reached its failureThreshold (``sync.compute_pod_actions``'s
        ``probe_failures``). An entry goes with its container instance."""
        entry = self._pods.get(uid)
        if entry is None:
            return {}
        failures: dict[str, str] = {}
        for name, probes in entry.containers.items():
            for probe_type in (ProbeType.STARTUP, ProbeType.LIVENESS):
                worker = probes.workers.get(probe_type)
                if worker is not None and worker.state.on_hold:
                    kind = probe_type.value.lower()
                    failures[name] = f"Container {name} failed {kind} probe, will be restarted"
                    break
        return failures

    def probe_grace_period(self, uid: str, name: str) -> int | None:
        """The terminationGracePeriodSeconds of the probe that failed container ``name`` (a
        liveness or startup probe may shorten the pod's grace for the kill); None when unset or
        when no probe failed it."""
        entry = self._pods.get(uid)
        probes = entry.containers.get(name) if entry is not None else None
        for probe_type in (ProbeType.STARTUP, ProbeType.LIVENESS):
            worker = probes.workers.get(probe_type) if probes is not None else None
            if worker is not None and worker.state.on_hold:
                probe = worker.target.probe
                return probe.termination_grace_period_seconds if probe.HasField(
                    "termination_grace_period_seconds") else None
        return None

    # ---- workers ----

    def _pod_ip(self, pod: objects_pb2.Pod, observed: PodRuntime | None) -> str:
        if pod.spec.host_network:
            return self._host_ip
        infra = observed.infra if observed is not None else None
        return infra.ip if infra is not None and infra.state == "running" else ""

    def _worker(self, uid: str, name: str, probe_type: ProbeType) -> Worker | None:
        entry = self._pods.get(uid)
        probes = entry.containers.get(name) if entry is not None else None
        return probes.workers.get(probe_type) if probes is not None else None

    def _sync_workers(
        self,
        entry: _Pod,
        probes: _Container,
        spec: objects_pb2.Container,
        latest: ContainerInfo,
        deleting: bool,
    ) -> None:
        for probe_type in ProbeType:
            probe = probe_type.spec(spec)
            worker = probes.workers.get(probe_type)
            if worker is not None and (probe is None or worker.target.probe != probe):
                self._track(worker.stop())  # the probe left or changed the spec
                del probes.workers[probe_type]
                worker = None
            if probe is None:
                continue
            if worker is None:
                worker = self._new_worker(entry, probes, spec, probe_type, probe, latest)
                probes.workers[probe_type] = worker
                if not (deleting and probe_type is not ProbeType.READINESS):
                    worker.start(jitter=self._clock() - self._born < worker.timing.period)
            if deleting and probe_type is not ProbeType.READINESS and not worker.quiesced:
                self._track(worker.quiesce())
                if probe_type is ProbeType.STARTUP:
                    self._wake_others(probes)  # "started" now: readiness goes on probing

    def _new_worker(
        self,
        entry: _Pod,
        probes: _Container,
        spec: objects_pb2.Container,
        probe_type: ProbeType,
        probe: objects_pb2.Probe,
        latest: ContainerInfo,
    ) -> Worker:
        delay = Timing.of(probe).initial_delay
        if latest.started_at is not None:
            delay += (latest.started_at - self._wall()).total_seconds()
        # Copies: the pod object may be updated in place, and a changed probe must be seen as changed.
        probe_copy, spec_copy = objects_pb2.Probe(), objects_pb2.Container()
        probe_copy.CopyFrom(probe)
        spec_copy.CopyFrom(spec)
        target = ProbeTarget(probe_type, probe_copy, spec_copy, latest.id, entry.pod_ip)
        gated = (lambda: False) if probe_type is ProbeType.STARTUP else (lambda: not probes.started)
        report = functools.partial(self._report, entry, probes)
        return Worker(
            probe_type, target, self._clock() + max(0.0, delay), self._runner, report, gated,
            lambda: entry.pod_ip, self._clock, self._sleep,
        )

    def _report(self, entry: _Pod, probes: _Container, worker: Worker, outcome: Outcome, seconds: float,
                flipped: bool) -> None:
        """Accounts for one attempt: metrics, events, and the pod worker woken on a flip."""
        pod = entry.pod
        meta = pod.metadata
        kind = worker.probe_type.value
        if self._metrics is not None:
            self._metrics.observe(worker.probe_type, outcome.result, probes.name, meta.name, meta.namespace,
                                  seconds)
        if outcome.result is not Result.SUCCESS:
            log.debug("probe attempt pod=%s/%s container=%s probe=%s result=%s output=%r", meta.namespace,
                      meta.name, probes.name, kind, outcome.result.value, outcome.message)
        if self._recorder is not None:
            if outcome.result is Result.FAILURE:
                message = f"{kind} probe failed: {outcome.message}"
                self._recorder.pod_event(pod, "Warning", "Unhealthy", message, container=probes.name)
            elif outcome.result is Result.UNKNOWN:
                message = f"{kind} probe errored: {outcome.message}"
                self._recorder.pod_event(pod, "Warning", "Unhealthy", message, container=probes.name)
            elif outcome.result is Result.WARNING:
                message = f"{kind} probe warning: {outcome.message}"
                self._recorder.pod_event(pod, "Warning", "ProbeWarning", message, container=probes.name)
        if not flipped:
            return
        log.info("probe result changed pod=%s/%s container=%s container_id=%s probe=%s result=%s",
                 meta.namespace, meta.name, probes.name, probes.container_id[:12], kind,
                 worker.state.result.value if worker.state.result else "none")
        if worker.probe_type is ProbeType.STARTUP and worker.state.success:
            self._wake_others(probes)
        try:
            self._on_change(meta.uid)
        except Exception:  # the pod worker's bug must not end the probing
            log.exception("probe on_change failed pod=%s/%s", meta.namespace, meta.name)

    @staticmethod
    def _wake_others(probes: _Container) -> None:
        for probe_type in (ProbeType.READINESS, ProbeType.LIVENESS):
            worker = probes.workers.get(probe_type)
            if worker is not None:
                worker.wake()

    def _stop_container(self, probes: _Container) -> None:
        for worker in probes.workers.values():
            self._track(worker.stop())
        probes.workers.clear()

    def _track(self, task: asyncio.Task[None] | None) -> None:
        """Keeps a cancelled worker task until it ended, so ``stop`` can wait for it."""
        if task is not None and not task.done():
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
