"""Service environment variables (pykubelet.service_env), table-tested against the kubelet's
``envvars.FromServices`` output, and their place in a container's environment (pykubelet.env):
the pod's own variables win, ``$(VAR)`` sees them, ``enableServiceLinks: false`` keeps only the
master's, and an agent that has not read Services yet refuses to start the container."""

from __future__ import annotations

import asyncio

import pytest

from pykubelet.env import EnvError, make_environment, resolve_container
from pykubelet.service_env import ServicesNotSynced, env_name, service_env, services_from
from pymaster.api import objects_pb2
from pymaster.api.defaults import default_pod
from pymaster.api.manifest import load_pods


def svc(name: str, ip: str, *ports: tuple[str, int, str], namespace: str = "default") -> objects_pb2.Service:
    """A Service with ``ports`` given as (name, port, protocol)."""
    service = objects_pb2.Service()
    service.metadata.name = name
    service.metadata.namespace = namespace
    service.spec.cluster_ip = ip
    for port_name, port, protocol in ports:
        service.spec.ports.add(name=port_name, port=port, protocol=protocol)
    return service


MASTER = svc("kubernetes", "10.96.0.1", ("https", 443, "TCP"))
MASTER_ENV = [
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_PORT", "443"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
]


@pytest.mark.parametrize(("services", "links", "master", "expected"), [
    pytest.param([], True, None, [], id="nothing"),
    pytest.param([], False, MASTER, MASTER_ENV, id="master-even-without-links"),
    pytest.param([svc("web", "10.96.0.10", ("", 80, ""))], True, None, [
        ("WEB_SERVICE_HOST", "10.96.0.10"),
        ("WEB_SERVICE_PORT", "80"),
        ("WEB_PORT", "tcp://10.96.0.10:80"),
        ("WEB_PORT_80_TCP", "tcp://10.96.0.10:80"),
        ("WEB_PORT_80_TCP_PROTO", "tcp"),
        ("WEB_PORT_80_TCP_PORT", "80"),
        ("WEB_PORT_80_TCP_ADDR", "10.96.0.10"),
    ], id="one-unnamed-port-protocol-defaults-to-tcp"),
    pytest.param([svc("my-dns", "10.96.0.53", ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))], True, None, [
        ("MY_DNS_SERVICE_HOST", "10.96.0.53"),
        ("MY_DNS_SERVICE_PORT", "53"),
        ("MY_DNS_SERVICE_PORT_DNS", "53"),
        ("MY_DNS_SERVICE_PORT_DNS_TCP", "53"),
        ("MY_DNS_PORT", "udp://10.96.0.53:53"),
        ("MY_DNS_PORT_53_UDP", "udp://10.96.0.53:53"),
        ("MY_DNS_PORT_53_UDP_PROTO", "udp"),
        ("MY_DNS_PORT_53_UDP_PORT", "53"),
        ("MY_DNS_PORT_53_UDP_ADDR", "10.96.0.53"),
        ("MY_DNS_PORT_53_TCP", "tcp://10.96.0.53:53"),
        ("MY_DNS_PORT_53_TCP_PROTO", "tcp"),
        ("MY_DNS_PORT_53_TCP_PORT", "53"),
        ("MY_DNS_PORT_53_TCP_ADDR", "10.96.0.53"),
    ], id="named-ports-dashes-and-udp-first"),
    pytest.param([svc("web", "10.96.0.10", ("", 80, ""))], False, None, [], id="links-off"),
    pytest.param([svc("headless", "None", ("", 80, "")), svc("pending", "", ("", 80, ""))], True, None, [],
                 id="headless-and-ipless-skipped"),
    pytest.param([svc("kubernetes", "10.96.5.5", ("", 8080, ""), namespace="team")], True, MASTER, [
        ("KUBERNETES_SERVICE_HOST", "10.96.5.5"),
        ("KUBERNETES_SERVICE_PORT", "8080"),
        ("KUBERNETES_PORT", "tcp://10.96.5.5:8080"),
        ("KUBERNETES_PORT_8080_TCP", "tcp://10.96.5.5:8080"),
        ("KUBERNETES_PORT_8080_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_8080_TCP_PORT", "8080"),
        ("KUBERNETES_PORT_8080_TCP_ADDR", "10.96.5.5"),
    ], id="own-namespace-kubernetes-replaces-master"),
    pytest.param([svc("other", "10.96.0.7", ("", 80, ""), namespace="elsewhere")], True, None, [],
                 id="other-namespaces-ignored"),
])
def test_service_env(services: list[objects_pb2.Service], links: bool, master: objects_pb2.Service | None,
                     expected: list[tuple[str, str]]) -> None:
    namespace = "team" if any(s.metadata.namespace == "team" for s in services) else "default"
    assert service_env(services, namespace, links, master) == expected


def test_services_in_name_order_and_env_name() -> None:
    env = service_env([svc("b", "10.96.0.2", ("", 2, "")), svc("a", "10.96.0.1", ("", 1, ""))], "default",
                      True, None)
    assert [n for n, _ in env if n.endswith("_SERVICE_HOST")] == ["A_SERVICE_HOST", "B_SERVICE_HOST"]
    assert env_name("my-long-svc") == "MY_LONG_SVC"


def _pod(extra_spec: str = "", env: str = "", namespace: str = "default") -> objects_pb2.Pod:
    manifest = (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {namespace}}}\n"
        f"spec:\n  nodeName: n\n{extra_spec}  containers:\n  - name: app\n    image: busybox\n"
        f"    command: [echo, $(WEB_SERVICE_HOST), $(KUBERNETES_SERVICE_PORT)]\n{env}"
    )
    pod = load_pods(manifest)[0]
    default_pod(pod)
    return pod


class Cache:
    """A stand-in for ClusterView.services."""

    def __init__(self, *services: objects_pb2.Service, synced: bool = True):
        self.objects = {(s.metadata.namespace, s.metadata.name): s for s in services}
        self.synced = asyncio.Event()
        if synced:
            self.synced.set()


CACHE = Cache(MASTER, svc("web", "10.96.0.10", ("http", 80, "TCP")),
              svc("web", "10.96.9.9", ("", 81, ""), namespace="team"))


async def _environment(pod: objects_pb2.Pod, cache: Cache = CACHE) -> list[tuple[str, str]]:
    return await make_environment(pod, pod.spec.containers[0], None, "10.244.0.5", "10.0.0.1",
                                  services_for=services_from(cache))


async def test_pod_env_wins_and_expansion_sees_service_variables() -> None:
    pod = _pod(env="    env:\n    - {name: WEB_SERVICE_PORT, value: '9999'}\n"
                   "    - {name: URL, value: 'http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP)/'}\n")
    pairs = await _environment(pod)
    env = dict(pairs)
    assert len(env) == len(pairs)
    assert [n for n, _ in pairs][:2] == ["WEB_SERVICE_PORT", "URL"]  # the pod's own first, as the kubelet
    assert env["WEB_SERVICE_PORT"] == "9999"
    assert env["URL"] == "http://10.96.0.10:80/"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


async def test_command_expands_against_service_variables() -> None:
    pod = _pod()
    resolved = await resolve_container(pod, pod.spec.containers[0], None, "10.244.0.5", "10.0.0.1",
                                       services_for=services_from(CACHE))
    assert list(resolved.command) == ["echo", "10.96.0.10", "443"]


async def test_enable_service_links_false_keeps_only_the_master() -> None:
    env = dict(await _environment(_pod("  enableServiceLinks: false\n")))
    assert "WEB_SERVICE_HOST" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


async def test_only_the_pods_namespace() -> None:
    env = dict(await _environment(_pod(namespace="team")))
    assert env["WEB_SERVICE_HOST"] == "10.96.9.9"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


async def test_no_provider_no_service_variables() -> None:
    pod = _pod()
    assert await make_environment(pod, pod.spec.containers[0], None, "10.244.0.5", "10.0.0.1") == []


async def test_services_not_read_yet_fail_the_start() -> None:
    with pytest.raises(ServicesNotSynced):
        services_from(Cache(synced=False))("default")
    with pytest.raises(EnvError, match="services have not yet been read at least once"):
        await _environment(_pod(), Cache(MASTER, synced=False))
