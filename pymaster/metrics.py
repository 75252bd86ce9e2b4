"""Every metric of the master, in one place, each registered on the ``registry`` it is given.

- gRPC server metrics with go-grpc-prometheus' names, recorded by the interceptor:
  ``grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}`` and
  ``grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}``; grpc_code uses Go's
  spelling ("OK", "NotFound", "Canceled") so existing dashboards work unchanged.
- Scheduler (kube-scheduler's names): ``scheduler_schedule_attempts_total{result}``,
  ``scheduler_pending_pods{queue="active|backoff|unschedulable|gated"}``,
  ``scheduler_scheduling_attempt_duration_seconds{result}`` (one attempt: filters and scores, not
  the bind), ``scheduler_pod_scheduling_attempts`` (attempts until a pod was scheduled) and
  ``scheduler_binding_batch_size`` (binds written per store transaction).
- Security: ``pykube_authentication_failed_total{identity_kind,method}`` (UNAUTHENTICATED: an
  unknown certificate subject, a revoked node certificate) and
  ``pykube_authorization_denied_total{identity_kind,method}`` (PERMISSION_DENIED by the role
  table); method is "Resources.List"-style. Wrong join tokens show as
  ``grpc_server_handled_total{grpc_method="Join",grpc_code="Unauthenticated"}``.
- Leader election (``pymaster --leader-elect``): ``leader_election_master_status{name}`` (client-go's
  metric; name is the lease, "pymaster"; 1 while this master leads) and
  ``pymaster_leader{identity}`` (1 while this master, by its election identity, runs the scheduler
  and the controllers; a master without --leader-elect always does).
- Cluster state (kube-state-metrics style) is not here: ``pymaster.state_metrics`` keeps and
  renders it beside the registry's output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCHEDULE_RESULTS = ("scheduled", "unschedulable", "error")
PENDING_QUEUES = ("active", "backoff", "unschedulable", "gated")

# grpc.StatusCode names in Go's spelling (codes.Code.String()), as go-grpc-prometheus reports them.
_GO_CODE_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def grpc_code_name(code: grpc.StatusCode) -> str:
    """Go's name of a status code: NOT_FOUND -> "NotFound"."""
    return _GO_CODE_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


class MasterMetrics:
    """The master's metric objects, registered on one registry."""

    def __init__(self, registry: CollectorRegistry):
        """
        Args:
            registry: Where every metric is registered.
        """
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            ["grpc_type", "grpc_service", "grpc_method"],
            registry=registry,
        )
        self.schedule_attempts = Counter(
            "scheduler_schedule_attempts_total",
            "Number of attempts to schedule pods, by the result.",
            ["result"],
            registry=registry,
        )
        self.pending_pods = Gauge(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type.",
            ["queue"],
            registry=registry,
        )
        self.scheduling_attempt_duration = Histogram(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding).",
            ["result"],
            buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024),
            registry=registry,
        )
        self.pod_scheduling_attempts = Histogram(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            buckets=(1, 2, 4, 8, 16),
            registry=registry,
        )
        self.binding_batch_size = Histogram(
            "scheduler_binding_batch_size",
            "Number of bindings written to the store in one transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.authentication_failed = Counter(
            "pykube_authentication_failed_total",
            "Calls refused because the client certificate names no identity or a revoked one.",
            ["identity_kind", "method"],
            registry=registry,
        )
        self.authorization_denied = Counter(
            "pykube_authorization_denied_total",
            "Calls of an authenticated identity refused by the per-RPC role table.",
            ["identity_kind", "method"],
            registry=registry,
        )
        self.leader_election_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
            "1 indicates master. 'name' is the string used to identify the lease.",
            ["name"],
            registry=registry,
        )
        self.leader = Gauge(
            "pymaster_leader",
            "1 while this master runs the scheduler and the controllers, by its election identity.",
            ["identity"],
            registry=registry,
        )
        for result in SCHEDULE_RESULTS:
            self.schedule_attempts.labels(result=result)
        # Labelled children of the per-call metrics, by labels: labels() costs more than the
        # increment itself, and every call of the API and the lease lane ends here.
        self._rpc_children: dict[tuple, tuple] = {}
        self.report_pending(None)

    def observe_rpc(
        self, grpc_type: str, service: str, method: str, code: grpc.StatusCode, seconds: float
    ) -> None:
        """Records one finished RPC (the lease lane's too: they come with its batches)."""
        key = (grpc_type, service, method, code)
        children = self._rpc_children.get(key)
        if children is None:
            children = self._rpc_children[key] = (
                self.grpc_handled.labels(grpc_type, service, method, grpc_code_name(code)),
                self.grpc_handling_seconds.labels(grpc_type, service, method),
            )
        handled, handling_seconds = children
        handled.inc()
        handling_seconds.observe(seconds)

    def observe_refused(self, code: grpc.StatusCode, identity_kind: str, method: str) -> None:
        """Records a call refused by authentication (UNAUTHENTICATED) or authorization."""
        unauthenticated = code == grpc.StatusCode.UNAUTHENTICATED
        counter = self.authentication_failed if unauthenticated else self.authorization_denied
        counter.labels(identity_kind, method).inc()

    def set_leader(self, lease: str, identity: str, leading: bool) -> None:
        """Records whether this master (``identity``) holds ``lease`` now."""
        self.leader_election_status.labels(name=lease).set(1 if leading else 0)
        self.leader.labels(identity=identity).set(1 if leading else 0)

    def report_pending(self, count: Callable[[str], int] | None) -> None:
        """Where the scheduler queue sizes are read at each scrape (queue name -> pods; None:
        no scheduler runs here, all 0): read when asked rather than set on each of the queue's
        changes, several per pod."""
        for queue in PENDING_QUEUES:
            child = self.pending_pods.labels(queue=queue)
            if count is None:
                child.set_function(lambda: 0)
            else:
                child.set_function(functools.partial(count, queue))
