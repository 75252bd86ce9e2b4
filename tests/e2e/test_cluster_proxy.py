"""The node proxy end to end: a real pymaster and two real pykubelets on this host, the first
proxying (``--proxy-mode iptables``, the default), the second with ``--proxy-mode none``; the
backend is a busybox httpd container on Docker's default bridge, named in a manual EndpointSlice
of a selector-less NodePort Service.

- from the host, the ClusterIP and the NodePort on 127.0.0.1 reach the backend; with the slice's
  endpoint gone, the ClusterIP is rejected (connection refused, not a timeout);
- the agent stopping leaves the rules (the data path keeps working), the agent starting again
  resyncs them; ``pykubelet --cleanup`` removes every KUBE-* chain and jump and exits 0.

The module ends with ``--cleanup`` so the host keeps no rule of it.
"""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator

import docker
import pytest

from pymaster.api import objects_pb2

from .harness import (
    BUSYBOX,
    Cluster,
    iptables_save,
    metric_samples,
    running_cluster,
    service_proxied,
    unique,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("proxy"),
                         agent_extra_by_prefix={"node-b": ["--proxy-mode", "none"]}) as c:
        yield c
        c.a.stop()
        result = c.a.cleanup()
        assert result.returncode == 0, result.stderr


def backend(node_name: str, text: str) -> str:
    """A busybox httpd answering ``text`` on port 80, labelled with the node (the harness removes
    it); returns its IP on Docker's default bridge."""
    client = docker.from_env()
    try:
        script = f"mkdir -p /www && echo {text} > /www/index.html && httpd -f -p 80 -h /www"
        container = client.containers.run(
            BUSYBOX, ["sh", "-c", script],
            detach=True, labels={"pykube.node.name": node_name}, name=unique("proxy-backend"),
        )
        container.reload()
        return container.attrs["NetworkSettings"]["IPAddress"]
    finally:
        client.close()


def service(name: str) -> objects_pb2.Service:
    svc = objects_pb2.Service(api_version="v1", kind="Service")
    svc.metadata.name, svc.metadata.namespace = name, "default"
    svc.spec.type = "NodePort"
    svc.spec.ports.add(name="http", protocol="TCP", port=80).target_port.int_value = 80
    return svc


def endpoint_slice(service_name: str, ip: str) -> objects_pb2.EndpointSlice:
    eps = objects_pb2.EndpointSlice(api_version="discovery.k8s.io/v1", kind="EndpointSlice",
                                    address_type="IPv4")
    eps.metadata.name, eps.metadata.namespace = f"{service_name}-manual", "default"
    eps.metadata.labels["kubernetes.io/service-name"] = service_name
    eps.ports.add(name="http", protocol="TCP", port=80)
    eps.endpoints.add(addresses=[ip]).conditions.ready = True
    return eps


def get(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as response:
        return response.read().decode().strip()


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def kube_lines() -> list[str]:
    """The proxy's lines (KUBE-* chains; the pod network's PYKUBE-* ones are not the proxy's)."""
    return [line for table in ("nat", "filter") for line in iptables_save(table).splitlines()
            if re.search(r"(?<![A-Z])KUBE-", line)]


async def test_cluster_ip_and_node_port_reach_the_backend(cluster: Cluster):
    name = unique("web")
    text = unique("hello")
    ip = backend(cluster.a.node_name, text)
    async with cluster.client() as client:
        svc = await client.create(service(name))
        cluster_ip, node_port = svc.spec.cluster_ip, svc.spec.ports[0].node_port
        await client.create(endpoint_slice(name, ip))
        await wait_for(lambda: service_proxied(cluster_ip), 20, "the ClusterIP's rule")
        assert get(cluster_ip, 80) == text
        assert await wait_for(lambda: get("127.0.0.1", node_port) == text, 10, "the NodePort to answer")
        samples = metric_samples(cluster.a.metrics_port)
        assert samples[("kubeproxy_sync_proxy_rules_iptables_total", (("table", "nat"),))] > 0
        assert ("kubeproxy_sync_proxy_rules_last_timestamp_seconds", ()) not in metric_samples(
            cluster.b.metrics_port)
        # No endpoint left: REJECT (refused at once), as kube-proxy does.
        await client.delete("endpointslices", f"{name}-manual", "default")
        await wait_for(lambda: service_proxied(cluster_ip, "REJECT"), 20, "the ClusterIP's REJECT rule")
        assert refused(cluster_ip, 80)
        await client.delete("services", name, "default")


async def test_rules_survive_an_agent_restart_and_cleanup_removes_them(cluster: Cluster):
    name = unique("web")
    first, second = unique("first"), unique("second")
    ip1, ip2 = backend(cluster.a.node_name, first), backend(cluster.a.node_name, second)
    async with cluster.client() as client:
        svc = await client.create(service(name))
        cluster_ip = svc.spec.cluster_ip
        await client.create(endpoint_slice(name, ip1))
        await wait_for(lambda: service_proxied(cluster_ip), 20, "the ClusterIP's rule")
        assert get(cluster_ip, 80) == first
        cluster.a.stop()
        assert get(cluster_ip, 80) == first  # the rules stay while no agent runs
        cluster.a.start()
        slice_ = await client.get("endpointslices", f"{name}-manual", "default")
        slice_.endpoints[0].addresses[0] = ip2
        await client.update(slice_)
        assert await wait_for(lambda: get(cluster_ip, 80) == second, 30, "the restarted agent to resync")
        cluster.a.stop()
        result = cluster.a.cleanup()
        assert result.returncode == 0, result.stderr
        assert kube_lines() == []
        cluster.a.start()
        await wait_for(lambda: service_proxied(cluster_ip), 30, "the rules to come back")
        assert get(cluster_ip, 80) == second
        await client.delete("services", name, "default")
        await client.delete("endpointslices", f"{name}-manual", "default")
