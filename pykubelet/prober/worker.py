"""One probe worker (kubelet's ``prober/worker.go``): an asyncio task that probes one probe type of
one container instance (its id) on the probe's schedule and keeps that probe's current result.

Schedule: the first attempt at the container's startedAt + initialDelaySeconds (at once when that
is past, so a readiness probe answers as early as the kubelet's rule allows), then one every
periodSeconds counted from the start of the previous attempt (a ticker: an attempt that overran the
period is followed at once by the next). A liveness worker of a container that started long ago
(adopted after an agent restart) waits a random part of its period first, so a restarted agent
does not fire every probe of the node at the same instant; readiness and startup never wait.

Each attempt runs in a task of its own and is given up at timeoutSeconds: an attempt that has not
ended by then (a hung exec, a peer that accepts and never answers) counts as a failure at that
moment, and is cancelled and left behind, so it delays nothing, not even this worker's next attempt.

Liveness and readiness workers wait while the container's startup probe has not succeeded (the
manager wakes them when it does); a startup worker stops for good once it succeeded, and a
liveness or startup worker stops once it failed (the container is to be restarted; a new container
gets new workers).

Time is read from ``clock`` and waited with ``sleep`` (injected, so unit tests run a fake clock).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from pykubelet.prober.results import Outcome, ProbeState, ProbeType, Result, Timing
from pykubelet.prober.targets import ProbeTarget, Runner, timeout_message

log = logging.getLogger(__name__)

# Called after every attempt: (worker, outcome, seconds it took, whether the result flipped).
Report = Callable[["Worker", Outcome, float, bool], None]


class Worker:
    """Probes one probe of one container instance until stopped (see the module docstring).

    Args:
        probe_type: liveness, readiness or startup.
        target: what to probe; ``pod_ip`` is refreshed through ``pod_ip`` before every attempt.
        first_due: the ``clock`` time of the first attempt (startedAt + initialDelaySeconds).
        runner: runs one attempt.
        report: told about every attempt.
        gated: whether the container's startup probe still holds this worker back.
        pod_ip: the pod's current address.
        clock: monotonic seconds.
        sleep: waits that many ``clock`` seconds.
    """

    def __init__(
        self,
        probe_type: ProbeType,
        target: ProbeTarget,
        first_due: float,
        runner: Runner,
        report: Report,
        gated: Callable[[], bool],
        pod_ip: Callable[[], str],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ):
        self.probe_type = probe_type
        self.target = target
        self.timing = Timing.of(target.probe)
        self.state = ProbeState(probe_type, self.timing)
        self.first_due = first_due
        self._runner = runner
        self._report = report
        self._gated = gated
        self._pod_ip = pod_ip
        self._clock = clock
        self._sleep = sleep
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0
        self.quiesced = False

    @property
    def container_id(self) -> str:
        return self.target.container_id

    @property
    def running(self) -> bool:
        """Whether the worker's task is alive (it ends once its probe is done, or stopped)."""
        return self._task is not None and not self._task.done()

    def start(self, jitter: bool = False) -> None:
        """Starts the task. ``jitter``: the container is old, spread the first attempt over a period."""
        adopted = self.first_due + self.timing.period < self._clock()
        if jitter and adopted and self.probe_type is ProbeType.LIVENESS:
            self.first_due = self._clock() + random.uniform(0, self.timing.period)
        name = f"probe-{self.probe_type.value.lower()}-{self.target.container.name}-{self.container_id[:12]}"
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def wake(self) -> None:
        """Attempts at once if the initial delay is over (the startup probe just succeeded)."""
        self._woken.set()

    def stop(self) -> asyncio.Task[None] | None:
        """Cancels the task; returns it (to be awaited by whoever wants it gone), None if none."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            return task
        return None

    def quiesce(self) -> asyncio.Task[None] | None:
        """Stops probing with a success on record (the pod is being deleted: a liveness or startup
        probe failing now must not restart anything, kubelet's rule). Once only."""
        self.quiesced = True
        self.state.result, self.state.on_hold = Result.SUCCESS, False
        return self.stop()

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: logged loudly rather than lost with the task
            log.exception("probe worker failed probe=%s container=%s container_id=%s", self.probe_type.value,
                          self.target.container.name, self.container_id[:12])

    async def _loop(self) -> None:
        due = self.first_due
        while not self.state.done:
            woken = await self._wait_until(due)
            now = self._clock()
            if woken:
                due = max(now, self.first_due)
            if now < due:
                continue
            if self._gated():
                due = now + self.timing.period  # woken early when the startup probe succeeds
                continue
            started = now
            outcome = await self._attempt()
            self.attempts += 1
            flipped = self.state.record(outcome)
            try:
                self._report(self, outcome, self._clock() - started, flipped)
            except Exception:  # a reporting bug must not end the probing
                log.exception("probe report failed probe=%s container=%s", self.probe_type.value,
                              self.target.container.name)
            due = max(started + self.timing.period, self._clock())

    async def _wait_until(self, due: float) -> bool:
        """Sleeps until ``due`` or a wake-up; returns whether it was woken."""
        if self._woken.is_set():
            self._woken.clear()
            return True
        delay = due - self._clock()
        if delay <= 0:
            return False
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        if self._woken.is_set():
            self._woken.clear()
            return True
        return False

    async def _attempt(self) -> Outcome:
        """One attempt, given up at the probe's timeout (counted as a failure then)."""
        timeout = self.timing.timeout
        target = ProbeTarget(
            self.probe_type, self.target.probe, self.target.container, self.container_id, self._pod_ip()
        )
        attempt = asyncio.ensure_future(self._runner(target, timeout))
        timer = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait((attempt, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            attempt.cancel()
            timer.cancel()
            raise
        timer.cancel()
        if attempt.done():
            try:
                return attempt.result()
            except asyncio.CancelledError:
                return Outcome(Result.UNKNOWN, "probe cancelled")
            except Exception as err:  # a bug or an unexpected error of a handler: thrown away
                log.warning("probe errored probe=%s container=%s error=%r", self.probe_type.value,
                            target.container.name, err)
                return Outcome(Result.UNKNOWN, f"{type(err).__name__}: {err}")
        # Hung: cancelled and left behind; the callback retrieves whatever it ends with.
        attempt.cancel()
        attempt.add_done_callback(_discard)
        return Outcome(Result.FAILURE, timeout_message(target, timeout))


def _discard(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
