"""Join tokens: format, parsing errors, the HMAC proof and the token file."""

import hashlib
import hmac
import stat

import pytest

from pymaster.api import tokens
from pymaster.api.tokens import JoinToken

CA = "ab" * 32
SECRET = "0123456789abcdef" * 4


def test_round_trip():
    token = JoinToken.new(CA)
    assert str(token).startswith("PK10" + CA + "::")
    assert len(token.secret) == 64
    assert JoinToken.parse(str(token)) == token
    assert JoinToken.parse(f"  {token}\n") == token


def test_new_secrets_differ():
    assert JoinToken.new(CA).secret != JoinToken.new(CA).secret


def test_repr_hides_secret():
    token = JoinToken(CA, SECRET)
    assert SECRET not in repr(token)
    assert SECRET in str(token)


def test_parse_lowercases_ca_hash():
    assert JoinToken.parse(f"PK10{CA.upper()}::{SECRET}").ca_sha256 == CA


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with PK10"),
        (f"K10{CA}::{SECRET}", "must start with PK10"),
        (f"PK10{CA}{SECRET}", "separator"),
        (f"PK10{CA[:-1]}::{SECRET}", "64 hex"),
        (f"PK10{'zz' * 32}::{SECRET}", "64 hex"),
        (f"PK10{CA}::", "secret"),
        (f"PK10{CA}::short", "secret"),
        (f"PK10{CA}::has space in the secret", "secret"),
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(ValueError, match=f"^invalid join token: .*{message}") as info:
        JoinToken.parse(text)
    assert "0123456789abcdef" not in str(info.value)


def test_matches_ca():
    token = JoinToken(CA, SECRET)
    assert token.matches_ca(CA)
    assert token.matches_ca(CA.upper())
    assert not token.matches_ca("cd" * 32)


def test_proof_matches_spec():
    expected = hmac.new(SECRET.encode(), b"pykube-join\0n1\0CSR", hashlib.sha256).digest()
    assert tokens.join_proof(SECRET, "n1", b"CSR") == expected


@pytest.mark.parametrize(
    ("secret", "node", "csr", "ok"),
    [
        (SECRET, "n1", b"CSR", True),
        ("x" * 64, "n1", b"CSR", False),  # wrong secret
        (SECRET, "n2", b"CSR", False),  # proof replayed for another node
        (SECRET, "n1", b"CSR2", False),  # proof replayed with another key
    ],
)
def test_verify_join_proof(secret, node, csr, ok):
    proof = tokens.join_proof(SECRET, "n1", b"CSR")
    assert tokens.verify_join_proof(secret, node, csr, proof) is ok


def test_verify_rejects_truncated_proof():
    proof = tokens.join_proof(SECRET, "n1", b"CSR")
    assert not tokens.verify_join_proof(SECRET, "n1", b"CSR", proof[:-1])


def test_load_or_create_token(tmp_path):
    path = tmp_path / "token"
    token = tokens.load_or_create_token(path, CA)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"{token}\n"
    assert tokens.load_or_create_token(path, CA) == token
    replaced = tokens.load_or_create_token(path, "cd" * 32)  # CA changed: the old token is useless
    assert replaced.ca_sha256 == "cd" * 32
    assert JoinToken.parse(path.read_text()) == replaced


def test_load_or_create_token_rejects_garbage(tmp_path):
    path = tmp_path / "token"
    path.write_text("garbage\n")
    with pytest.raises(ValueError, match="invalid join token"):
        tokens.load_or_create_token(path, CA)
