"""The EndpointSlice controller against a real SQLiteStore and registry (no agent: the tests set
the pods' IPs and Ready conditions in the store, as an agent's status would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.conditions import timestamp
from pymaster.api.workloads import int_or_string
from pymaster.controllers.endpointslice import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
    plan_slices,
)
from pymaster.controllers.informer import InformerFactory
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

DEADLINE = 5.0


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(tmp_path / "pykube.db")
    await store.open()
    yield Registry(store, NodeLeases(40.0))
    await store.close()


@pytest.fixture
async def controller(registry: Registry) -> AsyncIterator[EndpointSliceController]:
    factory = InformerFactory(registry.store)
    esc = EndpointSliceController(registry, factory)
    factory.start()
    await esc.start()
    yield esc
    await esc.stop()
    await factory.stop()


def service(name: str, target: int | str = 8080, app: str = "web") -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name = name
    svc.spec.selector["app"] = app
    svc.spec.ports.add(name="http", port=80).target_port.CopyFrom(int_or_string(target))
    return svc


async def add_pod(registry: Registry, name: str, ip: str, ready: bool = True, app: str = "web",
                  port_name: str = "http", container_port: int = 8080) -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.labels["app"] = app
    container = pod.spec.containers.add(name="c", image="pykube/busybox:1.35")
    container.ports.add(name=port_name, container_port=container_port)
    await registry.pods.create(pod)
    return await set_status(registry, name, ip, ready)


async def set_status(registry: Registry, name: str, ip: str, ready: bool) -> objects_pb2.Pod:
    def change(current: objects_pb2.Pod) -> objects_pb2.Pod:
        current.spec.node_name = "node-a"
        current.status.phase = "Running"
        current.status.pod_ip = ip
        del current.status.conditions[:]
        current.status.conditions.add(type="Ready", status="True" if ready else "False",
                                      last_transition_time=timestamp(1.0))
        return current

    return await registry.store.mutate("pods", "default", name, change)


def slices(registry: Registry, service_name: str) -> list[objects_pb2.EndpointSlice]:
    items, _ = registry.store.list("endpointslices", "default")
    return [s for s in items if s.metadata.labels.get(SERVICE_NAME_LABEL) == service_name]


def endpoints(registry: Registry, service_name: str) -> dict[str, objects_pb2.Endpoint]:
    return {e.target_ref.name: e for s in slices(registry, service_name) for e in s.endpoints}


def ready_ips(registry: Registry, service_name: str) -> set[str]:
    return {e.addresses[0] for e in endpoints(registry, service_name).values() if e.conditions.ready}


async def test_ready_unready_and_terminating_pods(registry, controller):
    svc = await registry.services.create(service("web"))
    await add_pod(registry, "web-1", "10.244.0.11")
    await add_pod(registry, "web-2", "10.244.0.12", ready=False)
    await add_pod(registry, "other", "10.244.0.13", app="db")
    await wait_until(lambda: set(endpoints(registry, "web")) == {"web-1", "web-2"})
    (es,) = slices(registry, "web")
    assert es.metadata.name.startswith("web-") and len(es.metadata.name) == len("web-") + 5
    assert es.metadata.labels[MANAGED_BY_LABEL] == MANAGED_BY and es.address_type == "IPv4"
    ref = es.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("Service", "web", svc.metadata.uid, True)
    assert [(p.name, p.protocol, p.port) for p in es.ports] == [("http", "TCP", 8080)]
    one, two = endpoints(registry, "web")["web-1"], endpoints(registry, "web")["web-2"]
    assert (one.conditions.ready, one.conditions.serving, one.conditions.terminating) == (True, True, False)
    assert (two.conditions.ready, two.conditions.serving) == (False, False)
    assert (one.node_name, one.target_ref.kind, one.target_ref.uid) == ("node-a", "Pod",
                                                                        registry.pods.get("default", "web-1")
                                                                        .metadata.uid)
    # Turning unready leaves the ready set; Ready again comes back.
    await set_status(registry, "web-1", "10.244.0.11", ready=False)
    await wait_until(lambda: ready_ips(registry, "web") == set())
    await set_status(registry, "web-2", "10.244.0.12", ready=True)
    await wait_until(lambda: ready_ips(registry, "web") == {"10.244.0.12"})
    # Terminating (marked as the pod registry marks a graceful delete): listed, serving, not ready.
    def mark(current: objects_pb2.Pod) -> objects_pb2.Pod:
        current.metadata.deletion_timestamp.CopyFrom(timestamp(2.0))
        return current

    await registry.store.mutate("pods", "default", "web-2", mark)
    await wait_until(lambda: endpoints(registry, "web")["web-2"].conditions.terminating)
    two = endpoints(registry, "web")["web-2"]
    assert (two.conditions.ready, two.conditions.serving) == (False, True)
    assert len(slices(registry, "web")) == 1  # one slice updated in place, never a second


async def test_named_target_port_resolved_per_pod(registry, controller):
    await registry.services.create(service("api", target="http"))
    await add_pod(registry, "api-1", "10.244.0.21", app="web", container_port=8080)
    await add_pod(registry, "api-2", "10.244.0.22", app="web", container_port=9090)
    await add_pod(registry, "api-3", "10.244.0.23", app="web", port_name="metrics")
    await wait_until(lambda: len(endpoints(registry, "api")) == 3)
    by_port = {tuple(p.port for p in s.ports): sorted(e.target_ref.name for e in s.endpoints)
               for s in slices(registry, "api")}
    assert by_port == {(8080,): ["api-1"], (9090,): ["api-2"], (): ["api-3"]}


async def test_selectorless_services_are_left_alone_and_deleted_services_cleaned(registry, controller):
    manual = objects_pb2.EndpointSlice(address_type="IPv4")
    manual.metadata.name = "ext-1"
    manual.metadata.labels[SERVICE_NAME_LABEL] = "ext"
    manual.endpoints.add(addresses=["10.1.2.3"])
    await registry.endpoint_slices.create(manual)
    ext = service("ext")
    ext.spec.ClearField("selector")
    await registry.services.create(ext)
    await registry.services.create(service("web"))
    await add_pod(registry, "web-1", "10.244.0.11")
    await wait_until(lambda: set(endpoints(registry, "web")) == {"web-1"})
    assert [s.metadata.name for s in slices(registry, "ext")] == ["ext-1"]
    await registry.services.delete("default", "web")
    await wait_until(lambda: slices(registry, "web") == [])
    assert [s.metadata.name for s in slices(registry, "ext")] == ["ext-1"]


async def test_a_service_without_pods_gets_one_placeholder_slice(registry, controller):
    await registry.services.create(service("empty", app="nobody"))
    await wait_until(lambda: len(slices(registry, "empty")) == 1)
    (es,) = slices(registry, "empty")
    assert list(es.endpoints) == [] and list(es.ports) == []


def fake_pod(i: int) -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = f"p{i:03d}", "default", f"uid-{i}"
    pod.metadata.labels["app"] = "web"
    pod.status.pod_ip = f"10.244.{i // 250}.{i % 250 + 1}"
    pod.status.phase = "Running"
    pod.status.conditions.add(type="Ready", status="True")
    return pod


def test_more_than_100_endpoints_split_and_stay_put():
    svc = service("web")
    svc.metadata.namespace, svc.metadata.uid = "default", "svc-uid"
    plan = plan_slices(svc, [fake_pod(i) for i in range(250)], [])
    assert [len(s.endpoints) for s in plan.create] == [100, 100, 50] and not plan.update and not plan.delete
    existing = []
    for i, es in enumerate(plan.create):
        es.metadata.name, es.metadata.resource_version = f"web-{i}", "1"
        existing.append(es)
    # One pod gone from the first slice, one new pod: only the first slice changes (the new pod
    # takes the free room), nothing is created or deleted.
    pods = [fake_pod(i) for i in range(1, 251)]
    plan = plan_slices(svc, pods, existing)
    assert not plan.create and not plan.delete
    assert [s.metadata.name for s in plan.update] == ["web-0"]
    assert "p250" in {e.target_ref.name for e in plan.update[0].endpoints}
    assert plan_slices(svc, [fake_pod(i) for i in range(250)], existing).update == []
