"""The node's credentials: storage, reuse checks, renewal timing, and join/renewal against an
in-process fake master (a real CA, real gRPC: Bootstrap in plaintext, NodeAgent over mutual TLS)."""

from __future__ import annotations

import asyncio
import logging
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from pykubelet import credentials as cr
from pykubelet.metrics import AgentMetrics
from pymaster.api import pki, services_pb2, services_pb2_grpc
from pymaster.api.identity import identity_from_context
from pymaster.api.tokens import JoinToken, verify_join_proof

NODE = "n1"
SANS = ["n1"]  # what the master signs: the node name only


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


@pytest.fixture(scope="module")
def other_ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


def issue(ca: pki.CertificateAuthority, name: str = NODE, lifetime: float = 3600,
          key_pem: bytes | None = None) -> cr.NodeCredentials:
    key_pem = key_pem or pki.key_to_pem(pki.generate_key())
    csr = cr.make_node_csr(key_pem, name)
    cert = ca.sign_csr(csr, common_name=pki.node_common_name(name), organization=pki.NODES_GROUP, sans=SANS,
                       lifetime_seconds=lifetime)
    return cr.NodeCredentials(key_pem=key_pem, cert_pem=cert, ca_pem=ca.cert_pem)


def now() -> datetime:
    return datetime.now(UTC)


async def until(condition: Callable[[], object], timeout: float) -> None:
    """Waits for ``condition()`` to be truthy; fails after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


# ---- storage and reuse ----


def test_save_and_load(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    directory = cr.pki_dir(tmp_path)
    assert cr.load_credentials(directory) is None and cr.load_key(directory) is None
    creds = issue(ca)
    cr.save_credentials(directory, creds)
    assert cr.load_credentials(directory) == creds
    assert cr.load_key(directory) == creds.key_pem
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / cr.KEY_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "node.crt", "node.key"]
    assert "PRIVATE" not in repr(creds) and "key_pem" not in repr(creds)


def test_incomplete_or_broken_files(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    directory = cr.pki_dir(tmp_path)
    cr.save_credentials(directory, issue(ca))
    (directory / cr.CERT_FILE).unlink()
    assert cr.load_credentials(directory) is None
    assert cr.load_key(directory) is not None  # kept for a re-join
    (directory / cr.KEY_FILE).write_bytes(b"garbage")
    assert cr.load_key(directory) is None


def _expired(creds: cr.NodeCredentials) -> tuple[cr.NodeCredentials, datetime]:
    return creds, now() + timedelta(days=2)


def test_reusable(ca: pki.CertificateAuthority) -> None:
    creds = issue(ca)
    assert cr.unusable_reason(creds, NODE, now()) is None
    assert cr.unusable_reason(creds, NODE, now(), JoinToken.new(ca.sha256)) is None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "no stored credentials"),
        ("other node", "the certificate is for CN=system:node:n2 O=system:nodes, not CN=system:node:n1"),
        ("admin cert", "the certificate is for CN=admin O=system:masters"),
        ("other key", "the certificate does not match the node key"),
        ("other ca", "the certificate was not issued by the stored CA"),
        ("ca bundle", "expected one CA certificate, got 2"),
        ("expired", "the certificate expired at"),
        ("token of another CA", "the stored CA is not the one the token pins"),
        ("garbage cert", "invalid certificate"),
    ],
)
def test_not_reusable(
    case: str, reason: str, ca: pki.CertificateAuthority, other_ca: pki.CertificateAuthority
) -> None:
    creds: cr.NodeCredentials | None = issue(ca)
    at, token = now(), None
    assert creds is not None
    if case == "missing":
        creds = None
    elif case == "other node":
        creds = issue(ca, "n2")
    elif case == "admin cert":
        key, cert = ca.issue(pki.ADMIN_CN, pki.MASTERS_GROUP, [], 3600)
        creds = cr.NodeCredentials(key, cert, ca.cert_pem)
    elif case == "other key":
        creds = cr.NodeCredentials(pki.key_to_pem(pki.generate_key()), creds.cert_pem, creds.ca_pem)
    elif case == "other ca":
        creds = cr.NodeCredentials(creds.key_pem, creds.cert_pem, other_ca.cert_pem)
    elif case == "ca bundle":
        creds = cr.NodeCredentials(creds.key_pem, creds.cert_pem, ca.cert_pem + other_ca.cert_pem)
    elif case == "expired":
        at = now() + timedelta(hours=2)
    elif case == "token of another CA":
        token = JoinToken.new(other_ca.sha256)
    elif case == "garbage cert":
        creds = cr.NodeCredentials(creds.key_pem, b"nope", creds.ca_pem)
    got = cr.unusable_reason(creds, NODE, at, token)
    assert got is not None and reason in got


def test_single_ca(ca: pki.CertificateAuthority) -> None:
    assert cr.single_ca(ca.cert_pem) == ca.cert_pem
    _, leaf = ca.issue("x", "", [], 60)
    with pytest.raises(ValueError, match="not a CA"):
        cr.single_ca(leaf)
    with pytest.raises(ValueError, match="invalid CA certificate"):
        cr.single_ca(b"junk")


# ---- renewal timing ----


def info(not_before: datetime, not_after: datetime) -> pki.CertInfo:
    return pki.CertInfo("system:node:n1", "system:nodes", "1", not_before, not_after, "")


T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lifetime", "elapsed", "expected"),
    [
        (300.0, 0.0, 200.0),      # 2/3 of the lifetime from issue
        (300.0, 150.0, 50.0),
        (300.0, 200.0, 1.0),      # due: at least the minimum, never a busy loop
        (300.0, 400.0, 1.0),      # expired: the renewal runs at once (and joins again)
        (31536000.0, 0.0, 21024000.0),
        (1.5, 0.0, 1.0),
    ],
)
def test_renewal_delay(lifetime: float, elapsed: float, expected: float) -> None:
    # The CA backdates notBefore by CLOCK_SKEW; the lifetime counts from the real issue time.
    cert = info(T0 - pki.CLOCK_SKEW, T0 + timedelta(seconds=lifetime))
    assert cr.renewal_delay(cert, T0 + timedelta(seconds=elapsed)) == pytest.approx(expected)


def test_renewal_time_of_a_real_certificate(ca: pki.CertificateAuthority) -> None:
    cert = issue(ca, lifetime=90).info()
    due = cr.renewal_time(cert)
    assert timedelta(seconds=58) < due - now() <= timedelta(seconds=60)


def test_issue_time() -> None:
    # notBefore + CLOCK_SKEW, but never after notAfter.
    assert cr.issued_at(info(T0, T0 + timedelta(hours=1))) == T0 + pki.CLOCK_SKEW
    assert cr.issued_at(info(T0, T0 + timedelta(seconds=60))) == T0 + timedelta(seconds=60)
    # Issued at T0+300 s, expiring at T0+3600 s: due at 300 + 2/3 * 3300 = 2500 s.
    assert cr.renewal_delay(info(T0, T0 + timedelta(hours=1)), T0) == pytest.approx(2500.0)


# ---- join and renewal against a fake master ----


class FakeMaster(services_pb2_grpc.BootstrapServicer, services_pb2_grpc.NodeAgentServicer):
    """Bootstrap on a plaintext port, NodeAgent.RenewCertificate on a mutual-TLS port."""

    def __init__(self, ca: pki.CertificateAuthority, lifetime: float = 3600):
        self.ca = ca
        self.token = JoinToken.new(ca.sha256)
        self.lifetime = lifetime
        self.served_ca = ca.cert_pem
        self.join_error: tuple[grpc.StatusCode, str] | None = None
        self.renew_error: tuple[grpc.StatusCode, str] | None = None
        self.joins: list[services_pb2.JoinRequest] = []
        self.renewals: list[str] = []
        self.join_port = self.tls_port = 0

    async def start(self) -> None:
        self._plain = grpc.aio.server()
        services_pb2_grpc.add_BootstrapServicer_to_server(self, self._plain)
        self.join_port = self._plain.add_insecure_port("127.0.0.1:0")
        self._tls = grpc.aio.server()
        services_pb2_grpc.add_NodeAgentServicer_to_server(self, self._tls)
        # Served under the name agents check in the master's certificate (pki.MASTER_SERVER_NAME).
        key, cert = self.ca.issue("pymaster", "", ["pymaster", "127.0.0.1", "localhost"], 3600, client=False)
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=self.ca.cert_pem,
                                            require_client_auth=True)
        self.tls_port = self._tls.add_secure_port("127.0.0.1:0", creds)
        await self._plain.start()
        await self._tls.start()

    async def stop(self) -> None:
        await self._plain.stop(0)
        await self._tls.stop(0)

    def _sign(self, name: str, csr_pem: bytes) -> services_pb2.CertificateResponse:
        cert = self.ca.sign_csr(csr_pem, common_name=pki.node_common_name(name), organization=pki.NODES_GROUP,
                                sans=pki.csr_info(csr_pem).sans, lifetime_seconds=self.lifetime)
        return services_pb2.CertificateResponse(certificate_pem=cert, ca_pem=self.ca.cert_pem)

    async def GetCA(self, request, context):  # noqa: N802
        return services_pb2.CABundle(ca_pem=self.served_ca)

    async def Join(self, request, context):  # noqa: N802
        self.joins.append(request)
        if not verify_join_proof(self.token.secret, request.node_name, request.csr_pem, request.proof):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid join token")
        if self.join_error:
            await context.abort(*self.join_error)
        return self._sign(request.node_name, request.csr_pem)

    async def RenewCertificate(self, request, context):  # noqa: N802
        identity = identity_from_context(context)
        self.renewals.append(identity.name)
        if self.renew_error:
            await context.abort(*self.renew_error)
        return self._sign(identity.name, request.csr_pem)


@pytest.fixture
async def master(ca: pki.CertificateAuthority):
    fake = FakeMaster(ca)
    await fake.start()
    yield fake
    await fake.stop()


def manager(tmp_path: Path, master: FakeMaster, token: JoinToken | None | str = "master",
            registry: CollectorRegistry | None = None) -> cr.CertificateManager:
    settings = cr.CredentialSettings(
        root_dir=tmp_path, node_name=NODE, server=f"127.0.0.1:{master.tls_port}",
        join_server=f"127.0.0.1:{master.join_port}", token=master.token if token == "master" else token,  # type: ignore[arg-type]
        rpc_timeout=5.0,
    )
    metrics = AgentMetrics(registry, NODE) if registry is not None else None
    return cr.CertificateManager(settings, metrics=metrics)


async def test_join_then_reuse(tmp_path: Path, master: FakeMaster) -> None:
    m = manager(tmp_path, master)
    creds = await m.start()
    info_ = creds.info()
    assert (info_.common_name, info_.organization) == ("system:node:n1", "system:nodes")
    assert info_.sans == ["n1"]
    assert cr.load_credentials(m.directory) == creds
    assert len(master.joins) == 1 and master.joins[0].node_name == NODE
    assert master.token.secret.encode() not in master.joins[0].SerializeToString()  # a proof, not the secret
    # A restart reuses them, without a token.
    again = await manager(tmp_path, master, token=None).start()
    assert again == creds and len(master.joins) == 1
    config = m.client_config()
    assert config.server == f"127.0.0.1:{master.tls_port}" and config.cert_pem == creds.cert_pem


async def test_rejoin_keeps_the_key(tmp_path: Path, master: FakeMaster) -> None:
    first = await manager(tmp_path, master).start()
    (cr.pki_dir(tmp_path) / cr.CERT_FILE).unlink()
    second = await manager(tmp_path, master).start()
    assert second.key_pem == first.key_pem and second.cert_pem != first.cert_pem


async def test_no_credentials_and_no_token(tmp_path: Path, master: FakeMaster) -> None:
    with pytest.raises(cr.CredentialsError) as err:
        await manager(tmp_path, master, token=None).start()
    assert str(err.value) == (
        f"no credentials under {tmp_path / 'pki'} and no --token; get one from the master's <data-dir>/token"
    )


async def test_expired_credentials_and_no_token(tmp_path: Path, master: FakeMaster, ca) -> None:
    expired = issue(ca, lifetime=0.001)
    cr.save_credentials(cr.pki_dir(tmp_path), expired)
    not_after = expired.info().not_after
    await until(lambda: now() > not_after, 5.0)  # X.509 times have whole seconds
    with pytest.raises(cr.CredentialsError, match=r"cannot be used \(the certificate expired at .*--token"):
        await manager(tmp_path, master, token=None).start()
    # With the token, the agent joins again, with the same key.
    creds = await manager(tmp_path, master).start()
    assert len(master.joins) == 1 and creds.info().not_after > now()
    assert creds.key_pem == expired.key_pem


async def test_wrong_ca_hash_is_refused(tmp_path: Path, master: FakeMaster, other_ca) -> None:
    master.served_ca = other_ca.cert_pem  # someone in the middle answers with their own CA
    with pytest.raises(cr.CredentialsError) as err:
        await manager(tmp_path, master).start()
    assert str(err.value) == (
        "the master's CA does not match the token's hash: refusing to join (wrong token, or someone in "
        "the middle)"
    )
    assert master.joins == [] and cr.load_credentials(cr.pki_dir(tmp_path)) is None


async def test_ca_bundle_is_refused(tmp_path: Path, master: FakeMaster, other_ca) -> None:
    master.served_ca = master.ca.cert_pem + other_ca.cert_pem  # the pinned CA plus a stowaway
    with pytest.raises(cr.CredentialsError, match="expected one CA certificate, got 2"):
        await manager(tmp_path, master).start()


@pytest.mark.parametrize(
    ("token_secret", "error", "message"),
    [
        ("wrong-secret-0123456789", None, "invalid join token"),
        (None, (grpc.StatusCode.PERMISSION_DENIED, "node n1 is held by another identity"),
         "node n1 is held by another identity"),
        (None, (grpc.StatusCode.INVALID_ARGUMENT, "csr_pem: invalid CSR"),
         "the master refused to join node n1: INVALID_ARGUMENT: csr_pem: invalid CSR"),
    ],
)
async def test_join_refused(tmp_path: Path, master: FakeMaster, token_secret: str | None,
                            error: tuple[grpc.StatusCode, str] | None, message: str) -> None:
    master.join_error = error
    token = JoinToken(master.token.ca_sha256, token_secret) if token_secret else master.token
    with pytest.raises(cr.CredentialsError) as err:
        await manager(tmp_path, master, token=token).start()
    assert str(err.value) == message


async def test_join_waits_for_the_master(
    tmp_path: Path, ca: pki.CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=cr.__name__)
    fake = FakeMaster(ca)
    with socket.socket() as s:  # a port nobody listens on (yet)
        s.bind(("127.0.0.1", 0))
        join_port = s.getsockname()[1]
    settings = cr.CredentialSettings(
        tmp_path, NODE, "127.0.0.1:1", f"127.0.0.1:{join_port}", fake.token, rpc_timeout=1.0
    )
    start = asyncio.create_task(cr.CertificateManager(settings).start())

    def attempts_failed() -> int:
        return sum("join server unreachable" in r.getMessage() for r in caplog.records)

    # It tried, found nobody, and keeps waiting (rather than failing).
    await until(lambda: attempts_failed() >= 1, 10.0)
    assert not start.done()
    server = grpc.aio.server()
    services_pb2_grpc.add_BootstrapServicer_to_server(fake, server)
    server.add_insecure_port(f"127.0.0.1:{join_port}")
    await server.start()
    try:
        async with asyncio.timeout(20):
            creds = await start
        assert creds.info().common_name == "system:node:n1"
    finally:
        await server.stop(0)


async def test_renewal_rotates(tmp_path: Path, master: FakeMaster) -> None:
    master.lifetime = 3  # renewal due after about 2 s (X.509 times have whole seconds)
    m = manager(tmp_path, master)
    first = await m.start()
    master.lifetime = 3600
    rotated: list[cr.NodeCredentials] = []

    async def hook(creds: cr.NodeCredentials) -> None:
        rotated.append(creds)

    m.on_rotate(hook)
    task = asyncio.create_task(m.run())
    try:
        await until(lambda: rotated, 10)
    finally:
        task.cancel()
    new = rotated[0]
    assert master.renewals == [NODE] and master.joins[1:] == []
    assert new.key_pem == first.key_pem and new.cert_pem != first.cert_pem
    assert m.credentials == new and cr.load_credentials(m.directory) == new
    assert m.ttl_seconds() > 3000


@pytest.mark.parametrize("has_token", [True, False])
async def test_revoked_certificate_rejoins_with_the_token(tmp_path: Path, master: FakeMaster,
                                                          has_token: bool) -> None:
    registry = CollectorRegistry()
    first = await manager(tmp_path, master).start()
    m = manager(tmp_path, master, token="master" if has_token else None, registry=registry)
    await m.start()  # reused
    master.renew_error = (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
    rotated: list[cr.NodeCredentials] = []

    async def hook(creds: cr.NodeCredentials) -> None:
        rotated.append(creds)

    m.on_rotate(hook)
    task = asyncio.create_task(m.run())
    m.renew_soon("lease: UNAUTHENTICATED")
    errors = "kubelet_certificate_manager_client_expiration_renew_errors_total"
    try:
        if has_token:
            await until(lambda: rotated, 10)
        else:
            await until(lambda: registry.get_sample_value(errors), 10)
    finally:
        task.cancel()
    if has_token:
        assert len(master.joins) == 2 and rotated[0].key_pem == first.key_pem
    else:
        assert rotated == [] and len(master.joins) == 1


async def test_unreachable_renewal_is_retried(tmp_path: Path, master: FakeMaster) -> None:
    registry = CollectorRegistry()
    m = manager(tmp_path, master, registry=registry)
    await m.start()
    master.renew_error = (grpc.StatusCode.UNAVAILABLE, "busy")
    rotated: list[cr.NodeCredentials] = []

    async def hook(creds: cr.NodeCredentials) -> None:
        rotated.append(creds)

    m.on_rotate(hook)
    task = asyncio.create_task(m.run())
    m.renew_soon("test")
    errors = "kubelet_certificate_manager_client_expiration_renew_errors_total"
    try:
        await until(lambda: registry.get_sample_value(errors), 10)
        master.renew_error = None
        await until(lambda: rotated, 10)
    finally:
        task.cancel()
    assert len(master.renewals) >= 2 and len(master.joins) == 1  # renewed, not re-joined
