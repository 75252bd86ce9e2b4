"""The prober's Prometheus metrics, with the kubelet's names and labels: ``prober_probe_total``
(attempts by probe type and result, per container: ``probe_type`` Liveness / Readiness / Startup,
``result`` successful / failed / unknown) and ``prober_probe_duration_seconds``. They
are registered on a caller-given registry; the series of a pod go when it leaves the node.
(Kept here rather than in ``pykubelet/metrics.py`` so the prober can be used on its own; the agent
hands the prober its registry.)
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Histogram

from pykubelet.prober.results import ProbeType, Result

# The kubelet's buckets for probe durations: a probe has at most its timeout (default 1 s).
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ProbeMetrics:
    """Counts probe attempts and their durations.

    Args:
        registry: where the metrics are registered.
    """

    def __init__(self, registry: CollectorRegistry):
        self.total = Counter(
            "prober_probe",  # exported as prober_probe_total
            "Cumulative number of liveness, readiness or startup probes for a container by result.",
            ["probe_type", "result", "container", "pod", "namespace"],
            registry=registry,
        )
        self.duration = Histogram(
            "prober_probe_duration_seconds",
            "Duration in seconds of a probe response.",
            ["probe_type", "container", "pod", "namespace"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )

    def observe(
        self, probe_type: ProbeType, result: Result, container: str, pod: str, namespace: str, seconds: float
    ) -> None:
        """Records one attempt (a warning counts as successful, as in the kubelet)."""
        label = Result.SUCCESS.value if result is Result.WARNING else result.value
        self.total.labels(probe_type.value, label, container, pod, namespace).inc()
        self.duration.labels(probe_type.value, container, pod, namespace).observe(seconds)

    def forget(self, containers: list[str], pod: str, namespace: str) -> None:
        """Drops every series of these containers of a pod that left the node."""
        for container in containers:
            for probe_type in ProbeType:
                kind = probe_type.value
                for result in (Result.SUCCESS, Result.FAILURE, Result.UNKNOWN):
                    with contextlib.suppress(KeyError):
                        self.total.remove(kind, result.value, container, pod, namespace)
                with contextlib.suppress(KeyError):
                    self.duration.remove(kind, container, pod, namespace)
