"""The agent API: the choice of container for a logs request, and mutual TLS that serves the
master only (a real grpc.aio server with certificates from a local CA)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.server import AgentServer, ContainerLookupError, ServerTLS, pick_container
from pymaster.api import pki, services_pb2, services_pb2_grpc
from tests.fakes import FakeRuntime


def c(cid: str, name: str) -> ContainerInfo:
    return ContainerInfo(
        id=cid, name=name, pod_uid="u1", pod_name="web", pod_namespace="default", state="running"
    )


ONE = PodRuntime("u1", "web", "default", [c("new", "app"), c("old", "app"), c("i", INFRA_CONTAINER_NAME)])
TWO = PodRuntime("u1", "web", "default", [c("a1", "app"), c("s1", "sidecar"), c("i", INFRA_CONTAINER_NAME)])


@pytest.mark.parametrize(
    ("pod", "name", "expected"),
    [(ONE, "app", "new"), (ONE, "", "new"), (TWO, "sidecar", "s1"), (TWO, "app", "a1")],
)
def test_pick_container(pod: PodRuntime, name: str, expected: str) -> None:
    assert pick_container(pod, "u1", name, "n1").id == expected


@pytest.mark.parametrize(
    ("pod", "name", "code", "message"),
    [
        (None, "app", grpc.StatusCode.NOT_FOUND, "pod uid u1 has no containers on node n1"),
        (PodRuntime("u1", "web", "default"), "", grpc.StatusCode.NOT_FOUND, "pod uid u1 has no containers"),
        (ONE, "db", grpc.StatusCode.NOT_FOUND, "container db not found in pod default/web on node n1"),
        (ONE, INFRA_CONTAINER_NAME, grpc.StatusCode.NOT_FOUND, "container POD not found"),
        (TWO, "", grpc.StatusCode.INVALID_ARGUMENT, "choose one of: app, sidecar"),
    ],
)
def test_pick_container_errors(
    pod: PodRuntime | None, name: str, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(ContainerLookupError) as err:
        pick_container(pod, "u1", name, "n1")
    assert err.value.code == code
    assert message in err.value.message


# ---- mutual TLS and the master-only rule, over a real grpc.aio server ----


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


def node_tls(ca: pki.CertificateAuthority) -> tuple[bytes, bytes]:
    return ca.issue(pki.node_common_name("n1"), pki.NODES_GROUP, ["n1", "127.0.0.1"], 3600)


@pytest.fixture
async def agent_server(ca: pki.CertificateAuthority):
    key, cert = node_tls(ca)
    runtime = FakeRuntime()
    runtime.pods["u1"] = ONE
    server = AgentServer("127.0.0.1:0", runtime, "n1", ServerTLS(key, cert, ca.cert_pem))  # type: ignore[arg-type]
    await server.start()
    yield server
    await server.stop(0)


def caller(ca: pki.CertificateAuthority, who: str) -> grpc.ChannelCredentials:
    if who == "anonymous":
        return grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    subjects = {
        "master": (pki.MASTER_CLIENT_CN, pki.MASTERS_GROUP),
        "admin": (pki.ADMIN_CN, pki.MASTERS_GROUP),
        "node": (pki.node_common_name("n2"), pki.NODES_GROUP),
        "other": ("system:pymaster", "other"),
    }
    key, cert = ca.issue(*subjects[who], [], 3600, server=False)
    return grpc.ssl_channel_credentials(ca.cert_pem, private_key=key, certificate_chain=cert)


async def call_both(port: int, credentials: grpc.ChannelCredentials) -> tuple[int, bytes]:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="pykube.v1.Kubelet"), timeout=5
        )
        request = services_pb2.ContainerLogsRequest(pod_uid="u1", container="app")
        stream = services_pb2_grpc.KubeletStub(channel).ContainerLogs(request, timeout=5)
        chunks = [chunk.data async for chunk in stream]
    return health.status, b"".join(chunks)


async def test_the_master_is_served(agent_server: AgentServer, ca: pki.CertificateAuthority) -> None:
    status, logs = await call_both(agent_server.port, caller(ca, "master"))
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert logs == b"log of new\n"


@pytest.mark.parametrize("who", ["admin", "node", "other"])
async def test_other_identities_are_refused(agent_server: AgentServer, ca: pki.CertificateAuthority,
                                            who: str) -> None:
    async with grpc.aio.secure_channel(f"127.0.0.1:{agent_server.port}", caller(ca, who)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details() == "only the master may call the agent API"
        logs = services_pb2_grpc.KubeletStub(channel).ContainerLogs(
            services_pb2.ContainerLogsRequest(pod_uid="u1"), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in logs:
                pass
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_no_certificate_or_a_foreign_one_fails_the_handshake(agent_server: AgentServer,
                                                                   ca: pki.CertificateAuthority) -> None:
    foreign = pki.CertificateAuthority.create()
    key, cert = foreign.issue(pki.MASTER_CLIENT_CN, pki.MASTERS_GROUP, [], 3600, server=False)
    credentials = [
        caller(ca, "anonymous"),
        grpc.ssl_channel_credentials(root_certificates=ca.cert_pem, private_key=key, certificate_chain=cert),
    ]
    for creds in credentials:
        async with grpc.aio.secure_channel(f"127.0.0.1:{agent_server.port}", creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def served_serial(port: int, ca: pki.CertificateAuthority, tmp_path: Path) -> str:
    key, cert = ca.issue(pki.MASTER_CLIENT_CN, pki.MASTERS_GROUP, [], 3600, server=False)
    (tmp_path / "k").write_bytes(key)
    (tmp_path / "c").write_bytes(cert)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    context.load_cert_chain(tmp_path / "c", tmp_path / "k")
    context.set_alpn_protocols(["h2"])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="n1")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


async def test_renewed_certificate_is_served(agent_server: AgentServer, ca: pki.CertificateAuthority,
                                             tmp_path: Path) -> None:
    first = await served_serial(agent_server.port, ca, tmp_path)
    key, cert = node_tls(ca)
    agent_server._tls.update(key, cert, ca.cert_pem)
    assert await served_serial(agent_server.port, ca, tmp_path) == pki.cert_info(cert).serial != first
    status, _ = await call_both(agent_server.port, caller(ca, "master"))
    assert status == health_pb2.HealthCheckResponse.SERVING


async def test_a_stream_written_with_context_write_passes_the_check(agent_server: AgentServer,
                                                                     ca: pki.CertificateAuthority) -> None:
    # Health.Watch is a coroutine writing with context.write, not an async generator.
    async with grpc.aio.secure_channel(f"127.0.0.1:{agent_server.port}", caller(ca, "master")) as channel:
        request = health_pb2.HealthCheckRequest(service="pykube.v1.Kubelet")
        watch = health_pb2_grpc.HealthStub(channel).Watch(request)
        first = await watch.read()
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
