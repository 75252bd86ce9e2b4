"""Encryption of Secrets at rest: the store's ``ValueTransformer`` that seals every Secret with
AES-GCM before it is written and opens it when the store loads, like kube-apiserver's ``aesgcm``
provider. Other kinds are written as they are.

The key: 32 random bytes, base64 on one line in ``<data-dir>/encryption-key`` (mode 0600, like
the CA key beside it), made at the master's first start. Back it up with the data dir: without it
the Secrets cannot be read.

A stored value is ``pykube:enc:aesgcm:v1:<key name>:`` + a 12-byte random nonce + the ciphertext
and its tag. The key name is ``key-`` and the first 8 hex digits of the key's SHA-256, so a value
says which key sealed it. The object's place in the store (kind, namespace, name) is the
authenticated data: a sealed value copied to another row does not open.

Failing loudly (``EncryptionError``, a ValueError: pymaster exits saying why, never serving with
Secrets it cannot read):
- a key file that is not 32 bytes of base64;
- a Secret sealed with another key than the file's (wrong file, or a replaced key);
- a Secret sealed while the key file is now missing: the key is made only once the store has
  loaded without meeting any sealed value (``load``, then the store's open, then ``ensure_key``);
- a Secret written in clear, or a value that does not open (tampered).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pymaster.api import pki
from pymaster.api.kinds import SECRETS

log = logging.getLogger(__name__)

KEY_FILE = "encryption-key"
KEY_BYTES = 32
NONCE_BYTES = 12
PREFIX = b"pykube:enc:aesgcm:v1:"
ENCRYPTED_KINDS = frozenset({SECRETS.resource})


class EncryptionError(ValueError):
    """A key file or a stored value that cannot be used; the message says which and why."""


def key_name(key: bytes) -> str:
    """The name a key is known by in stored values: ``key-`` + 8 hex digits of its SHA-256."""
    return "key-" + hashlib.sha256(key).hexdigest()[:8]


def read_key(path: Path) -> bytes:
    """The key in a key file.

    Raises:
        EncryptionError: the file does not hold 32 bytes of base64.
        OSError: the file cannot be read (FileNotFoundError when it is missing).
    """
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise EncryptionError(f"{path}: not an encryption key (expected {KEY_BYTES} bytes, base64, one line)")
    return key


class SecretEncryption:
    """The store's ValueTransformer for Secrets, with its key file.

    Args:
        path: The key file, ``<data-dir>/encryption-key``.
        kinds: The kinds sealed (Secrets).
    """

    def __init__(self, path: str | os.PathLike[str], kinds: Iterable[str] = ENCRYPTED_KINDS):
        self.path = Path(path)
        self._kinds = frozenset(kinds)
        self._key: bytes | None = None
        self._aead: AESGCM | None = None
        self._prefix = b""

    @property
    def key_name(self) -> str | None:
        """The name of the key in use (None before there is one)."""
        return key_name(self._key) if self._key is not None else None

    def load(self) -> None:
        """Reads the key file, if there is one (blocking: call off the event loop).

        Raises:
            EncryptionError: the file is not a key.
        """
        try:
            key = read_key(self.path)
        except FileNotFoundError:
            return
        self._use(key)
        log.info("encryption key loaded path=%s key=%s", self.path, self.key_name)

    def ensure_key(self) -> None:
        """Makes the key file (mode 0600) when there is none: after the store loaded, which
        proved that no sealed value needs a missing key (blocking: call off the event loop)."""
        if self._key is not None:
            return
        key = os.urandom(KEY_BYTES)
        pki.atomic_write(self.path, base64.b64encode(key) + b"\n", 0o600)
        self._use(key)
        log.info("encryption key created path=%s key=%s", self.path, self.key_name)

    def _use(self, key: bytes) -> None:
        self._key = key
        self._aead = AESGCM(key)
        self._prefix = PREFIX + key_name(key).encode() + b":"

    def to_storage(self, kind: str, namespace: str, name: str, data: bytes) -> bytes:
        """``data`` sealed when ``kind`` is encrypted, else as it is.

        Raises:
            EncryptionError: there is no key yet (``ensure_key`` was not called).
        """
        if kind not in self._kinds:
            return data
        if self._aead is None:
            raise EncryptionError(f"cannot store {kind} {namespace}/{name}: no encryption key loaded")
        nonce = os.urandom(NONCE_BYTES)
        return self._prefix + nonce + self._aead.encrypt(nonce, data, _context(kind, namespace, name))

    def from_storage(self, kind: str, namespace: str, name: str, stored: bytes) -> bytes:
        """The bytes of a stored value (opened when ``kind`` is encrypted).

        Raises:
            EncryptionError: naming the object and why it cannot be opened.
        """
        if kind not in self._kinds:
            return stored
        what = f"{kind} {namespace}/{name}"
        if not stored.startswith(PREFIX):
            raise EncryptionError(f"{what} is stored unencrypted; refusing it (the database was altered)")
        sealed_by, sep, rest = stored[len(PREFIX):].partition(b":")
        sealed_name = sealed_by.decode(errors="replace")
        if not sep:
            raise EncryptionError(f"{what}: malformed encrypted value")
        if self._aead is None:
            raise EncryptionError(
                f"{what} is encrypted with key {sealed_name}, but the key file {self.path} is missing: "
                "restore it from the backup of the data dir (without it the secrets cannot be read)"
            )
        if sealed_name != self.key_name:
            raise EncryptionError(
                f"{what} is encrypted with key {sealed_name}, but {self.path} holds key {self.key_name}: "
                "wrong or replaced key file"
            )
        nonce, ciphertext = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, _context(kind, namespace, name))
        except (InvalidTag, ValueError):
            altered = f"{what} does not decrypt with key {sealed_name}: the stored value was altered"
            raise EncryptionError(altered) from None


def _context(kind: str, namespace: str, name: str) -> bytes:
    """The authenticated data of a sealed value: where it is stored."""
    return f"/{kind}/{namespace}/{name}".encode()
