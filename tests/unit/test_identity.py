"""Caller identities: subject mapping, and extraction from a real mutual-TLS gRPC connection."""

import asyncio
import contextlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pymaster.api import clientconfig, pki
from pymaster.api.clientconfig import ClientConfig
from pymaster.api.identity import ANONYMOUS, Identity, identity_from_context, identity_from_pem

HOUR = 3600


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


@pytest.mark.parametrize(
    ("cn", "org", "kind", "name"),
    [
        ("admin", "system:masters", "admin", "admin"),
        ("system:pymaster", "system:masters", "master", "system:pymaster"),
        ("system:node:worker-1", "system:nodes", "node", "worker-1"),
        ("system:node:", "system:nodes", "anonymous", ""),  # no node name
        ("system:node:worker-1", "system:masters", "anonymous", ""),
        ("admin", "system:nodes", "anonymous", ""),
        ("someone", "system:masters", "anonymous", ""),
        ("system:pymaster", "", "anonymous", ""),
        ("admin", "", "anonymous", ""),
    ],
)
def test_identity_from_pem(ca, cn, org, kind, name):
    _, cert_pem = ca.issue(cn, org, [], HOUR)
    info = pki.cert_info(cert_pem)
    identity = identity_from_pem(cert_pem)
    assert (identity.kind, identity.name) == (kind, name)
    assert identity.serial == info.serial
    assert identity.public_key_sha256 == info.public_key_sha256


def test_str():
    assert str(Identity("node", "n1")) == "node:n1"
    assert str(ANONYMOUS) == "anonymous"


class _Context:
    def __init__(self, auth: dict) -> None:
        self._auth = auth

    def auth_context(self) -> dict:
        return self._auth


@pytest.mark.parametrize("auth", [{}, {"x509_pem_cert": []}, {"x509_pem_cert": [b"garbage"]}])
def test_identity_from_context_without_usable_cert(auth):
    assert identity_from_context(_Context(auth)) == ANONYMOUS


class _RecordingHealth(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self.identities: list[Identity] = []

    async def Check(self, request, context):  # noqa: N802 (gRPC method name)
        self.identities.append(identity_from_context(context))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@contextlib.asynccontextmanager
async def _serve(ca: pki.CertificateAuthority, sans: list[str]):
    key_pem, cert_pem = ca.issue("pymaster", "", sans, HOUR, server=True, client=False)
    servicer = _RecordingHealth()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(None)


@pytest.fixture
async def mtls_server(ca):
    async with _serve(ca, ["pymaster"]) as served:
        yield served


async def _check(cfg: ClientConfig) -> None:
    async with grpc.aio.secure_channel(
        cfg.server, clientconfig.channel_credentials(cfg), options=clientconfig.channel_options(cfg)
    ) as channel:
        await asyncio.wait_for(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()), 10)


@pytest.mark.parametrize(
    ("cn", "org", "expected"),
    [
        ("system:node:n1", "system:nodes", ("node", "n1")),
        ("admin", "system:masters", ("admin", "admin")),
        ("stranger", "", ("anonymous", "")),
    ],
)
async def test_identity_over_mtls(ca, mtls_server, cn, org, expected):
    address, servicer = mtls_server
    key_pem, cert_pem = ca.issue(cn, org, [], HOUR, server=False, client=True)
    await _check(ClientConfig(server=address, ca_pem=ca.cert_pem, cert_pem=cert_pem, key_pem=key_pem))
    (identity,) = servicer.identities
    assert (identity.kind, identity.name) == expected
    assert identity.serial == pki.cert_info(cert_pem).serial


async def test_certificate_of_another_ca_is_refused(ca, mtls_server):
    address, servicer = mtls_server
    key_pem, cert_pem = pki.CertificateAuthority.create().issue("admin", "system:masters", [], HOUR)
    cfg = ClientConfig(server=address, ca_pem=ca.cert_pem, cert_pem=cert_pem, key_pem=key_pem)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _check(cfg)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.identities == []


@pytest.mark.parametrize(("server_name", "ok"), [("", False), ("master.internal", True)])
async def test_tls_server_name_override(ca, server_name, ok):
    key_pem, cert_pem = ca.issue("admin", "system:masters", [], HOUR, server=False, client=True)
    # The server certificate names only master.internal: dialing 127.0.0.1 needs the override.
    async with _serve(ca, ["master.internal"]) as (address, servicer):
        cfg = ClientConfig(
            server=address,
            ca_pem=ca.cert_pem,
            cert_pem=cert_pem,
            key_pem=key_pem,
            tls_server_name=server_name,
        )
        if ok:
            await _check(cfg)
        else:
            with pytest.raises(grpc.aio.AioRpcError):
                await _check(cfg)
        assert len(servicer.identities) == int(ok)
