"""The Service registry against a real SQLiteStore: defaults, ClusterIP and NodePort allocation
(collisions, exhaustion, reuse after delete, rebuild after a restart), immutability, type changes,
and the EndpointSlice registry's rules."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ResourceExhausted, ValidationError
from pymaster.api.network import NetworkConfig
from pymaster.registry import Registry
from pymaster.registry.leases import NodeLeases
from pymaster.store.sqlite import SQLiteStore

SMALL = NetworkConfig(service_cidr="10.96.0.0/29", node_port_range="30000-30002")


def service(name: str, *ports: int, type_: str = "", cluster_ip: str = "", node_port: int = 0,
            selector: dict[str, str] | None = None) -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name = name
    svc.spec.type = type_
    svc.spec.cluster_ip = cluster_ip
    svc.spec.selector.update(selector if selector is not None else {"app": name})
    for i, port in enumerate(ports or (80,)):
        svc.spec.ports.add(name=f"p{i}" if len(ports) > 1 else "", port=port,
                           node_port=node_port if i == 0 else 0)
    return svc


async def open_registry(path: Path, network: NetworkConfig) -> tuple[SQLiteStore, Registry]:
    store = SQLiteStore(path / "pykube.db")
    await store.open()
    return store, Registry(store, NodeLeases(40.0), network=network)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store, registry = await open_registry(tmp_path, NetworkConfig())
    yield registry
    await store.close()


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Registry]:
    store, registry = await open_registry(tmp_path, SMALL)
    yield registry
    await store.close()


async def test_defaults_and_a_cluster_ip_from_the_range(registry):
    svc = await registry.services.create(service("web", 80))
    spec = svc.spec
    assert (svc.api_version, svc.kind, svc.metadata.namespace) == ("v1", "Service", "default")
    defaults = (spec.type, spec.session_affinity, spec.internal_traffic_policy)
    assert defaults == ("ClusterIP", "None", "Cluster")
    assert spec.external_traffic_policy == ""  # only NodePort services have one
    assert (list(spec.ip_families), spec.ip_family_policy) == (["IPv4"], "SingleStack")
    port = spec.ports[0]
    assert (port.protocol, port.target_port.int_value, port.node_port) == ("TCP", 80, 0)
    ip = ipaddress.ip_address(spec.cluster_ip)
    assert ip in ipaddress.ip_network("10.96.0.0/12") and str(ip) != "10.96.0.1"
    assert list(spec.cluster_ips) == [spec.cluster_ip]


async def test_node_port_allocated_in_range_and_client_ip_affinity_defaults(registry):
    svc = service("web", 80, type_="NodePort")
    svc.spec.session_affinity = "ClientIP"
    created = await registry.services.create(svc)
    assert 30000 <= created.spec.ports[0].node_port <= 32767
    assert created.spec.external_traffic_policy == "Cluster"
    assert created.spec.session_affinity_config.client_ip.timeout_seconds == 10800


async def test_requested_ip_and_port_are_honoured_and_collisions_refused(registry):
    await registry.services.create(service("a", 80, type_="NodePort", cluster_ip="10.96.0.50",
                                           node_port=30080))
    with pytest.raises(ValidationError) as err:
        await registry.services.create(service("b", 80, cluster_ip="10.96.0.50"))
    assert str(err.value) == ('spec.clusterIPs: Invalid value: "10.96.0.50": failed to allocate IP '
                              "10.96.0.50: provided IP is already allocated")
    with pytest.raises(ValidationError) as err:
        await registry.services.create(service("c", 80, type_="NodePort", node_port=30080))
    assert str(err.value) == ("spec.ports[0].nodePort: Invalid value: 30080: "
                              "provided port is already allocated")
    # The refused creates took nothing: the IP and port stay the first service's only.
    await registry.services.delete("default", "a")
    again = await registry.services.create(service("d", 80, type_="NodePort", cluster_ip="10.96.0.50",
                                                   node_port=30080))
    assert (again.spec.cluster_ip, again.spec.ports[0].node_port) == ("10.96.0.50", 30080)


async def test_exhaustion_and_reuse_after_delete(small):
    # A /29 has 6 hosts; the first (10.96.0.1) is the `kubernetes` service's: 5 dynamic addresses.
    ips = {(await small.services.create(service(f"s{i}"))).spec.cluster_ip for i in range(5)}
    assert len(ips) == 5 and "10.96.0.1" not in ips
    with pytest.raises(ResourceExhausted, match="range is full"):
        await small.services.create(service("full"))
    assert not small.services.allocators.ips.used - {int(ipaddress.ip_address(ip)) for ip in ips}
    freed = small.services.get("default", "s2").spec.cluster_ip
    await small.services.delete("default", "s2")
    assert (await small.services.create(service("next"))).spec.cluster_ip == freed
    # The reserved first host can still be asked for (the master's own service).
    kube = await small.services.create(service("kube", cluster_ip="10.96.0.1"))
    assert kube.spec.cluster_ip == "10.96.0.1"


async def test_node_port_exhaustion(small):
    for i in range(3):
        await small.services.create(service(f"np{i}", type_="NodePort", cluster_ip=f"10.96.0.{i + 2}"))
    with pytest.raises(ResourceExhausted, match="nodePort: range is full"):
        await small.services.create(service("np3", type_="NodePort", cluster_ip="10.96.0.6"))
    # The failed create released the address it took first.
    assert (await small.services.create(service("ok", cluster_ip="10.96.0.6"))).spec.cluster_ip == "10.96.0.6"


async def test_allocations_rebuilt_after_a_restart(tmp_path):
    store, registry = await open_registry(tmp_path, NetworkConfig())
    created = await registry.services.create(service("web", 80, type_="NodePort"))
    await store.close()
    store, registry = await open_registry(tmp_path, NetworkConfig())
    try:
        with pytest.raises(ValidationError, match="provided IP is already allocated"):
            await registry.services.create(service("b", cluster_ip=created.spec.cluster_ip))
        with pytest.raises(ValidationError, match="provided port is already allocated"):
            taken = created.spec.ports[0].node_port
            await registry.services.create(service("c", type_="NodePort", node_port=taken))
    finally:
        await store.close()


async def test_apply_keeps_allocations_and_cluster_ip_is_immutable(registry):
    created, action = await registry.services.apply(service("web", 80, type_="NodePort"))
    assert action == "created"
    again, action = await registry.services.apply(service("web", 80, type_="NodePort"))
    assert action == "unchanged"
    assert again.spec.ports[0].node_port == created.spec.ports[0].node_port
    assert again.spec.cluster_ip == created.spec.cluster_ip
    with pytest.raises(ValidationError) as err:
        await registry.services.apply(service("web", 80, type_="NodePort", cluster_ip="10.96.0.77"))
    assert str(err.value) == 'spec.clusterIP: Invalid value: "10.96.0.77": field is immutable'


async def test_type_change_frees_and_allocates_node_ports(registry):
    created = await registry.services.create(service("web", 80, type_="NodePort", node_port=30123))
    as_cluster_ip, _ = await registry.services.apply(service("web", 80))
    assert as_cluster_ip.spec.ports[0].node_port == 0 and as_cluster_ip.spec.external_traffic_policy == ""
    assert as_cluster_ip.spec.cluster_ip == created.spec.cluster_ip
    other = await registry.services.create(service("other", 80, type_="NodePort", node_port=30123))
    assert other.spec.ports[0].node_port == 30123  # freed by the type change
    back, _ = await registry.services.apply(service("web", 80, type_="NodePort"))
    assert 30000 <= back.spec.ports[0].node_port <= 32767 and back.spec.ports[0].node_port != 30123


async def test_headless_service_has_no_cluster_ip(registry):
    svc = await registry.services.create(service("db", 5432, cluster_ip="None"))
    assert svc.spec.cluster_ip == "None" and list(svc.spec.cluster_ips) == ["None"]
    kept, _ = await registry.services.apply(service("db", 5432))  # unset: kept, as kubectl apply
    assert kept.spec.cluster_ip == "None"
    kept, action = await registry.services.apply(service("db", 5432))
    assert (kept.spec.cluster_ip, action) == ("None", "unchanged")
    with pytest.raises(ValidationError, match="field is immutable"):
        await registry.services.apply(service("db", 5432, cluster_ip="10.96.0.9"))


def endpoint_slice(name: str, *addresses: str, address_type: str = "IPv4") -> objects_pb2.EndpointSlice:
    es = objects_pb2.EndpointSlice(address_type=address_type)
    es.metadata.name = name
    es.metadata.labels["kubernetes.io/service-name"] = "ext"
    for address in addresses:
        es.endpoints.add(addresses=[address])
    es.ports.add(name="http", protocol="TCP", port=8080)
    return es


async def test_endpoint_slices_of_users(registry):
    created = await registry.endpoint_slices.create(endpoint_slice("ext-1", "10.1.2.3"))
    assert (created.api_version, created.kind) == ("discovery.k8s.io/v1", "EndpointSlice")
    updated, action = await registry.endpoint_slices.apply(endpoint_slice("ext-1", "10.1.2.3", "10.1.2.4"))
    assert action == "configured" and len(updated.endpoints) == 2
    with pytest.raises(ValidationError) as err:
        await registry.endpoint_slices.apply(endpoint_slice("ext-1", "10.1.2.3", address_type="IPv6"))
    assert str(err.value).startswith('addressType: Unsupported value: "IPv6": supported values: "IPv4"')
    with pytest.raises(ValidationError) as err:
        await registry.endpoint_slices.create(endpoint_slice("bad", "10.1.2"))
    assert str(err.value) == ('endpoints[0].addresses[0]: Invalid value: "10.1.2": '
                              "must be a valid IPv4 address")
    too_many = endpoint_slice("big", *(f"10.1.0.{i}" for i in range(1, 102)))
    with pytest.raises(ValidationError, match=r"^endpoints: Too many: 101: must have at most 100 items"):
        await registry.endpoint_slices.create(too_many)
    await registry.endpoint_slices.delete("default", "ext-1")
