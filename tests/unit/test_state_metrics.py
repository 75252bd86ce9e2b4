"""The cluster-state series (pymaster.state_metrics): pod phases and node conditions followed from
a real SQLite store, and the text they render, served beside a registry's families in both
formats a scraper may ask for (Prometheus text and OpenMetrics), each parsed back by
prometheus_client's own parsers."""

from __future__ import annotations

import urllib.request

from master_fixtures import eventually
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from pymaster.api import objects_pb2
from pymaster.api.metrics_http import MetricsServer
from pymaster.state_metrics import ClusterStateMetrics, StateSnapshot, render
from pymaster.store.sqlite import SQLiteStore


def pod(name: str, phase: str) -> objects_pb2.Pod:
    p = objects_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.namespace, p.metadata.name, p.metadata.uid = "default", name, f"uid-{name}"
    p.spec.containers.add(name="app", image="busybox:1.35")
    p.status.phase = phase
    return p


def node(name: str, ready: str) -> objects_pb2.Node:
    n = objects_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = n.metadata.uid = name
    n.status.conditions.add(type="Ready", status=ready)
    return n


def samples(text: str, parse=parse_text) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parse(text) for s in f.samples}


def phase_of(metrics: dict, name: str) -> list[str]:
    return [dict(labels)["phase"] for (family, labels), value in metrics.items()
            if family == "kube_pod_status_phase" and dict(labels)["pod"] == name and value == 1.0]


READY_N1 = ("kube_node_status_condition", (("condition", "Ready"), ("node", "n1"), ("status", "true")))


async def rendered_when(state: ClusterStateMetrics, predicate) -> dict:
    """The rendered samples once ``predicate`` holds on them (the watches apply writes soon)."""

    async def rendered() -> dict:
        return samples(render(state.snapshot()))

    return await eventually(rendered, predicate)


def failed(p: objects_pb2.Pod) -> objects_pb2.Pod:
    p.status.phase = "Failed"
    return p


async def test_phases_and_conditions_follow_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    state = ClusterStateMetrics(store)
    try:
        await store.create("pods", pod("before", "Running"))  # listed at the start
        state.start()
        await store.create("pods", pod("web", "Pending"))
        await store.create("nodes", node("n1", "True"))
        metrics = await rendered_when(state, lambda m: phase_of(m, "web") and READY_N1 in m)
        assert (phase_of(metrics, "before"), phase_of(metrics, "web")) == (["Running"], ["Pending"])
        assert sum(1 for family, labels in metrics if family == "kube_pod_status_phase") == 10  # 5 a pod
        assert metrics[("pykube_store_resource_version", ())] == store.current_rv

        await store.mutate("pods", "default", "web", failed)
        await store.delete("pods", "default", "before")
        metrics = await rendered_when(state, lambda m: not phase_of(m, "before"))
        assert phase_of(metrics, "web") == ["Failed"]
    finally:
        await state.stop()
        await store.close()


def test_served_after_the_registry_in_text_and_openmetrics():
    registry = CollectorRegistry()
    Counter("calls_total", "Calls.", registry=registry).inc()
    snapshot = StateSnapshot([(("default", "web"), "Running")], [("n1", (('Odd"Type', "false"),))], 7)
    server = MetricsServer("127.0.0.1:0", registry, extra=lambda: render(snapshot)).start()
    try:
        def get(accept: str) -> str:
            url = f"http://127.0.0.1:{server.port}/metrics"
            request = urllib.request.Request(url, headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read().decode()

        for text, parse in ((get("text/plain"), parse_text),
                            (get("application/openmetrics-text; version=1.0.0"), parse_openmetrics)):
            metrics = samples(text, parse)
            assert metrics[("kube_pod_status_phase", (("namespace", "default"), ("phase", "Running"),
                                                      ("pod", "web")))] == 1.0
            assert metrics[("kube_node_status_condition", (("condition", 'Odd"Type'), ("node", "n1"),
                                                           ("status", "false")))] == 1.0
            assert metrics[("pykube_store_resource_version", ())] == 7.0
            assert any(name.startswith("calls_total") for name, _ in metrics)
    finally:
        server.close()
