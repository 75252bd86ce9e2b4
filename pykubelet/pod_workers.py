"""Pod workers: one asyncio task per pod uid, driving that pod from desired to observed state
(the kubelet's ``pod_workers``), plus the reaper of containers no pod owns.

Every input only means "sync pod <uid>" (``PodWorkers.wake``): a new spec, a container event, a
relist difference, the periodic resync (``RESYNC_SECONDS``), the time the last plan asked to be
looked at again (``PodActions.requeue_after``: a crash-loop back-off ending). Requests coalesce in
a pending flag, so a busy worker
(pulling an image, waiting out a grace period) runs once more afterwards, never once per request.
Each sync recomputes from the desired pod and the freshly observed containers, so a missed input
costs latency, never correctness.

A worker's life: sync (observe -> probes follow the containers -> ``sync.compute_pod_actions``
with the probes' verdicts -> ``PodExecutor.execute`` -> ``compute_pod_status`` with readiness and
termination messages -> status manager) until the pod is marked for deletion (kill with its
deletion grace, remove the containers, tell the status manager the pod terminated, end) or leaves
the desired set (kill and remove, end). Only the status manager (and the event recorder) talk to
the master. A pod running longer than its activeDeadlineSeconds is stopped and fails
(DeadlineExceeded). Each sync also brings the pod's configMap, secret, downwardAPI and projected
volumes up to date (``PodVolumes.refresh``; a failure is a FailedMount event, the old files
stay), and, every few seconds at most, measures its local storage when it has limits there
(``volume_usage.LocalStorageEviction``: emptyDir sizeLimits, its containers' and its own
ephemeral-storage limits): a pod past one is evicted (stopped, phase Failed, reason Evicted, an
Evicted event), as by the kubelet's eviction manager.

Every sync first runs the node's own admission check (``admission.check_pod``): a pod this node
refuses gets no container (any it still runs, say after the agent restarted with stricter flags,
is stopped) and the status phase Failed, reason Forbidden, with a message naming the field.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pykubelet import admission, sync
from pykubelet.events import EventRecorder
from pykubelet.executor import PodExecutor
from pykubelet.metrics import AgentMetrics
from pykubelet.pod_status import DEADLINE_EXCEEDED, DEADLINE_MESSAGE, Observations, compute_pod_status
from pykubelet.prober import ProbeManager
from pykubelet.runtime.base import ContainerRuntimeError, PodRuntime
from pykubelet.status import StatusManager
from pykubelet.termination import TerminationMessages
from pykubelet.volume_projection import VolumeMountError, written_by_agent
from pykubelet.volume_usage import CHECK_INTERVAL_SECONDS, EVICTED, LocalStorageEviction
from pymaster.api import errors, objects_pb2
from pymaster.api.pods import FAILED, TERMINAL_PHASES, grace_period_seconds, pod_key

log = logging.getLogger(__name__)

# Like the kubelet's syncFrequency: changes arrive as events and relist differences within about
# a second; this periodic sync of every pod only bounds the cost of anything missed, so it is
# kept well above the relist period (each sync inspects the pod's containers).
RESYNC_SECONDS = 10.0
REAP_GRACE_SECONDS = 1.0  # containers no pod owns: a short SIGTERM grace, then SIGKILL
# A requeue fires this much after the time the plan named, so the clock has surely passed it.
REQUEUE_MARGIN_SECONDS = 0.05
# An evicted pod's containers get the kubelet's minimum grace period (minimumGracePeriodInSeconds).
EVICTION_GRACE_SECONDS = 2.0
FAILED_MOUNT = VolumeMountError.event_reason


def all_running(pod: objects_pb2.Pod, observed: PodRuntime | None) -> bool:
    """Whether the newest container of every container in the spec is running."""
    if observed is None:
        return False
    for container in pod.spec.containers:
        latest = observed.latest(container.name)
        if latest is None or latest.state != "running":
            return False
    return True


@dataclass
class FailureTracker:
    """The last start failure of each container, shown in its status until a later attempt.

    A failure stays while nothing newer happened to that container (a start skipped by
    back-off must still show why), and clears once a container newer than the one seen when the
    failure was recorded exists, or the newest one runs.
    """

    failures: dict[str, sync.ContainerFailure] = field(default_factory=dict)
    _seen_ids: dict[str, str | None] = field(default_factory=dict)

    def update(self, new: list[sync.ContainerFailure], observed: PodRuntime | None) -> None:
        """Records ``new`` failures and clears the stale ones against ``observed``."""
        for name in list(self.failures):
            latest = observed.latest(name) if observed is not None else None
            latest_id = latest.id if latest is not None else None
            if latest is not None and (latest.state == "running" or latest_id != self._seen_ids[name]):
                del self.failures[name]
                del self._seen_ids[name]
        for failure in new:
            latest = observed.latest(failure.container_name) if observed is not None else None
            self.failures[failure.container_name] = failure
            self._seen_ids[failure.container_name] = latest.id if latest is not None else None


@dataclass
class _Worker:
    uid: str
    pod: objects_pb2.Pod  # the last desired version seen, kept for the removal path
    first_seen: float
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    start_recorded: bool = False
    synced_once: bool = False
    rejected: bool = False
    unfit: list[admission.Violation] = field(default_factory=list)  # resources refused at admission
    failures: FailureTracker = field(default_factory=FailureTracker)
    # The grace period of the kill in flight (None: not killing); a shorter one cuts it short.
    killing_grace: float | None = None
    requeue: asyncio.TimerHandle | None = None
    deadline_reported: bool = False
    evicted: str | None = None  # the eviction message once it used more local storage than it may
    messages: dict[str, str] = field(default_factory=dict)  # termination messages by container id


class PodWorkers:
    """Runs one worker per desired pod and reaps containers no pod owns.

    Args:
        executor: runs plans and kills on the runtime (with the volume manager and the events).
        desired: the desired set (uid -> Pod), ``ConfigSource.pods``; read, never written.
        synced: set once ``desired`` holds a complete snapshot; the reaper waits for it.
        status_manager: receives every computed status, and the news that a pod terminated.
        metrics: the agent's metrics (pod start duration).
        node_name: this node.
        host_ip: the node's InternalIP, reported as status.hostIP.
        policy: what this node admits (privileged, hostNetwork, hostPath); nothing by default.
        probes: the probe manager; None: no probes run (every running container is ready).
        recorder: where events go (BackOff, DeadlineExceeded); None: none.
        allocatable: the node's allocatable as the master has it, for admitting a new pod's
            resources (``fresh=True``: asked of the master now, because an admin may have just
            added an extended resource the pod was scheduled for); None: resources are not
            checked.
        storage_interval: a pod's local storage is measured at most once per this many seconds.
    """

    def __init__(
        self,
        executor: PodExecutor,
        desired: Mapping[str, objects_pb2.Pod],
        synced: asyncio.Event,
        status_manager: StatusManager,
        metrics: AgentMetrics,
        node_name: str,
        host_ip: str,
        policy: admission.AdmissionPolicy | None = None,
        probes: ProbeManager | None = None,
        recorder: EventRecorder | None = None,
        allocatable: Callable[[bool], Awaitable[Mapping[str, str]]] | None = None,
        storage_interval: float = CHECK_INTERVAL_SECONDS,
    ):
        self._executor = executor
        self._runtime = executor.runtime
        self._volumes = executor.volumes
        self._probes = probes
        self._recorder = recorder
        self._allocatable = allocatable
        self._messages = TerminationMessages(executor.runtime, executor.volumes)
        self._storage = LocalStorageEviction(executor.runtime, executor.volumes, node_name, storage_interval)
        self._desired = desired
        self._synced = synced
        self._status = status_manager
        self._metrics = metrics
        self._node_name = node_name
        self._host_ip = host_ip
        self._policy = policy or admission.AdmissionPolicy()
        self._workers: dict[str, _Worker] = {}
        # Pods confirmed terminated while the master still lists them: not to be synced again.
        self._finished: set[str] = set()
        self._reaping: dict[str, asyncio.Task[None]] = {}
        self._shortening: set[asyncio.Task[None]] = set()

    def active(self) -> set[str]:
        """The uids with a running worker."""
        return set(self._workers)

    def wake(self, uid: str) -> None:
        """Asks for pod ``uid`` to be synced: wakes its worker (starting one for a new desired
        pod); coalesces with a sync already pending."""
        worker = self._workers.get(uid)
        if worker is not None:
            worker.wake.set()
            self._shorten_kill(worker)
            return
        pod = self._desired.get(uid)
        if pod is None:
            # Not desired and no worker: anything left in Docker is the reaper's.
            self._finished.discard(uid)
            return
        if uid in self._finished:
            return
        worker = _Worker(uid=uid, pod=pod, first_seen=time.monotonic())
        worker.wake.set()
        worker.task = asyncio.create_task(self._run(worker), name=f"pod-worker-{uid}")
        self._workers[uid] = worker
        log.info("pod worker started pod=%s uid=%s", pod_key(pod), uid)

    async def run_resync(self, period: float = RESYNC_SECONDS) -> None:
        """Triggers a sync of every desired pod and every worker each ``period`` until cancelled."""
        while True:
            await asyncio.sleep(period)
            for uid in set(self._desired) | set(self._workers) | self._finished:
                self.wake(uid)

    def reap(self, observed: Mapping[str, PodRuntime]) -> None:
        """Kills and removes the containers of pods neither desired nor worked on (the relist's
        hook). Does nothing before the first snapshot: an empty desired set then means "not known
        yet", not "remove everything"."""
        if not self._synced.is_set():
            return
        for uid, pod in observed.items():
            if uid in self._desired or uid in self._workers or uid in self._reaping or not pod.containers:
                continue
            task = asyncio.create_task(self._reap(pod), name=f"reap-{uid}")
            self._reaping[uid] = task

    async def stop(self) -> None:
        """Cancels every worker and reap in flight; containers are left as they are."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        tasks += [*self._reaping.values(), *self._shortening]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._reaping.clear()

    async def _reap(self, pod: PodRuntime) -> None:
        try:
            log.info("reaping orphan containers pod=%s/%s uid=%s containers=%d", pod.namespace, pod.name,
                     pod.uid, len(pod.containers))
            await self._executor.kill_pod(pod, REAP_GRACE_SECONDS, remove=True)
        except Exception as err:  # retried at the next relist
            log.warning("reap failed uid=%s error=%s", pod.uid, err)
        finally:
            self._reaping.pop(pod.uid, None)

    async def _run(self, worker: _Worker) -> None:
        done = False
        while not done:
            await worker.wake.wait()
            worker.wake.clear()
            pod = self._desired.get(worker.uid)
            try:
                if pod is None:
                    await self._remove(worker)
                    done = True
                elif pod.metadata.HasField("deletion_timestamp"):
                    worker.pod = pod
                    done = await self._terminate(worker, pod)
                else:
                    worker.pod = pod
                    await self._sync(worker, pod)
            except (errors.ApiError, ContainerRuntimeError) as err:  # expected: no traceback
                log.warning("pod sync failed pod=%s uid=%s error=%s", pod_key(worker.pod), worker.uid, err)
            except Exception:  # a bug in one pod's sync must not end its worker
                log.exception("pod sync crashed pod=%s uid=%s", pod_key(worker.pod), worker.uid)
        if worker.requeue is not None:
            worker.requeue.cancel()
        del self._workers[worker.uid]
        self._status.forget(worker.uid)
        self._messages.forget(worker.uid)
        self._storage.forget(worker.uid)
        if self._probes is not None:
            self._probes.remove(worker.uid)
        log.info("pod worker ended pod=%s uid=%s", pod_key(worker.pod), worker.uid)

    async def _sync(self, worker: _Worker, pod: objects_pb2.Pod) -> None:
        uid = worker.uid
        observed = await self._runtime.get_pod(self._node_name, uid)
        violations = worker.unfit or admission.check_pod(pod, self._policy)
        if not violations and not worker.synced_once and observed is None and self._allocatable is not None:
            # Resources are admitted once, before anything of the pod ran (a pod adopted after an
            # agent restart already runs: it was admitted then).
            violations = worker.unfit = await self._check_fit(pod, uid)
        if violations:
            await self._reject(worker, pod, observed, violations)
            return
        if not worker.synced_once:
            worker.synced_once = True
            # Adopted after an agent restart: its start was measured (if ever) by the last agent.
            worker.start_recorded = all_running(pod, observed)
        now = datetime.now(UTC)
        left = deadline_left(pod, self._status.get(uid), now)
        if left is not None and left <= 0:
            await self._deadline_exceeded(worker, pod, observed, now)
            return
        finished = (self._status.get(uid) or pod.status).phase in TERMINAL_PHASES
        if worker.evicted is None and not finished and self._storage.watched(pod):
            worker.evicted = await self._storage.check(pod)
            if worker.evicted is not None:
                log.info("pod evicted pod=%s uid=%s message=%s", pod_key(pod), uid, worker.evicted)
                self._event(pod, "Warning", EVICTED, worker.evicted)
        if worker.evicted is not None:
            await self._evict(worker, pod, observed, now)
            return
        if any(written_by_agent(volume) for volume in pod.spec.volumes):
            # Updated ConfigMaps, Secrets, labels and annotations reach the running containers.
            for message in await self._volumes.refresh(pod):
                self._event(pod, "Warning", FAILED_MOUNT, message)
        if self._probes is not None:
            self._probes.sync(pod, observed)
        actions = sync.compute_pod_actions(
            pod, observed, now, self._liveness_failures(uid), self._not_started(pod, observed)
        )
        failures = list(actions.backoff)  # shown as CrashLoopBackOff until the restart
        for failure in actions.backoff:
            self._event(pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {failure.container_name} in pod "
                        f"{pod.metadata.name}_{pod.metadata.namespace}({uid})", failure.container_name)
        self._requeue(worker, min((t for t in (actions.requeue_after, left) if t is not None), default=None))
        if not actions.is_noop():
            log.info("pod sync pod=%s uid=%s actions=%s", pod_key(pod), uid, actions)
            started = await self._executor.execute(
                pod, actions, observed, grace_overrides=self._probe_graces(uid)
            )
            for failure in started:
                log.warning("container failed pod=%s container=%s reason=%s message=%s", pod_key(pod),
                            failure.container_name, failure.reason, failure.message)
            failures.extend(started)
            observed = await self._runtime.get_pod(self._node_name, uid)
            if self._probes is not None:
                self._probes.sync(pod, observed)
        worker.failures.update(failures, observed)
        worker.messages = await self._messages.collect(pod, observed)
        if not worker.start_recorded and all_running(pod, observed):
            worker.start_recorded = True
            seconds = time.monotonic() - worker.first_seen
            self._metrics.pod_start_duration.observe(seconds)
            log.info("pod started pod=%s uid=%s seconds=%.3f", pod_key(pod), uid, seconds)
        self._report(worker, pod, observed, now)

    def _report(
        self,
        worker: _Worker,
        pod: objects_pb2.Pod,
        observed: PodRuntime | None,
        now: datetime,
        messages: Mapping[str, str] | None = None,
        deadline_exceeded: bool = False,
        evicted: str | None = None,
    ) -> None:
        """Hands the pod's status to the status manager; ``evicted``: the pod failed, reason
        Evicted, with that message (unless it had finished before)."""
        uid, probes = worker.uid, self._probes
        seen = Observations(
            failures=dict(worker.failures.failures),
            ready=(lambda name: probes.readiness(uid, name)) if probes is not None else Observations.ready,
            started=(lambda name: probes.started(uid, name)) if probes is not None else Observations.started,
            messages=messages if messages is not None else worker.messages,
            deadline_exceeded=deadline_exceeded,
        )
        previous = self._status.get(uid) or (pod.status if pod.HasField("status") else None)
        status = compute_pod_status(pod, observed, seen, self._host_ip, now, previous)
        finished = previous is not None and previous.phase in TERMINAL_PHASES and previous.reason != EVICTED
        if evicted is not None and not finished:
            status.phase, status.reason, status.message = FAILED, EVICTED, evicted
        self._status.set_status(pod, status)

    async def _check_fit(self, pod: objects_pb2.Pod, uid: str) -> list[admission.Violation]:
        """The resource violations of admitting ``pod``: checked against the allocatable last heard
        and, before refusing, against the master's current one (the scheduler bound the pod on
        the newer figures; a refusal is final)."""
        assert self._allocatable is not None
        admitted = self._admitted(uid)
        violations = admission.check_fit(pod, await self._allocatable(False), admitted)
        if violations:
            violations = admission.check_fit(pod, await self._allocatable(True), admitted)
        return violations

    def _admitted(self, uid: str) -> list[objects_pb2.Pod]:
        """The pods this node admitted before pod ``uid`` and that still hold resources."""
        return [
            w.pod for w in self._workers.values()
            if w.uid != uid and w.synced_once and not w.rejected
            and (self._status.get(w.uid) or w.pod.status).phase not in TERMINAL_PHASES
        ]

    def _liveness_failures(self, uid: str) -> dict[str, str]:
        return self._probes.liveness_failures(uid) if self._probes is not None else {}

    def _not_started(self, pod: objects_pb2.Pod, observed: PodRuntime | None) -> set[str]:
        """The running sidecars whose startup probe has not succeeded yet."""
        if self._probes is None or observed is None:
            return set()
        return {
            c.name for c in pod.spec.init_containers
            if sync.is_sidecar(c) and not self._probes.started(pod.metadata.uid, c.name)
        }

    def _probe_graces(self, uid: str) -> dict[str, float]:
        """A liveness or startup probe's own terminationGracePeriodSeconds, for the containers it
        has killed (kubelet's probe-level grace)."""
        if self._probes is None:
            return {}
        graces = {}
        for name in self._liveness_failures(uid):
            grace = self._probes.probe_grace_period(uid, name)
            if grace is not None:
                graces[name] = float(grace)
        return graces

    async def _deadline_exceeded(
        self, worker: _Worker, pod: objects_pb2.Pod, observed: PodRuntime | None, now: datetime
    ) -> None:
        """activeDeadlineSeconds passed: stop everything, the pod fails (DeadlineExceeded)."""
        if not worker.deadline_reported:
            worker.deadline_reported = True
            log.info("pod deadline exceeded pod=%s uid=%s", pod_key(pod), worker.uid)
            self._event(pod, "Normal", DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
        if observed is not None and any(c.state in sync.LIVE_STATES for c in observed.containers):
            await self._executor.kill_pod(observed, float(grace_period_seconds(pod)), remove=False, pod=pod)
            observed = await self._runtime.get_pod(self._node_name, worker.uid)
        self._report(worker, pod, observed, now, deadline_exceeded=True)

    async def _evict(
        self, worker: _Worker, pod: objects_pb2.Pod, observed: PodRuntime | None, now: datetime
    ) -> None:
        """The pod used more local storage than it may: stop everything at once (the kubelet's
        minimum grace), the pod fails (Evicted) and is never started again."""
        if observed is not None and any(c.state in sync.LIVE_STATES for c in observed.containers):
            await self._executor.kill_pod(observed, EVICTION_GRACE_SECONDS, remove=False, pod=pod)
            observed = await self._runtime.get_pod(self._node_name, worker.uid)
        self._report(worker, pod, observed, now, evicted=worker.evicted)

    def _event(
        self, pod: objects_pb2.Pod, type_: str, reason: str, message: str, container: str = ""
    ) -> None:
        if self._recorder is not None:
            self._recorder.pod_event(pod, type_, reason, message, container)

    async def _reject(
        self,
        worker: _Worker,
        pod: objects_pb2.Pod,
        observed: PodRuntime | None,
        violations: list[admission.Violation],
    ) -> None:
        """The node refuses the pod: stop whatever it runs, report it Failed/Forbidden."""
        message = admission.rejection_message(violations)
        reason = admission.rejection_reason(violations)
        if not worker.rejected:
            worker.rejected = True
            self._metrics.admission_rejections.inc()
            log.warning("pod rejected pod=%s uid=%s reason=%s message=%s", pod_key(pod), worker.uid,
                        reason, message)
            self._event(pod, "Warning", reason, message)
        if observed is not None and any(c.state in sync.LIVE_STATES for c in observed.containers):
            grace = grace_period_seconds(pod)
            log.info("killing pod pod=%s uid=%s grace=%s reason=rejected", pod_key(pod), worker.uid, grace)
            await self._executor.kill_pod(observed, grace, remove=False, pod=pod)
        previous = self._status.get(worker.uid) or (pod.status if pod.HasField("status") else None)
        status = rejected_status(message, self._host_ip, datetime.now(UTC), previous, reason)
        self._status.set_status(pod, status)

    async def _terminate(self, worker: _Worker, pod: objects_pb2.Pod) -> bool:
        """Stops and removes the pod's containers, then has the status manager tell the master;
        True: the worker's job is done."""
        await self._kill_and_clean(worker, pod, "deleted")
        self._status.terminated(pod)
        log.info("pod terminated pod=%s uid=%s", pod_key(pod), worker.uid)
        self._finished.add(worker.uid)
        return True

    async def _remove(self, worker: _Worker) -> None:
        """The pod left the desired set: stop and remove whatever it still runs."""
        await self._kill_and_clean(worker, worker.pod, "removed")

    async def _kill_and_clean(self, worker: _Worker, pod: objects_pb2.Pod, reason: str) -> None:
        """Stops and removes the pod's containers with its grace period, then its volumes (also
        when it has no container left, e.g. its sandbox never started)."""
        uid = worker.uid
        observed = await self._runtime.get_pod(self._node_name, uid)
        if observed is not None and observed.containers:
            grace = grace_period_seconds(pod)
            log.info("killing pod pod=%s uid=%s grace=%s reason=%s", pod_key(pod), uid, grace, reason)
            worker.killing_grace = grace
            try:
                await self._executor.kill_pod(observed, grace, remove=True, pod=pod)
            finally:
                worker.killing_grace = None
        else:
            await self._volumes.cleanup(uid)

    @staticmethod
    def _requeue(worker: _Worker, seconds: float | None) -> None:
        """Schedules the sync the plan asked for (replacing an earlier request)."""
        if worker.requeue is not None:
            worker.requeue.cancel()
            worker.requeue = None
        if seconds is not None:
            delay = seconds + REQUEUE_MARGIN_SECONDS
            worker.requeue = asyncio.get_running_loop().call_later(delay, worker.wake.set)

    def _shorten_kill(self, worker: _Worker) -> None:
        """Cuts a kill in flight short when the pod now asks for less grace: a second delete with
        a shorter grace period, or the pod gone from the master (force-deleted: no grace left),
        as the kubelet does. The stops in flight return once their containers exit."""
        if worker.killing_grace is None:
            return
        pod = self._desired.get(worker.uid)
        grace = 0.0 if pod is None else float(grace_period_seconds(pod))
        if grace >= worker.killing_grace:
            return
        worker.killing_grace = grace
        log.info("shortening kill pod=%s uid=%s grace=%s", pod_key(worker.pod), worker.uid, grace)
        task = asyncio.create_task(self._stop_now(worker.uid, grace), name=f"shorten-kill-{worker.uid}")
        self._shortening.add(task)
        task.add_done_callback(self._shortening.discard)

    async def _stop_now(self, uid: str, grace: float) -> None:
        try:
            observed = await self._runtime.get_pod(self._node_name, uid)
            if observed is not None:
                await self._executor.kill_pod(observed, grace, remove=False, pod=self._desired.get(uid))
        except Exception as err:  # the kill in flight still ends it, at its own pace
            log.warning("shortening kill failed uid=%s error=%s", uid, err)


def rejected_status(
    message: str,
    host_ip: str,
    now: datetime,
    previous: objects_pb2.PodStatus | None = None,
    reason: str = admission.REASON,
) -> objects_pb2.PodStatus:
    """The status of a pod the node refused (kubelet's rejectPod): phase Failed, the admit
    handler's reason (Forbidden, SysctlForbidden, OutOfcpu ...), the message; startTime kept from
    ``previous``, else now."""
    status = objects_pb2.PodStatus(phase="Failed", reason=reason, message=message, host_ip=host_ip)
    if previous is not None and previous.HasField("start_time"):
        status.start_time.CopyFrom(previous.start_time)
    else:
        status.start_time.FromDatetime(now)
    return status


def deadline_left(pod: objects_pb2.Pod, status: objects_pb2.PodStatus | None, now: datetime) -> float | None:
    """Seconds until the pod's activeDeadlineSeconds passes (counted from its startTime, as the
    kubelet), negative once it did; None without a deadline or a start time yet."""
    if not pod.spec.HasField("active_deadline_seconds"):
        return None
    status = status if status is not None else pod.status
    if not status.HasField("start_time"):
        return None
    started = status.start_time.ToDatetime(tzinfo=UTC)
    return pod.spec.active_deadline_seconds - (now - started).total_seconds()
