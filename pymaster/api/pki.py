"""The cluster's X.509 PKI: EC P-256 keys, CSRs, a file-backed certificate authority, cert inspection.

Everything speaks PEM bytes at the boundary so callers (master, agent, pyctl) never touch the
``cryptography`` object model. Certificates are X.509 v3 signed with ECDSA/SHA-256; leaves carry
BasicConstraints(CA false), KeyUsage(digitalSignature), the requested extended key usages and
SANs (a SAN that parses as an IP address becomes an IPAddress entry, anything else a DNSName).
``not_before`` is backdated five minutes so a peer whose clock runs a little behind still accepts a
freshly issued certificate.

The CA decides every subject and SAN it signs: a CSR only contributes its public key (and proves
possession of the private key through its signature), the same rule kube-controller-manager's CSR
signer applies, so a node cannot ask for ``O=system:masters``.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

ADMIN_CN = "admin"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
MASTER_CLIENT_CN = "system:pymaster"
NODE_CN_PREFIX = "system:node:"
# The name every client and agent checks in the master's serving certificate (the client config's
# tls-server-name), whatever address it dials. Node certificates can never carry it: the CA gives
# a node certificate its node name as its only SAN, and these names are refused as node names.
MASTER_SERVER_NAME = "pymaster"
# Every DNS name of the master's serving certificate that no node may take (the Kubernetes ones
# are for in-cluster clients that look for the API server under its Service name).
MASTER_NAMES = (
    MASTER_SERVER_NAME,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)

CA_LIFETIME_SECONDS = 10 * 365 * 24 * 3600
CLOCK_SKEW = datetime.timedelta(minutes=5)
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


def node_common_name(name: str) -> str:
    """Return the certificate common name of node ``name`` ("system:node:<name>")."""
    return NODE_CN_PREFIX + name


def generate_key() -> ec.EllipticCurvePrivateKey:
    """Generate a fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Serialize a private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted EC private key from PEM.

    Raises:
        ValueError: the PEM is not an unencrypted EC private key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("invalid private key: not an EC key")
    return key


def public_key_sha256(public_key) -> str:
    """Hex SHA-256 of a public key's DER SubjectPublicKeyInfo (stable across re-issued certs)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def cert_sha256(cert_pem: bytes) -> str:
    """Hex SHA-256 of a certificate's DER encoding: the CA fingerprint a join token pins.

    Raises:
        ValueError: the PEM is not a certificate.
    """
    return hashlib.sha256(_load_cert(cert_pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file.

    The temporary file is created with ``mode`` from the start: a private key is never readable
    by others, not even for an instant.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cert(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid certificate: {exc}") from None


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else ""


def _sans_of(extensions: x509.Extensions) -> list[str]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]


def _general_names(sans: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for san in dict.fromkeys(sans):  # dedupe, keep order
        if not san:
            raise ValueError("invalid SAN: empty")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
            continue
        except ValueError:
            pass
        if not san.isascii() or any(c.isspace() for c in san):
            raise ValueError(f"invalid SAN {san!r}: not an IP address or ASCII DNS name")
        names.append(x509.DNSName(san))
    return names


def _subject(common_name: str, organization: str) -> x509.Name:
    if not common_name:
        raise ValueError("common name is required")
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


@dataclass
class CertInfo:
    """What the cluster reads out of a certificate."""

    common_name: str
    organization: str
    serial: str  # lowercase hex, no 0x
    not_before: datetime.datetime  # timezone-aware UTC
    not_after: datetime.datetime  # timezone-aware UTC
    public_key_sha256: str
    sans: list[str] = field(default_factory=list)


@dataclass
class CsrInfo:
    """What the cluster reads out of a (signature-checked) certificate signing request."""

    common_name: str
    organization: str
    public_key_sha256: str
    sans: list[str] = field(default_factory=list)


def cert_info(cert_pem: bytes) -> CertInfo:
    """Parse the first certificate of ``cert_pem``.

    Raises:
        ValueError: the PEM is not a certificate.
    """
    cert = _load_cert(cert_pem)
    return CertInfo(
        common_name=_name_attr(cert.subject, NameOID.COMMON_NAME),
        organization=_name_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        public_key_sha256=public_key_sha256(cert.public_key()),
        sans=_sans_of(cert.extensions),
    )


def make_csr(
    key: ec.EllipticCurvePrivateKey, common_name: str, organization: str, sans: Sequence[str] = ()
) -> bytes:
    """Build a PEM certificate signing request signed by ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(common_name, organization))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        valid = csr.is_signature_valid
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid CSR: {exc}") from None
    if not valid:
        raise ValueError("invalid CSR: bad signature")
    key = csr.public_key()
    # Only key types a TLS peer of ours can use; small RSA keys are refused outright.
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("invalid CSR: RSA key shorter than 2048 bits")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("invalid CSR: key must be EC or RSA")
    return csr


def csr_info(csr_pem: bytes) -> CsrInfo:
    """Parse a CSR and check its signature (proof that the requester holds the private key).

    Raises:
        ValueError: the PEM is not a CSR, its signature is bad or its key type is not accepted.
    """
    csr = _load_csr(csr_pem)
    return CsrInfo(
        common_name=_name_attr(csr.subject, NameOID.COMMON_NAME),
        organization=_name_attr(csr.subject, NameOID.ORGANIZATION_NAME),
        public_key_sha256=public_key_sha256(csr.public_key()),
        sans=_sans_of(csr.extensions),
    )


class CertificateAuthority:
    """The cluster CA: signs node, admin, master and server certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if public_key_sha256(cert.public_key()) != public_key_sha256(key.public_key()):
            raise ValueError("CA certificate and key do not match")
        self._cert = cert
        self._key = key
        self.cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
        self.sha256: str = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        self._ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())

    @classmethod
    def create(cls) -> CertificateAuthority:
        """Create a new self-signed CA in memory (CN ``pykube-ca@<unix time>``, 10 years)."""
        key = generate_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pykube-ca@{int(time.time())}")])
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(seconds=CA_LIFETIME_SECONDS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load_or_create(cls, pki_dir: Path) -> CertificateAuthority:
        """Load ``ca.crt``/``ca.key`` from ``pki_dir``, or create and write them (key 0600, dir 0700).

        Raises:
            ValueError: only one of the two files exists, or they do not parse or match: the
                operator must look, never silently get a new CA that orphans every node.
        """
        pki_dir = Path(pki_dir)
        cert_path, key_path = pki_dir / CA_CERT_FILE, pki_dir / CA_KEY_FILE
        if cert_path.exists() or key_path.exists():
            if not (cert_path.exists() and key_path.exists()):
                raise ValueError(f"incomplete CA in {pki_dir}: need both {CA_CERT_FILE} and {CA_KEY_FILE}")
            ca = cls(_load_cert(cert_path.read_bytes()), load_key(key_path.read_bytes()))
            log.info("loaded CA dir=%s sha256=%s", pki_dir, ca.sha256)
            return ca
        if not pki_dir.exists():
            pki_dir.mkdir(parents=True, mode=0o700)
            pki_dir.chmod(0o700)  # mkdir's mode is masked by the umask
        ca = cls.create()
        # Key first: a crash between the two leaves an incomplete CA that is refused, never a
        # certificate without its key that would look valid.
        atomic_write(key_path, key_to_pem(ca._key), 0o600)
        atomic_write(cert_path, ca.cert_pem, 0o644)
        log.info("created CA dir=%s sha256=%s", pki_dir, ca.sha256)
        return ca

    def _sign(
        self,
        public_key,
        *,
        common_name: str,
        organization: str,
        sans: Sequence[str],
        lifetime_seconds: float,
        server: bool,
        client: bool,
    ) -> bytes:
        if lifetime_seconds <= 0:
            raise ValueError("certificate lifetime must be positive")
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        if not usages:
            raise ValueError("a certificate needs server or client usage")
        now = datetime.datetime.now(datetime.UTC)
        # A leaf never outlives its CA: verifiers would reject the tail end anyway.
        not_after = min(now + datetime.timedelta(seconds=lifetime_seconds), self._cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_subject(common_name, organization))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(sans)), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        log.info(
            "signed certificate cn=%s o=%s serial=%x not_after=%s",
            common_name,
            organization,
            cert.serial_number,
            not_after.isoformat(),
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        common_name: str,
        organization: str,
        sans: Sequence[str],
        lifetime_seconds: float,
        server: bool = True,
        client: bool = True,
    ) -> bytes:
        """Sign the public key of a CSR with a subject and SANs chosen by the caller.

        The CSR's own subject and SANs are ignored; its signature must be valid.

        Returns:
            The certificate PEM.

        Raises:
            ValueError: bad CSR (see ``csr_info``), bad SAN, non-positive lifetime, no usage.
        """
        csr = _load_csr(csr_pem)
        return self._sign(
            csr.public_key(),
            common_name=common_name,
            organization=organization,
            sans=sans,
            lifetime_seconds=lifetime_seconds,
            server=server,
            client=client,
        )

    def issue(
        self,
        common_name: str,
        organization: str,
        sans: Sequence[str],
        lifetime_seconds: float,
        server: bool = True,
        client: bool = True,
    ) -> tuple[bytes, bytes]:
        """Generate a key and sign a certificate for it.

        Returns:
            ``(key_pem, cert_pem)``.
        """
        key = generate_key()
        cert_pem = self._sign(
            key.public_key(),
            common_name=common_name,
            organization=organization,
            sans=sans,
            lifetime_seconds=lifetime_seconds,
            server=server,
            client=client,
        )
        return key_to_pem(key), cert_pem
