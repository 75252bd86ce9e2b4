"""What one probe attempt found and what a run of attempts makes of it (kubelet's
``pkg/probe`` results and the state machine of ``prober/worker.go``), without any I/O or clock.

- ``Result``: the outcome of one attempt. ``WARNING`` counts as a success (kubelet's
  ``probe.Warning``: an HTTP redirect to another host); ``UNKNOWN`` means the probe could not be run
  at all (the engine refused the exec, say) and, as in the kubelet, is thrown away: it counts
  neither as a success nor as a failure.
- ``ProbeState``: the current result of one probe of one container. It flips to success after
  ``successThreshold`` consecutive successes and to failure after ``failureThreshold`` consecutive
  failures. A liveness or startup probe that flipped to failure goes on hold: the container is to
  be killed and nothing more is probed until a new container replaces it. A startup probe that
  succeeded is done for good.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pymaster.api import objects_pb2

DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class ProbeType(enum.Enum):
    """The three probes of a container; the value is how events and metrics name them."""

    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"

    def spec(self, container: objects_pb2.Container) -> objects_pb2.Probe | None:
        """The container's probe of this type, None when it has none."""
        field = _SPEC_FIELDS[self]
        return getattr(container, field) if container.HasField(field) else None


_SPEC_FIELDS = {
    ProbeType.LIVENESS: "liveness_probe",
    ProbeType.READINESS: "readiness_probe",
    ProbeType.STARTUP: "startup_probe",
}


class Result(enum.Enum):
    """The outcome of one probe attempt; the value is the kubelet's ``result`` metric label."""

    SUCCESS = "successful"
    WARNING = "warning"  # a success that deserves a word (a redirect the prober did not follow)
    FAILURE = "failed"
    UNKNOWN = "unknown"  # the probe could not be run: thrown away, as in the kubelet

    @property
    def ok(self) -> bool:
        return self in (Result.SUCCESS, Result.WARNING)


@dataclass(frozen=True)
class Outcome:
    """One probe attempt: its result and what it said (the probe's output or error).

    Attributes:
        result: success, warning, failure or unknown.
        message: for a failure what the user reads after ``Liveness probe failed: ``; for a
            success the probe's output (logged only).
    """

    result: Result
    message: str = ""


@dataclass(frozen=True)
class Timing:
    """A probe's timing and thresholds with zeros replaced by the kubelet's defaults (the master
    defaults them, but a zero must not make a worker spin or never flip).

    Attributes:
        initial_delay: seconds after the container started before the first attempt.
        timeout: seconds an attempt may take; then it is a failure.
        period: seconds between the starts of two attempts.
        success_threshold: consecutive successes that make the result a success.
        failure_threshold: consecutive failures that make the result a failure.
    """

    initial_delay: float
    timeout: float
    period: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: objects_pb2.Probe) -> Timing:
        return cls(
            initial_delay=float(max(0, probe.initial_delay_seconds)),
            timeout=float(probe.timeout_seconds if probe.timeout_seconds > 0 else DEFAULT_TIMEOUT_SECONDS),
            period=float(probe.period_seconds if probe.period_seconds > 0 else DEFAULT_PERIOD_SECONDS),
            success_threshold=probe.success_threshold if probe.success_threshold > 0
            else DEFAULT_SUCCESS_THRESHOLD,
            failure_threshold=probe.failure_threshold if probe.failure_threshold > 0
            else DEFAULT_FAILURE_THRESHOLD,
        )


def initial_result(probe_type: ProbeType) -> Result | None:
    """The result a probe has before its first attempt, by the kubelet's rule: a container is not
    ready until its readiness probe succeeded, is alive until its liveness probe failed, and has
    not started until its startup probe succeeded (None: no result yet)."""
    if probe_type is ProbeType.READINESS:
        return Result.FAILURE
    if probe_type is ProbeType.LIVENESS:
        return Result.SUCCESS
    return None


class ProbeState:
    """The current result of one probe of one container (see the module docstring).

    Args:
        probe_type: liveness, readiness or startup.
        timing: the probe's thresholds (and timing, kept for the worker).
    """

    def __init__(self, probe_type: ProbeType, timing: Timing):
        self.probe_type = probe_type
        self.timing = timing
        self.result: Result | None = initial_result(probe_type)
        self.on_hold = False  # liveness/startup failed: waiting for the container to be replaced
        self._last: bool | None = None  # the last attempt counted: success (True) or failure
        self._run = 0  # how many consecutive attempts had that outcome

    @property
    def success(self) -> bool:
        """Whether the current result is a success (ready, alive, started)."""
        return self.result is not None and self.result.ok

    @property
    def done(self) -> bool:
        """Nothing more is to be probed for this container: a liveness or startup probe on hold,
        or a startup probe that succeeded."""
        return self.on_hold or (self.probe_type is ProbeType.STARTUP and self.success)

    def record(self, outcome: Outcome) -> bool:
        """Counts one attempt; returns whether the current result flipped.

        An unknown outcome is thrown away (it neither continues nor breaks a run).
        """
        if outcome.result is Result.UNKNOWN or self.done:
            return False
        ok = outcome.result.ok
        if ok == self._last:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        threshold = self.timing.success_threshold if ok else self.timing.failure_threshold
        if self._run < threshold:
            return False
        new = Result.SUCCESS if ok else Result.FAILURE
        changed = self.result is None or self.result.ok != ok
        self.result = new
        if not ok and self.probe_type in (ProbeType.LIVENESS, ProbeType.STARTUP):
            # The container will be killed: stop counting until a new container replaces it.
            self.on_hold = True
            self._run = 0
        return changed
