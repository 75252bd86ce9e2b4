"""The cluster PKI: keys, CSRs, the file-backed CA and the certificates it signs."""

import datetime
import hashlib
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pymaster.api import pki

DAY = 24 * 3600


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_key_round_trip():
    key = pki.generate_key()
    assert isinstance(key.curve, ec.SECP256R1)
    loaded = pki.load_key(pki.key_to_pem(key))
    assert pki.public_key_sha256(loaded.public_key()) == pki.public_key_sha256(key.public_key())


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key",
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    ],
)
def test_load_key_rejects(pem):
    with pytest.raises(ValueError, match="invalid private key"):
        pki.load_key(pem)


def test_node_common_name():
    assert pki.node_common_name("worker-1") == "system:node:worker-1"


def test_csr_info_round_trip():
    key = pki.generate_key()
    csr = pki.make_csr(key, "system:node:n1", pki.NODES_GROUP, ["n1", "10.0.0.5", "::1"])
    info = pki.csr_info(csr)
    assert (info.common_name, info.organization) == ("system:node:n1", "system:nodes")
    assert info.public_key_sha256 == pki.public_key_sha256(key.public_key())
    assert info.sans == ["n1", "10.0.0.5", "::1"]


def test_csr_info_rejects_garbage():
    with pytest.raises(ValueError, match="invalid CSR"):
        pki.csr_info(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


def test_csr_info_rejects_bad_signature():
    # Sign with one key but claim another's public key: the signature no longer verifies.
    key, other = pki.generate_key(), pki.generate_key()
    csr = pki.make_csr(key, "x", "")
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub, pub2 = key.public_key().public_bytes(*spki), other.public_key().public_bytes(*spki)
    i = der.find(pub)
    der[i : i + len(pub)] = pub2
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="bad signature"):
        pki.csr_info(tampered)


def test_csr_info_rejects_small_rsa():
    key = rsa.generate_private_key(65537, 1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(ValueError, match="2048"):
        pki.csr_info(csr)


def test_ca_certificate(ca):
    cert = _cert(ca.cert_pem)
    assert cert.version == x509.Version.v3
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("pykube-ca@")
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime > datetime.timedelta(days=3649)
    assert ca.sha256 == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert ca.sha256 == pki.cert_sha256(ca.cert_pem)
    cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize(
    ("server", "client", "usages"),
    [
        (True, True, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        (True, False, [ExtendedKeyUsageOID.SERVER_AUTH]),
        (False, True, [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_issue_leaf(ca, server, client, usages):
    before = datetime.datetime.now(datetime.UTC)
    key_pem, cert_pem = ca.issue(
        "system:node:n1", pki.NODES_GROUP, ["n1", "192.168.1.7", "::1"], 30 * DAY, server, client
    )
    cert = _cert(cert_pem)
    cert.verify_directly_issued_by(_cert(ca.cert_pem))
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.168.1.7"),
        ipaddress.ip_address("::1"),
    ]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = _cert(ca.cert_pem).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())

    info = pki.cert_info(cert_pem)
    assert (info.common_name, info.organization) == ("system:node:n1", "system:nodes")
    assert info.serial == format(cert.serial_number, "x")
    assert info.sans == ["n1", "192.168.1.7", "::1"]
    assert info.public_key_sha256 == pki.public_key_sha256(pki.load_key(key_pem).public_key())
    assert info.not_before.tzinfo is not None
    # Backdated for clock skew; lifetime as asked (seconds precision).
    assert before - info.not_before >= datetime.timedelta(minutes=4)
    assert abs(info.not_after - (before + datetime.timedelta(days=30))) < datetime.timedelta(seconds=5)


def test_sign_csr_uses_ca_chosen_subject(ca):
    key = pki.generate_key()
    csr = pki.make_csr(key, "admin", pki.MASTERS_GROUP, ["evil.example"])  # the CSR asks for too much
    cert_pem = ca.sign_csr(
        csr, common_name="system:node:n2", organization=pki.NODES_GROUP, sans=["n2"], lifetime_seconds=DAY
    )
    info = pki.cert_info(cert_pem)
    assert (info.common_name, info.organization, info.sans) == ("system:node:n2", "system:nodes", ["n2"])
    assert info.public_key_sha256 == pki.public_key_sha256(key.public_key())


def test_leaf_never_outlives_ca(ca):
    _, cert_pem = ca.issue("admin", pki.MASTERS_GROUP, [], 100 * 365 * DAY)
    assert pki.cert_info(cert_pem).not_after == _cert(ca.cert_pem).not_valid_after_utc


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lifetime_seconds": 0}, "lifetime"),
        ({"server": False, "client": False}, "usage"),
        ({"sans": [""]}, "SAN"),
        ({"sans": ["bad name"]}, "SAN"),
        ({"sans": ["bücher.example"]}, "SAN"),
        ({"common_name": ""}, "common name"),
    ],
)
def test_issue_rejects(ca, kwargs, message):
    args = {
        "common_name": "admin",
        "organization": pki.MASTERS_GROUP,
        "sans": [],
        "lifetime_seconds": DAY,
        "server": True,
        "client": True,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        ca.issue(**args)


def test_cert_info_rejects_garbage():
    with pytest.raises(ValueError, match="invalid certificate"):
        pki.cert_info(b"nope")


def test_load_or_create_persists(tmp_path):
    pki_dir = tmp_path / "data" / "pki"
    ca = pki.CertificateAuthority.load_or_create(pki_dir)
    assert stat.S_IMODE(pki_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((pki_dir / "ca.key").stat().st_mode) == 0o600
    assert (pki_dir / "ca.crt").read_bytes() == ca.cert_pem
    assert sorted(p.name for p in pki_dir.iterdir()) == ["ca.crt", "ca.key"]  # no temp files left

    again = pki.CertificateAuthority.load_or_create(pki_dir)
    assert again.sha256 == ca.sha256
    # The reloaded CA signs certificates that chain to the original one.
    _, cert_pem = again.issue("admin", pki.MASTERS_GROUP, [], DAY)
    _cert(cert_pem).verify_directly_issued_by(_cert(ca.cert_pem))


def test_load_or_create_refuses_incomplete(tmp_path):
    pki.CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(ValueError, match="incomplete CA"):
        pki.CertificateAuthority.load_or_create(tmp_path)


def test_load_or_create_refuses_mismatched_key(tmp_path):
    pki.CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca.key").write_bytes(pki.key_to_pem(pki.generate_key()))
    with pytest.raises(ValueError, match="do not match"):
        pki.CertificateAuthority.load_or_create(tmp_path)


def test_atomic_write_mode_and_content(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    pki.atomic_write(target, b"new", 0o640)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
