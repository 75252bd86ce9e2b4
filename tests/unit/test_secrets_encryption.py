"""Secrets encrypted at rest (pymaster.store.encryption): the transformer alone, then the real
master: the database files never hold a Secret's plaintext, a restart reads Secrets back, and a
wrong, missing or broken key stops the start with a message saying so."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import pytest
from master_fixtures import Resources, admin_channel, start_master

from pymaster.api import objects_pb2
from pymaster.main import main as pymaster_main
from pymaster.store.encryption import PREFIX, EncryptionError, SecretEncryption, key_name

PLAINTEXT = "correct-horse-battery-staple-0451"


def loaded(path: Path) -> SecretEncryption:
    encryption = SecretEncryption(path)
    encryption.load()
    encryption.ensure_key()
    return encryption


def test_secrets_are_sealed_with_a_prefix_naming_the_key_and_other_kinds_are_not(tmp_path: Path) -> None:
    encryption = loaded(tmp_path / "encryption-key")
    sealed = encryption.to_storage("secrets", "default", "db", PLAINTEXT.encode())
    assert sealed.startswith(PREFIX + encryption.key_name.encode() + b":")
    assert PLAINTEXT.encode() not in sealed
    twice = {encryption.to_storage("secrets", "default", "db", b"x") for _ in range(2)}
    assert len(twice) == 2  # a fresh nonce each time
    assert encryption.from_storage("secrets", "default", "db", sealed) == PLAINTEXT.encode()
    assert encryption.to_storage("configmaps", "default", "db", b"plain") == b"plain"
    assert encryption.from_storage("pods", "default", "db", b"plain") == b"plain"


def test_the_key_file_is_32_random_bytes_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "encryption-key"
    first = loaded(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = base64.b64decode(path.read_text().strip(), validate=True)
    assert len(key) == 32 and first.key_name == key_name(key)
    assert loaded(path).key_name == first.key_name


def test_a_sealed_value_opens_only_with_its_key_and_in_its_place(tmp_path: Path) -> None:
    encryption = loaded(tmp_path / "a")
    sealed = encryption.to_storage("secrets", "default", "db", b"v")
    with pytest.raises(EncryptionError, match=r"^secrets default/other does not decrypt with key key-"):
        encryption.from_storage("secrets", "default", "other", sealed)  # copied to another row
    other = loaded(tmp_path / "b")
    wrong = rf"is encrypted with key {encryption.key_name}, but .*/b holds key"
    with pytest.raises(EncryptionError, match=wrong):
        other.from_storage("secrets", "default", "db", sealed)
    with pytest.raises(EncryptionError, match="is stored unencrypted"):
        encryption.from_storage("secrets", "default", "db", b"\x0a\x02v1")
    missing = SecretEncryption(tmp_path / "missing")
    missing.load()
    with pytest.raises(EncryptionError, match=r"/missing is missing: restore it"):
        missing.from_storage("secrets", "default", "db", sealed)


@pytest.mark.parametrize("content", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_broken_key_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "encryption-key"
    path.write_text(content)
    with pytest.raises(EncryptionError, match=r"encryption-key: not an encryption key \(expected 32 bytes"):
        SecretEncryption(path).load()


def raw_files(data_dir: Path) -> bytes:
    """Every byte SQLite wrote: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("pykube.db*")) if p.is_file())


async def store_secret(data_dir: Path) -> None:
    app = await start_master(data_dir)
    try:
        async with admin_channel(app) as channel:
            resources = Resources(channel)
            s = objects_pb2.Secret(string_data={"password": PLAINTEXT})
            s.metadata.name = "db"
            await resources.create(s)
            updated = objects_pb2.Secret(string_data={"password": PLAINTEXT, "again": PLAINTEXT + "!"})
            updated.metadata.name = "db"
            await resources.update(updated)
            cm = objects_pb2.ConfigMap(data={"visible": "config-value-in-clear"})
            cm.metadata.name = "cfg"
            await resources.create(cm)
            assert raw_files(data_dir), "the store wrote nothing yet"
            assert PLAINTEXT.encode() not in raw_files(data_dir)
    finally:
        await app.stop()


async def test_the_database_never_holds_a_secret_in_clear_and_a_restart_reads_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await store_secret(data_dir)
    raw = raw_files(data_dir)
    assert PLAINTEXT.encode() not in raw and base64.b64encode(PLAINTEXT.encode()) not in raw
    assert PREFIX in raw
    assert b"config-value-in-clear" in raw  # ConfigMaps are not encrypted: the check can fail
    assert stat.S_IMODE((data_dir / "encryption-key").stat().st_mode) == 0o600
    app = await start_master(data_dir)
    try:
        async with admin_channel(app) as channel:
            read = await Resources(channel).get("secrets", "db")
        assert dict(read.data) == {"password": PLAINTEXT.encode(), "again": (PLAINTEXT + "!").encode()}
    finally:
        await app.stop()


async def assert_start_fails(data_dir: Path, message: str) -> None:
    app = None
    with pytest.raises(EncryptionError, match=message):
        app = await start_master(data_dir)
    assert app is None


async def test_a_wrong_key_stops_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await store_secret(data_dir)
    key_file = data_dir / "encryption-key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    await assert_start_fails(
        data_dir,
        r"^secrets default/db is encrypted with key key-[0-9a-f]{8}, but .* holds key key-[0-9a-f]{8}: "
        r"wrong or replaced key file$",
    )


async def test_a_missing_key_stops_the_start_and_is_not_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await store_secret(data_dir)
    (data_dir / "encryption-key").unlink()
    await assert_start_fails(data_dir, r"encryption-key is missing: restore it from the backup")
    assert not (data_dir / "encryption-key").exists()  # never silently replaced by a new key


def test_pymaster_exits_saying_what_is_wrong_with_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    data_dir = tmp_path / "data"
    asyncio.run(store_secret(data_dir))
    (data_dir / "encryption-key").write_text("garbage\n")
    argv = ["--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"]
    assert pymaster_main(argv) == 1
    assert "pymaster failed to start" in caplog.text and "not an encryption key" in caplog.text
