"""The node's identity: joining the cluster with a token, keeping the key and certificate under
``<root-dir>/pki/`` and renewing the certificate well before it expires (the kubelet's TLS
bootstrap and certificate manager, with k3s' CA pinning).

Files (``<root-dir>/pki/``, directory 0700): ``node.key`` (EC P-256, 0600), ``node.crt`` (CN
``system:node:<name>``, O ``system:nodes``; also the agent API's serving certificate) and
``ca.crt`` (the cluster CA). Each is written atomically, the certificate last, so a crash never
leaves a certificate without its key.

Start-up: stored credentials for this node name, matching the key, issued by the stored CA and
not expired are reused (no token needed). Otherwise the agent joins: it fetches the CA from the
master's plaintext Bootstrap port and trusts it only if its SHA-256 equals the token's hash; it
sends a CSR and an HMAC proof of the token's secret bound to the node name and CSR (never the
secret itself) and gets a node certificate back. An existing ``node.key`` is kept: a re-joining
agent keeps its identity, and the master refuses a node name held by another key.

Renewal: at 2/3 of the certificate's lifetime the agent sends a CSR for the same key over mutual
TLS (``NodeAgent.RenewCertificate``), saves the new certificate and hands it to the rotation hooks
(the master client reconnects, the agent API serves it). Failures retry with back-off; a
certificate that expired anyway, or one the master no longer accepts (UNAUTHENTICATED: node
deleted or certificate revoked), is replaced by joining again when a token is at hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pykubelet.backoff import Backoff
from pykubelet.metrics import AgentMetrics
from pymaster.api import errors, pki
from pymaster.api.clientconfig import ClientConfig
from pymaster.api.tokens import JoinToken, join_proof
from pymaster.client import BootstrapClient, Client

log = logging.getLogger(__name__)

PKI_DIRNAME = "pki"
KEY_FILE = "node.key"
CERT_FILE = "node.crt"
CA_FILE = "ca.crt"
# Renew once this much of the lifetime has passed: a third of it is left to get through an outage.
RENEW_FRACTION = 2 / 3
MIN_RENEW_DELAY = 1.0
RPC_TIMEOUT = 10.0

RotateHook = Callable[["NodeCredentials"], Awaitable[None]]


class CredentialsError(Exception):
    """The node cannot get (or keep) an identity without the user's help; the message says why."""


class MasterUnreachable(Exception):
    """The master did not answer (not started yet, restarting, network) or failed the call in a
    way a later attempt may not: retry with back-off."""


@dataclass(frozen=True)
class NodeCredentials:
    """The node's key, certificate and the cluster CA, as PEM. ``repr`` hides the key."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes
    ca_pem: bytes

    def info(self) -> pki.CertInfo:
        """The certificate's subject, serial and validity."""
        return pki.cert_info(self.cert_pem)

    def client_config(self, server: str) -> ClientConfig:
        """The config of a client of the master at ``server`` with this identity."""
        return ClientConfig(server=server, ca_pem=self.ca_pem, cert_pem=self.cert_pem, key_pem=self.key_pem)


def pki_dir(root_dir: str | Path) -> Path:
    """Where the node's credentials live: ``<root-dir>/pki``."""
    return Path(root_dir) / PKI_DIRNAME


def load_credentials(directory: Path) -> NodeCredentials | None:
    """The stored credentials, or None when any of the three files is missing."""
    try:
        return NodeCredentials(
            key_pem=(directory / KEY_FILE).read_bytes(),
            cert_pem=(directory / CERT_FILE).read_bytes(),
            ca_pem=(directory / CA_FILE).read_bytes(),
        )
    except FileNotFoundError:
        return None


def load_key(directory: Path) -> bytes | None:
    """The stored private key if there is a usable one (a re-join keeps the node's identity)."""
    try:
        key_pem = (directory / KEY_FILE).read_bytes()
        pki.load_key(key_pem)
    except FileNotFoundError:
        return None
    except ValueError as err:
        log.warning("stored node key unusable, a new one is generated path=%s error=%s",
                    directory / KEY_FILE, err)
        return None
    return key_pem


def save_credentials(directory: Path, creds: NodeCredentials) -> None:
    """Writes the three files atomically: key (0600), CA, then the certificate.

    Raises:
        OSError: the directory or a file could not be written.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)  # mkdir's mode is masked by the umask; an existing dir may be looser
    pki.atomic_write(directory / KEY_FILE, creds.key_pem, 0o600)
    pki.atomic_write(directory / CA_FILE, creds.ca_pem, 0o644)
    pki.atomic_write(directory / CERT_FILE, creds.cert_pem, 0o644)


def single_ca(ca_pem: bytes) -> bytes:
    """The CA certificate in canonical PEM.

    Exactly one certificate is accepted: a bundle would make every certificate in it a trusted
    root, while the token's hash pins only the first.

    Raises:
        ValueError: no certificate, several, or one that is not a CA.
    """
    try:
        certs = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as err:
        raise ValueError(f"invalid CA certificate: {err}") from None
    if len(certs) != 1:
        raise ValueError(f"expected one CA certificate, got {len(certs)}")
    try:
        is_ca = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints)")
    return certs[0].public_bytes(serialization.Encoding.PEM)


def check_identity(creds: NodeCredentials, node_name: str) -> None:
    """Checks that ``creds`` are node ``node_name``'s: subject, key pair, issued by the CA.

    Raises:
        ValueError: what does not fit.
    """
    info = creds.info()
    expected = pki.node_common_name(node_name)
    if info.common_name != expected or info.organization != pki.NODES_GROUP:
        raise ValueError(
            f"the certificate is for CN={info.common_name} O={info.organization}, not CN={expected} "
            f"O={pki.NODES_GROUP}"
        )
    key = pki.load_key(creds.key_pem)
    if pki.public_key_sha256(key.public_key()) != info.public_key_sha256:
        raise ValueError("the certificate does not match the node key")
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    ca = x509.load_pem_x509_certificate(single_ca(creds.ca_pem))
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, or a ValueError/TypeError for a name or key mismatch
        raise ValueError("the certificate was not issued by the stored CA") from None


def unusable_reason(
    creds: NodeCredentials | None, node_name: str, now: datetime, token: JoinToken | None = None
) -> str | None:
    """Why stored credentials cannot be reused (None: they can).

    With a token at hand, credentials of another CA than the token's are not reused either: the
    master was re-created and the token is the newer truth.
    """
    if creds is None:
        return "no stored credentials"
    try:
        check_identity(creds, node_name)
        ca_sha256 = pki.cert_sha256(creds.ca_pem)
        not_after = creds.info().not_after
    except ValueError as err:
        return str(err)
    if not_after <= now:
        return f"the certificate expired at {not_after.isoformat()}"
    if token is not None and not token.matches_ca(ca_sha256):
        return "the stored CA is not the one the token pins (the master's CA changed)"
    return None


def issued_at(info: pki.CertInfo) -> datetime:
    """When the certificate was signed: the CA backdates notBefore by ``pki.CLOCK_SKEW`` for
    peers with slow clocks, which is not lifetime the master meant to grant."""
    return min(info.not_before + pki.CLOCK_SKEW, info.not_after)


def renewal_time(info: pki.CertInfo, fraction: float = RENEW_FRACTION) -> datetime:
    """When to renew: once ``fraction`` of the certificate's lifetime has passed."""
    start = issued_at(info)
    return start + (info.not_after - start) * fraction


def renewal_delay(info: pki.CertInfo, now: datetime, minimum: float = MIN_RENEW_DELAY) -> float:
    """Seconds from ``now`` until the renewal, at least ``minimum`` (no busy loop when overdue)."""
    return max(minimum, (renewal_time(info) - now).total_seconds())


def make_node_csr(key_pem: bytes, node_name: str) -> bytes:
    """A CSR of node ``node_name`` for the key. The master decides subject and SANs anyway: the
    node name is the certificate's only name (how the master checks the agent it dials)."""
    return pki.make_csr(pki.load_key(key_pem), pki.node_common_name(node_name), pki.NODES_GROUP, [node_name])


def _accept(cert_pem: bytes, ca_pem: bytes, key_pem: bytes, node_name: str) -> NodeCredentials:
    """The credentials from a master's answer, once checked to be ours."""
    creds = NodeCredentials(key_pem=key_pem, cert_pem=cert_pem, ca_pem=ca_pem)
    try:
        check_identity(creds, node_name)
    except ValueError as err:
        raise CredentialsError(f"the master returned an unusable certificate: {err}") from None
    return creds


def _unreachable(err: errors.ApiError) -> bool:
    return err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def _fetch_ca(bootstrap: BootstrapClient, token: JoinToken) -> bytes:
    """The master's CA from its Bootstrap port, trusted only if it is the one the token pins.

    Raises:
        CredentialsError: the CA does not match the token, or the server is no Bootstrap server.
        MasterUnreachable: no answer.
    """
    try:
        served = await bootstrap.get_ca()
    except errors.ApiError as err:
        if _unreachable(err):
            raise MasterUnreachable(f"{err.code.name}: {err.message}") from None
        raise CredentialsError(
            f"the join server did not serve the CA ({err.code.name}: {err.message}); is --join-server "
            "the master's --join-listen address?"
        ) from None
    try:
        ca_pem = single_ca(served)
    except ValueError as err:
        raise CredentialsError(f"the master's CA is unusable: {err}") from None
    if not token.matches_ca(pki.cert_sha256(ca_pem)):
        raise CredentialsError(
            "the master's CA does not match the token's hash: refusing to join (wrong token, or someone "
            "in the middle)"
        )
    return ca_pem


async def join(
    join_server: str,
    token: JoinToken,
    node_name: str,
    key_pem: bytes,
    timeout: float = RPC_TIMEOUT,
) -> NodeCredentials:
    """Joins the cluster: pinned CA, CSR and proof of the token's secret -> node certificate.

    Raises:
        CredentialsError: the CA does not match the token, the token is refused (UNAUTHENTICATED:
            "invalid join token"), the node name is taken (PERMISSION_DENIED: the master's
            message), or the answer is unusable.
        MasterUnreachable: no answer; retry.
    """
    async with BootstrapClient(join_server, timeout) as bootstrap:
        ca_pem = await _fetch_ca(bootstrap, token)
        csr_pem = make_node_csr(key_pem, node_name)
        try:
            reply = await bootstrap.join(node_name, csr_pem, join_proof(token.secret, node_name, csr_pem))
        except errors.ApiError as err:
            code, details = err.code, err.message
            if _unreachable(err):
                raise MasterUnreachable(f"{code.name}: {details}") from None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise CredentialsError(
                    details if details.startswith("invalid join token") else f"invalid join token: {details}"
                ) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise CredentialsError(details) from None
            raise CredentialsError(
                f"the master refused to join node {node_name}: {code.name}: {details}"
            ) from None
    # The certificate must chain to the CA the token pinned, whatever else the answer carries.
    return _accept(reply.certificate_pem, ca_pem, key_pem, node_name)


async def renew(
    creds: NodeCredentials,
    server: str,
    node_name: str,
    timeout: float = RPC_TIMEOUT,
) -> NodeCredentials:
    """A new certificate for the same key, asked over mutual TLS with the current one.

    A short-lived client of its own: the agent's client may be busy reconnecting.

    Raises:
        errors.ApiError: the master's answer (Unauthenticated: the certificate is no longer
            accepted).
        CredentialsError: the answer is unusable.
    """
    csr_pem = make_node_csr(creds.key_pem, node_name)
    async with Client(server, timeout=timeout, config=creds.client_config(server)) as client:
        reply = await client.renew_certificate(csr_pem)
    try:
        # The channel was authenticated with the current CA, so a CA in the answer is the master's.
        ca_pem = single_ca(reply.ca_pem) if reply.ca_pem else creds.ca_pem
    except ValueError as err:
        raise CredentialsError(f"the master returned an unusable CA: {err}") from None
    return _accept(reply.certificate_pem, ca_pem, creds.key_pem, node_name)


@dataclass
class CredentialSettings:
    """Where and how the node gets its identity (from the flags)."""

    root_dir: str | Path
    node_name: str
    server: str  # the master's mTLS address
    join_server: str  # the master's plaintext Bootstrap address
    token: JoinToken | None
    rpc_timeout: float = RPC_TIMEOUT


class CertificateManager:
    """Owns the node's credentials: reuse or join at start, then renewal until cancelled.

    Args:
        settings: the node's settings.
        metrics: the agent's metrics (renewal errors); optional.
    """

    def __init__(self, settings: CredentialSettings, metrics: AgentMetrics | None = None):
        self.settings = settings
        self.directory = pki_dir(settings.root_dir)
        self._metrics = metrics
        self._creds: NodeCredentials | None = None
        self._hooks: list[RotateHook] = []
        self._wake = asyncio.Event()
        self._wake_reason = ""

    @property
    def credentials(self) -> NodeCredentials:
        """The credentials in use (after ``start``)."""
        if self._creds is None:
            raise RuntimeError("CertificateManager.start() has not run")
        return self._creds

    def client_config(self) -> ClientConfig:
        """The master client's config with the current credentials."""
        return self.credentials.client_config(self.settings.server)

    def ttl_seconds(self) -> float:
        """Seconds until the current certificate expires (negative once expired; 0 before start)."""
        if self._creds is None:
            return 0.0
        return (self._creds.info().not_after - datetime.now(UTC)).total_seconds()

    def on_rotate(self, hook: RotateHook) -> None:
        """Adds a coroutine called with every new set of credentials after they are saved."""
        self._hooks.append(hook)

    def renew_soon(self, reason: str) -> None:
        """Asks for a renewal now, e.g. because the master refused the certificate."""
        if not self._wake.is_set():
            log.info("certificate renewal requested node=%s reason=%s", self.settings.node_name, reason)
            self._wake_reason = reason
            self._wake.set()

    async def start(self) -> NodeCredentials:
        """Reuses the stored credentials, or joins (retrying while the master is unreachable).

        Raises:
            CredentialsError: no usable credentials and no token, or the join was refused.
        """
        s = self.settings
        try:
            stored = load_credentials(self.directory)
        except OSError as err:
            raise CredentialsError(
                f"cannot read the node credentials under {self.directory}: {err}"
            ) from None
        reason = unusable_reason(stored, s.node_name, datetime.now(UTC), s.token)
        if reason is None:
            assert stored is not None
            info = stored.info()
            log.info("reusing node credentials node=%s dir=%s serial=%s not_after=%s", s.node_name,
                     self.directory, info.serial, info.not_after.isoformat())
            self._creds = stored
            return stored
        if s.token is None:
            if stored is None:
                raise CredentialsError(
                    f"no credentials under {self.directory} and no --token; get one from the master's "
                    "<data-dir>/token"
                )
            raise CredentialsError(
                f"the credentials under {self.directory} cannot be used ({reason}) and there is no --token "
                "to join again; get one from the master's <data-dir>/token"
            )
        log.info("joining the cluster node=%s join_server=%s reason=%s", s.node_name, s.join_server, reason)
        creds = await self._join_until_answered()
        await self._save(creds)
        self._creds = creds
        return creds

    async def run(self) -> None:
        """Renews the certificate at 2/3 of its lifetime (or when asked) until cancelled."""
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            delay = renewal_delay(self.credentials.info(), datetime.now(UTC))
            log.info("next certificate renewal node=%s in_seconds=%.1f", self.settings.node_name, delay)
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self._wake_reason = "2/3 of the certificate's lifetime passed"
            while True:
                self._wake.clear()
                try:
                    creds = await self._replace(self._wake_reason)
                    break
                except CredentialsError as err:
                    log.error("certificate renewal failed node=%s error=%s", self.settings.node_name, err)
                except MasterUnreachable as err:
                    log.warning("certificate renewal failed node=%s error=%s", self.settings.node_name, err)
                if self._metrics is not None:
                    self._metrics.certificate_renew_errors.inc()
                await asyncio.sleep(backoff.next_delay())
            backoff.reset()
            await self._install(creds)
            # Refusals seen while the old certificate was still in use are answered by this one.
            self._wake.clear()

    async def _replace(self, reason: str) -> NodeCredentials:
        """New credentials: renewed, or joined again when renewing cannot work."""
        s = self.settings
        current = self.credentials
        not_after = current.info().not_after
        if not_after <= datetime.now(UTC):
            return await self._rejoin(f"the certificate expired at {not_after.isoformat()}")
        log.info("renewing the node certificate node=%s reason=%s", s.node_name, reason)
        try:
            return await renew(current, s.server, s.node_name, s.rpc_timeout)
        except errors.Unauthenticated as err:
            return await self._rejoin(
                f"the master no longer accepts the node certificate ({err.message}): the node was "
                "deleted or its certificate revoked"
            )
        except errors.ApiError as err:
            raise MasterUnreachable(f"RenewCertificate: {err.code.name}: {err.message}") from None

    async def _rejoin(self, why: str) -> NodeCredentials:
        s = self.settings
        if s.token is None:
            raise CredentialsError(
                f"{why}, and there is no --token to join again: restart pykubelet with --token"
            )
        log.warning("joining the cluster again node=%s reason=%s", s.node_name, why)
        try:
            key_pem = self.credentials.key_pem  # the same key: the master knows the node by it
            return await join(s.join_server, s.token, s.node_name, key_pem, s.rpc_timeout)
        except MasterUnreachable as err:
            raise MasterUnreachable(f"join server {s.join_server}: {err}") from None

    async def _join_until_answered(self) -> NodeCredentials:
        s = self.settings
        assert s.token is not None  # start() checked
        key_pem = load_key(self.directory)
        if key_pem is None:
            key_pem = pki.key_to_pem(pki.generate_key())
            log.info("generated a node key node=%s", s.node_name)
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                return await join(s.join_server, s.token, s.node_name, key_pem, s.rpc_timeout)
            except MasterUnreachable as err:
                delay = backoff.next_delay()
                log.warning(
                    "join server unreachable (is the master up, and --join-server its --join-listen?) "
                    "join_server=%s error=%s retry_in=%.2fs", s.join_server, err, delay,
                )
                await asyncio.sleep(delay)

    async def _save(self, creds: NodeCredentials) -> None:
        try:
            await asyncio.to_thread(save_credentials, self.directory, creds)
        except OSError as err:
            raise CredentialsError(
                f"cannot write the node credentials under {self.directory}: {err}"
            ) from None
        info = creds.info()
        log.info("node credentials saved node=%s dir=%s serial=%s not_after=%s", self.settings.node_name,
                 self.directory, info.serial, info.not_after.isoformat())

    async def _install(self, creds: NodeCredentials) -> None:
        """Saves and starts using new credentials; a failed save is logged, the new certificate
        is used anyway (the old one on disk still works until it expires)."""
        try:
            await self._save(creds)
        except CredentialsError as err:
            log.error("%s", err)
        self._creds = creds
        for hook in self._hooks:
            try:
                await hook(creds)
            except Exception:  # one hook failing must not keep the others on the old certificate
                log.exception("certificate rotation hook failed node=%s", self.settings.node_name)

