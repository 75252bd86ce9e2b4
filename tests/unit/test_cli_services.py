"""pyctl for Services and EndpointSlices: the get columns, describe svc, expose's Service, and the
master's own `kubernetes` Service (the real master in-process)."""

from __future__ import annotations

import argparse

import pytest

from pymaster.api import objects_pb2
from pymaster.api.workloads import int_or_string
from pymaster.cli import expose
from pymaster.cli import service_printers as sp
from pymaster.cli.context import CommandError


def node_port_service() -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.type, svc.spec.cluster_ip = "NodePort", "10.96.0.20"
    svc.spec.cluster_ips.append("10.96.0.20")
    svc.spec.selector["app"] = "web"
    svc.spec.ip_families.append("IPv4")
    svc.spec.ip_family_policy = "SingleStack"
    svc.spec.session_affinity, svc.spec.external_traffic_policy = "None", "Cluster"
    svc.spec.internal_traffic_policy = "Cluster"
    port = svc.spec.ports.add(name="http", protocol="TCP", port=80, node_port=30080)
    port.target_port.CopyFrom(int_or_string("web"))
    svc.spec.ports.add(name="dns", protocol="UDP", port=53).target_port.CopyFrom(int_or_string(5353))
    return svc


def test_service_columns():
    svc = node_port_service()
    assert sp.service_header(wide=True) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE",
                                            "SELECTOR"]
    row = sp.service_row(svc, 0.0, wide=True)
    assert row[:5] == ["web", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53/UDP"]
    assert row[6] == "app=web"


def test_endpoint_slice_columns():
    es = objects_pb2.EndpointSlice(address_type="IPv4")
    es.metadata.name = "web-abcde"
    for i in range(5):
        es.endpoints.add(addresses=[f"10.244.0.{i + 1}"])
    es.ports.add(name="http", port=8080)
    assert sp.endpoint_slice_header() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    row = sp.endpoint_slice_row(es, 0.0)
    assert row[:4] == ["web-abcde", "IPv4", "8080", "10.244.0.1,10.244.0.2,10.244.0.3 + 2 more..."]
    assert sp.endpoint_slice_row(objects_pb2.EndpointSlice(address_type="IPv4"), 0.0)[2:4] == ["<unset>",
                                                                                               "<none>"]


def test_describe_service_lists_ready_endpoints_per_port():
    es = objects_pb2.EndpointSlice(address_type="IPv4")
    ready = es.endpoints.add(addresses=["10.244.0.5"])
    ready.conditions.ready = True
    es.endpoints.add(addresses=["10.244.0.6"]).conditions.ready = False
    es.ports.add(name="http", port=8080)
    text = sp.describe_service(node_port_service(), [es], 0.0, events=[])
    lines = [line.rstrip() for line in text.splitlines()]
    assert "Selector:                 app=web" in lines
    assert "Type:                     NodePort" in lines
    assert "IP:                       10.96.0.20" in lines
    assert "Port:                     http  80/TCP" in lines
    assert "TargetPort:               web/TCP" in lines
    assert "NodePort:                 http  30080/TCP" in lines
    assert "Endpoints:                10.244.0.5:8080" in lines
    assert "External Traffic Policy:  Cluster" in lines
    assert lines[-1] == "Events:                   <none>"


def args(**values) -> argparse.Namespace:
    base = {"name": "", "port": 0, "target_port": "", "type": "", "protocol": "", "selector": ""}
    return argparse.Namespace(**{**base, **values})


def test_expose_a_deployment_takes_its_match_labels():
    deployment = objects_pb2.Deployment(kind="Deployment")
    deployment.metadata.name = "web"
    deployment.metadata.labels["team"] = "a"
    deployment.spec.selector.match_labels["app"] = "web"
    svc = expose.build_service(deployment, args(port=80, target_port="8080", type="NodePort"), "default")
    assert (svc.metadata.name, dict(svc.metadata.labels), dict(svc.spec.selector)) == ("web", {"team": "a"},
                                                                                      {"app": "web"})
    port = svc.spec.ports[0]
    assert (svc.spec.type, port.port, port.target_port.int_value) == ("NodePort", 80, 8080)
    deployment.spec.selector.match_expressions.add(key="tier", operator="Exists")
    with pytest.raises(CommandError, match="couldn't convert expressions"):
        expose.build_service(deployment, args(port=80), "default")


def test_expose_a_pod_uses_its_labels_and_container_ports():
    pod = objects_pb2.Pod(kind="Pod")
    pod.metadata.name = "web-1"
    pod.metadata.labels["app"] = "web"
    container = pod.spec.containers.add(name="c")
    container.ports.add(container_port=8080, protocol="TCP")
    container.ports.add(container_port=9090, protocol="TCP")
    svc = expose.build_service(pod, args(name="front", protocol="UDP"), "default")
    assert svc.metadata.name == "front" and dict(svc.spec.selector) == {"app": "web"}
    assert [(p.name, p.port, p.protocol) for p in svc.spec.ports] == [("port-1", 8080, "UDP"),
                                                                       ("port-2", 9090, "UDP")]
    del pod.spec.containers[0].ports[:]
    with pytest.raises(CommandError, match="couldn't find port"):
        expose.build_service(pod, args(), "default")


async def test_the_master_keeps_the_kubernetes_service(master, resources):
    svc = await resources.get("services", "kubernetes", "default")
    port = svc.spec.ports[0]
    assert (svc.spec.cluster_ip, port.name, port.port) == ("10.96.0.1", "https", 443)
    assert svc.spec.ports[0].target_port.int_value == master.port and not svc.spec.selector
    es = await resources.get("endpointslices", "kubernetes", "default")
    assert [list(e.addresses) for e in es.endpoints] == [["127.0.0.1"]]
    assert es.ports[0].port == master.port
    # The master's own objects: no kubectl last-applied record on them.
    assert not svc.metadata.annotations and not es.metadata.annotations
