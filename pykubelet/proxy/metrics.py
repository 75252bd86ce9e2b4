"""The node proxy's Prometheus metrics, with kube-proxy's names, on the agent's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# kube-proxy's sync buckets: 1 ms doubling up to ~16 s.
_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))


class ProxyMetrics:
    """kube-proxy's sync metrics.

    Args:
        registry: the agent's registry (a fresh one per test keeps tests apart).
    """

    def __init__(self, registry: CollectorRegistry):
        self.sync_duration = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "Seconds of one sync of the proxy rules.",
            buckets=_SYNC_BUCKETS, registry=registry,
        )
        self.full_sync_duration = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "Seconds of one full sync (every chain rewritten).", buckets=_SYNC_BUCKETS, registry=registry,
        )
        self.partial_sync_duration = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "Seconds of one incremental sync (only the changed chains).", buckets=_SYNC_BUCKETS,
            registry=registry,
        )
        self.last_sync_timestamp = Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful sync of the proxy rules.", registry=registry,
        )
        self.iptables_total = Gauge(
            "kubeproxy_sync_proxy_rules_iptables_total",
            "Rules the proxy owns, by table.", ["table"], registry=registry,
        )
        self.restore_failures = Counter(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures",
            "iptables-restore transactions that failed.", registry=registry,
        )
