"""Every Prometheus metric of the agent, in one place, registered on a caller-given registry.

Kubelet names where the kubelet has one (``kubelet_running_pods``, ``kubelet_runtime_operations_*``,
``kubelet_pleg_relist_duration_seconds`` ...); the host's resources use node_exporter's names
and are read by a Collector at scrape time, so no thread keeps writing gauges.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pykubelet.node_info import CpuSampler

# The kubelet's buckets for pod start: from half a second up to an hour (image pulls are slow).
_POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600,
                      900, 1200, 1800, 2700, 3600)
# Docker calls: 5 ms .. ~2 min (a stop waits for the grace period).
_RUNTIME_BUCKETS = (0.005, 0.0125, 0.03125, 0.078125, 0.2, 0.5, 1.2, 3, 7.5, 19, 48, 120)
_RELIST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CONTAINER_STATES = ("created", "running", "exited", "unknown")


class AgentMetrics:
    """The agent's metrics.

    Args:
        registry: where every metric is registered (a fresh one per agent keeps tests apart).
        node_name: exported as ``kubelet_node_name{node}`` = 1.
    """

    def __init__(self, registry: CollectorRegistry, node_name: str):
        self.registry = registry
        self.running_pods = Gauge(
            "kubelet_running_pods", "Pods on this node with a running infra container.", registry=registry
        )
        self.running_containers = Gauge(
            "kubelet_running_containers",
            "App containers on this node by state.",
            ["container_state"],
            registry=registry,
        )
        self.pod_start_duration = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Seconds from the agent first seeing a pod to all its containers running.",
            buckets=_POD_START_BUCKETS,
            registry=registry,
        )
        self.runtime_operations = Counter(
            "kubelet_runtime_operations",
            "Container engine operations by type.",
            ["operation_type"],
            registry=registry,
        )
        self.runtime_errors = Counter(
            "kubelet_runtime_operations_errors",
            "Failed container engine operations by type.",
            ["operation_type"],
            registry=registry,
        )
        self.runtime_duration = Histogram(
            "kubelet_runtime_operations_duration_seconds",
            "Duration of container engine operations by type.",
            ["operation_type"],
            buckets=_RUNTIME_BUCKETS,
            registry=registry,
        )
        self.relist_duration = Histogram(
            "kubelet_pleg_relist_duration_seconds",
            "Duration of one PLEG relist of the node's containers.",
            buckets=_RELIST_BUCKETS,
            registry=registry,
        )
        self.certificate_ttl = Gauge(
            "kubelet_certificate_manager_client_ttl_seconds",
            "Seconds until the node's client certificate expires (negative once expired).",
            registry=registry,
        )
        self.certificate_renew_errors = Counter(
            "kubelet_certificate_manager_client_expiration_renew_errors",
            "Failed attempts to renew (or re-join for) the node's certificate.",
            registry=registry,
        )
        self.admission_rejections = Counter(
            "pykube_agent_admission_rejections",
            "Pods this node refused to run (privileged, hostNetwork, hostPath outside the allowed prefixes).",
            registry=registry,
        )
        self.events_dropped = Counter(
            "pykube_agent_events_dropped",
            "Events not delivered to the master (queue full while it was away, or refused).",
            registry=registry,
        )
        node = Gauge("kubelet_node_name", "The node's name (always 1).", ["node"], registry=registry)
        node.labels(node=node_name).set(1)
        registry.register(NodeResourceCollector())

    def observe_runtime(self, operation_type: str, seconds: float, error: bool) -> None:
        """Records one engine operation; DockerRuntime's ``observe`` hook (called from its threads;
        prometheus_client metrics are thread-safe)."""
        self.runtime_operations.labels(operation_type=operation_type).inc()
        self.runtime_duration.labels(operation_type=operation_type).observe(seconds)
        if error:
            self.runtime_errors.labels(operation_type=operation_type).inc()

    def set_container_counts(self, running_pods: int, by_state: dict[str, int]) -> None:
        """Sets the pod and container gauges from one relist; states absent from it read 0."""
        self.running_pods.set(running_pods)
        for state in CONTAINER_STATES:
            self.running_containers.labels(container_state=state).set(by_state.get(state, 0))


class NodeResourceCollector(Collector):
    """The host's load, memory and cpu, read with psutil when Prometheus scrapes."""

    _HELP = {
        "node_load1": "1m load average.",
        "node_load5": "5m load average.",
        "node_load15": "15m load average.",
        "node_memory_MemTotal_bytes": "Memory information field MemTotal_bytes.",
        "node_memory_MemAvailable_bytes": "Memory information field MemAvailable_bytes.",
        "pykube_node_cpu_usage_ratio": "Busy fraction of all cpus since the previous scrape (0..1).",
    }

    def __init__(self) -> None:
        self._cpu = CpuSampler()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        load1, load5, load15 = os.getloadavg()
        memory = psutil.virtual_memory()
        values = {
            "node_load1": load1,
            "node_load5": load5,
            "node_load15": load15,
            "node_memory_MemTotal_bytes": memory.total,
            "node_memory_MemAvailable_bytes": memory.available,
            "pykube_node_cpu_usage_ratio": self._cpu.ratio(),
        }
        for name, value in values.items():
            yield GaugeMetricFamily(name, self._HELP[name], value=value)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # The names without reading the host: register() calls this to check for clashes.
        for name, help_text in self._HELP.items():
            yield GaugeMetricFamily(name, help_text)
