"""The master's own PKI in its data dir: created on first start, reused after.

Files (``<data-dir>/``)::

    pki/ca.crt, pki/ca.key (0600)          the cluster CA (10 years)
    pki/server.crt, pki/server.key         the master's serving certificate (serverAuth)
    pki/master-client.crt/.key             CN=system:pymaster, O=system:masters (clientAuth): the
                                           master's identity when it calls agents (logs)
    admin.yaml (0600)                      the admin client config (CN=admin, O=system:masters)
    token (0600)                           the join token, PK10<ca-sha256>::<secret>

The serving certificate's SANs are localhost, 127.0.0.1, ::1, the host name, the --listen host
(unless a wildcard) and every --tls-san. The master's own certificates (server, master-client,
admin) live ``max(--certificate-lifetime, one year)``: the flag is the signing duration of node
certificates, which renew themselves, like kube-controller-manager's --cluster-signing-duration
(a short node lifetime must not expire the admin's config). A certificate is re-issued at start
when it is missing, unreadable, from another CA, lacks a wanted SAN or has less than a third of
its lifetime left; the serving and master-client certificates are also renewed in-process when
two thirds have passed (``server_credentials`` re-reads on each TLS handshake), so a master that
runs for years never serves an expired certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pymaster.api import pki
from pymaster.api.clientconfig import ClientConfig, load_config, save_config, split_servers
from pymaster.api.tokens import JoinToken, load_or_create_token

log = logging.getLogger(__name__)

PKI_DIR = "pki"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
MASTER_CLIENT_CERT = "master-client.crt"
MASTER_CLIENT_KEY = "master-client.key"
ADMIN_CONFIG = "admin.yaml"
TOKEN_FILE = "token"
DEFAULT_CERTIFICATE_LIFETIME = 365 * 24 * 3600
# The master's own certificates never live shorter than this (see the module docstring).
MIN_MASTER_CERTIFICATE_LIFETIME = DEFAULT_CERTIFICATE_LIFETIME
# Re-issue when less than this fraction of a certificate's lifetime remains.
RENEW_REMAINING_FRACTION = 1 / 3
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def split_sans(values: Iterable[str]) -> list[str]:
    """--tls-san values (repeatable, each may be a comma list) -> names, blanks dropped, order kept."""
    names = [part.strip() for value in values for part in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def host_of(address: str) -> str:
    """The host of "HOST:PORT" without IPv6 brackets."""
    return address.rpartition(":")[0].strip("[]")


def server_sans(listen_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The serving certificate's SANs for a --listen host and --tls-san values: the master's
    reserved names (``pki.MASTER_NAMES``: what pyctl and agents check), loopback, the listen host
    and the --tls-san values (for other tools that check the address they dial)."""
    sans = [*pki.MASTER_NAMES, "127.0.0.1", "::1"]
    if listen_host not in _WILDCARD_HOSTS:
        sans.append(listen_host)
    return list(dict.fromkeys(_canonical(s) for s in [*sans, *split_sans(extra)]))


def reserved_node_names(sans: Iterable[str]) -> frozenset[str]:
    """The names no node may take: every DNS name of the master's serving certificate (a node
    certificate carries its node name as a SAN, so a node with one of these names could answer
    in the master's place to a client that checks that name)."""
    names = set(pki.MASTER_NAMES)
    for san in sans:
        try:
            ipaddress.ip_address(san)
        except ValueError:
            names.add(san.lower())
    return frozenset(names)


def client_address(listen: str, port: int) -> str:
    """The address a local client dials for a --listen address: a wildcard host becomes loopback."""
    host = host_of(listen)
    if host in _WILDCARD_HOSTS:
        host = "::1" if host == "::" else "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _canonical(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


def reissue_reason(
    cert_pem: bytes | None,
    key_pem: bytes | None,
    ca: pki.CertificateAuthority,
    *,
    common_name: str,
    organization: str,
    sans: Iterable[str] = (),
    now: datetime.datetime | None = None,
) -> str | None:
    """Why a stored certificate must be issued again, or None when it is fine to keep.

    Reasons: missing or unreadable, key does not match, another CA, another subject, a wanted SAN
    is missing, less than a third of its lifetime left.
    """
    if cert_pem is None or key_pem is None:
        return "missing"
    try:
        info = pki.cert_info(cert_pem)
        key = pki.load_key(key_pem)
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(
            x509.load_pem_x509_certificate(ca.cert_pem)
        )
    except (ValueError, TypeError, InvalidSignature):
        return "unreadable or issued by another CA"
    if pki.public_key_sha256(key.public_key()) != info.public_key_sha256:
        return "key does not match"
    if (info.common_name, info.organization) != (common_name, organization):
        return "another subject"
    missing = set(sans) - set(info.sans)
    if missing:
        return f"missing SANs {sorted(missing)}"
    now = now or _now()
    if info.not_after - now < (info.not_after - info.not_before) * RENEW_REMAINING_FRACTION:
        return "expiring"
    return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class _Spec:
    """One of the master's own key pairs under pki/."""

    cert_file: str
    key_file: str
    common_name: str
    organization: str
    server: bool


_SERVER = _Spec(SERVER_CERT, SERVER_KEY, "pymaster", "", server=True)
_MASTER_CLIENT = _Spec(
    MASTER_CLIENT_CERT, MASTER_CLIENT_KEY, pki.MASTER_CLIENT_CN, pki.MASTERS_GROUP, server=False
)


class _KeyPair:
    """A key pair file-backed under pki/: checked fully at start, then renewed in-process once two
    thirds of its lifetime have passed (a cheap clock comparison on the hot path)."""

    def __init__(self, pki_dir: Path, spec: _Spec, ca: pki.CertificateAuthority, sans: list[str],
                 lifetime: float):
        self._cert_path, self._key_path = pki_dir / spec.cert_file, pki_dir / spec.key_file
        self._spec, self._ca, self._sans, self._lifetime = spec, ca, sans, lifetime
        self._lock = threading.Lock()
        self.key_pem, self.cert_pem = _read(self._key_path) or b"", _read(self._cert_path) or b""
        reason = reissue_reason(
            self.cert_pem or None, self.key_pem or None, ca,
            common_name=spec.common_name, organization=spec.organization, sans=sans,
        )
        if reason is not None:
            self._issue(reason)
        else:
            self._renew_at = _renew_time(self.cert_pem)

    def refresh(self) -> bool:
        """Re-issues (and writes) the pair when it is due. Returns True if it did."""
        if _now() < self._renew_at:
            return False
        with self._lock:
            if _now() < self._renew_at:
                return False  # another thread renewed it meanwhile
            self._issue("expiring")
        return True

    def _issue(self, reason: str) -> None:
        spec = self._spec
        key_pem, cert_pem = self._ca.issue(
            spec.common_name, spec.organization, self._sans, self._lifetime,
            server=spec.server, client=not spec.server,
        )
        pki.atomic_write(self._key_path, key_pem, 0o600)
        pki.atomic_write(self._cert_path, cert_pem, 0o644)
        self.key_pem, self.cert_pem = key_pem, cert_pem
        self._renew_at = _renew_time(cert_pem)
        log.info("issued certificate file=%s reason=%s", self._cert_path, reason)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _renew_time(cert_pem: bytes) -> datetime.datetime:
    info = pki.cert_info(cert_pem)
    return info.not_after - (info.not_after - info.not_before) * RENEW_REMAINING_FRACTION


class MasterPKI:
    """The CA, the master's key pairs, the join token and the admin config of one data dir."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        tls_sans: Iterable[str] = (),
        listen_host: str = "127.0.0.1",
        certificate_lifetime: float = DEFAULT_CERTIFICATE_LIFETIME,
        rotate_join_token: bool = False,
    ):
        """Loads or creates everything (blocking file I/O and signing: call before serving).

        Args:
            tls_sans: Extra serving-certificate SANs (--tls-san values, comma lists allowed).
            listen_host: The --listen host, a SAN unless it is a wildcard.
            certificate_lifetime: Seconds; node certificates get exactly this, the master's own
                at least a year.
            rotate_join_token: Write a new join token secret (the old one stops working for joins).

        Raises:
            ValueError: an incomplete or broken CA, or an unreadable token file.
        """
        self.data_dir = Path(data_dir)
        self.pki_dir = self.data_dir / PKI_DIR
        self.admin_config_path = self.data_dir / ADMIN_CONFIG
        self.token_path = self.data_dir / TOKEN_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The store, the CA key and the join token live here: nobody else's business.
        self.data_dir.chmod(0o700)
        self.ca = pki.CertificateAuthority.load_or_create(self.pki_dir)
        self._own_lifetime = max(certificate_lifetime, MIN_MASTER_CERTIFICATE_LIFETIME)
        sans = server_sans(listen_host, tls_sans)
        self._server = _KeyPair(self.pki_dir, _SERVER, self.ca, sans, self._own_lifetime)
        self._client = _KeyPair(self.pki_dir, _MASTER_CLIENT, self.ca, [], self._own_lifetime)
        if rotate_join_token:
            self.token = JoinToken.new(self.ca.sha256)
            pki.atomic_write(self.token_path, (str(self.token) + "\n").encode(), 0o600)
            log.info("rotated join token path=%s", self.token_path)
        else:
            self.token = load_or_create_token(self.token_path, self.ca.sha256)

    @property
    def server_sans(self) -> list[str]:
        """The SANs of the serving certificate."""
        return pki.cert_info(self._server.cert_pem).sans

    def server_credentials(self) -> grpc.ServerCredentials:
        """mTLS server credentials (client certificates required, verified against the CA) whose
        certificate is renewed in-process when two thirds of its lifetime have passed. One per
        server (gRPC does not share them): each serves the renewed pair, whichever renewed it."""
        serving = [self._server.cert_pem]

        def configuration() -> grpc.ServerCertificateConfiguration:
            serving[0] = self._server.cert_pem
            return grpc.ssl_server_certificate_configuration(
                [(self._server.key_pem, self._server.cert_pem)], root_certificates=self.ca.cert_pem
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC on every TLS handshake; None keeps the current certificate.
            _, cert_pem = self.serving_pair()
            return configuration() if cert_pem != serving[0] else None

        return grpc.dynamic_ssl_server_credentials(configuration(), fetch, require_client_authentication=True)

    def serving_pair(self) -> tuple[bytes, bytes]:
        """The serving key and certificate (PEM), renewed first when due (as a handshake on the
        API port would; a failed renewal keeps the current pair)."""
        try:
            self._server.refresh()
        except Exception:
            log.exception("renewing the serving certificate failed; keeping the current one")
        return self._server.key_pem, self._server.cert_pem

    def agent_channel_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials for calling an agent: trust the CA, present the master-client
        certificate (renewed first when due)."""
        self._client.refresh()
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem,
            private_key=self._client.key_pem,
            certificate_chain=self._client.cert_pem,
        )

    def write_admin_config(self, server: str) -> None:
        """Writes admin.yaml for ``server`` ("HOST:PORT"), keeping the admin certificate in it
        while ``reissue_reason`` finds nothing wrong with it, and a list of several masters the
        file already names (the file is rewritten only when something changed)."""
        try:
            current: ClientConfig | None = load_config(self.admin_config_path)
        except (FileNotFoundError, ValueError):
            current = None
        reason = reissue_reason(
            current.cert_pem if current else None, current.key_pem if current else None, self.ca,
            common_name=pki.ADMIN_CN, organization=pki.MASTERS_GROUP,
        )
        if reason is None and current is not None:
            key_pem, cert_pem = current.key_pem, current.cert_pem
        else:
            key_pem, cert_pem = self.ca.issue(
                pki.ADMIN_CN, pki.MASTERS_GROUP, [], self._own_lifetime, server=False, client=True
            )
            log.info("issued admin certificate reason=%s", reason)
        # A list of masters (``pymaster init --server a,b,c``) is the admin's: kept as it is.
        servers = list(current.servers) if current is not None and len(current.servers) > 1 else (
            split_servers(server))
        config = ClientConfig(server=servers[0], ca_pem=self.ca.cert_pem, cert_pem=cert_pem, key_pem=key_pem,
                              servers=servers)
        if config != current:
            save_config(self.admin_config_path, config)
            log.info("wrote admin config path=%s server=%s", self.admin_config_path, server)
