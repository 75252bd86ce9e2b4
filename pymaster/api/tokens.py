"""Join tokens (``PK10<ca-sha256-hex>::<secret>``) and the HMAC join proof.

The token carries two things a new node needs: the SHA-256 of the CA certificate's DER, so the
agent can trust the CA it fetches over the plaintext bootstrap port (k3s' token-hash idea), and a
shared secret. The secret never travels: Join sends HMAC-SHA256(secret, "pykube-join\\0" + node
name + "\\0" + CSR PEM), which binds the proof to one node name and one key, so a captured proof
cannot be replayed for another node or another key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pymaster.api.pki import atomic_write

log = logging.getLogger(__name__)

TOKEN_PREFIX = "PK10"
_SEPARATOR = "::"
_PROOF_CONTEXT = b"pykube-join\0"
_CA_SHA256 = re.compile(r"[0-9a-f]{64}")
# Printable ASCII without whitespace; at least 16 characters so a typo'd stub cannot be a secret.
_SECRET = re.compile(r"[!-~]{16,256}")


@dataclass(frozen=True)
class JoinToken:
    """A parsed join token. ``repr`` hides the secret so the token can be logged safely."""

    ca_sha256: str
    secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}{self.ca_sha256}{_SEPARATOR}{self.secret}"

    @classmethod
    def new(cls, ca_sha256: str) -> JoinToken:
        """A token for the CA with fingerprint ``ca_sha256`` and a fresh 32-byte random secret."""
        return cls(ca_sha256=ca_sha256.lower(), secret=secrets.token_hex(32))

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        """Parse ``PK10<ca-sha256-hex>::<secret>`` (surrounding whitespace ignored).

        Raises:
            ValueError: "invalid join token: ..." (the message never contains the secret).
        """
        text = text.strip()
        if not text.startswith(TOKEN_PREFIX):
            raise ValueError(f"invalid join token: must start with {TOKEN_PREFIX}")
        ca_sha256, sep, secret = text[len(TOKEN_PREFIX) :].partition(_SEPARATOR)
        if not sep:
            raise ValueError(f"invalid join token: missing {_SEPARATOR!r} separator")
        ca_sha256 = ca_sha256.lower()
        if not _CA_SHA256.fullmatch(ca_sha256):
            raise ValueError("invalid join token: CA hash must be 64 hex digits")
        if not _SECRET.fullmatch(secret):
            raise ValueError("invalid join token: secret must be 16-256 printable characters")
        return cls(ca_sha256=ca_sha256, secret=secret)

    def matches_ca(self, ca_pem_sha256: str) -> bool:
        """Whether a CA fingerprint (hex SHA-256 of its DER) is the one this token pins."""
        return hmac.compare_digest(self.ca_sha256, ca_pem_sha256.lower())


def load_or_create_token(path: Path, ca_sha256: str) -> JoinToken:
    """Read the token file at ``path``, or write a new token (mode 0600) for this CA.

    A token for another CA (the CA was replaced) is replaced too: it could never work.

    Raises:
        ValueError: the file exists but is not a valid token.
    """
    path = Path(path)
    if path.exists():
        token = JoinToken.parse(path.read_text())
        if token.matches_ca(ca_sha256):
            return token
        log.warning("join token pins another CA, replacing path=%s", path)
    token = JoinToken.new(ca_sha256)
    atomic_write(path, (str(token) + "\n").encode(), 0o600)
    log.info("wrote join token path=%s", path)
    return token


def join_proof(secret: str, node_name: str, csr_pem: bytes) -> bytes:
    """HMAC-SHA256 proof that the sender knows ``secret``, bound to ``node_name`` and ``csr_pem``."""
    msg = _PROOF_CONTEXT + node_name.encode() + b"\0" + csr_pem
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()


def verify_join_proof(secret: str, node_name: str, csr_pem: bytes, proof: bytes) -> bool:
    """Check a join proof in constant time."""
    return hmac.compare_digest(join_proof(secret, node_name, csr_pem), proof)
