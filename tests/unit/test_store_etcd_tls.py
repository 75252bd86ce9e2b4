"""The etcd store over TLS (``--etcd-cafile/--etcd-certfile/--etcd-keyfile``): a real etcd that
serves its clients only over TLS with client certificates required; the store with the right
files reads and writes, one without a client certificate is refused."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from pymaster.api.errors import ApiError
from pymaster.api.pki import CertificateAuthority
from pymaster.store import open_store
from pymaster.store.etcd_client import EtcdTLS
from tests.etcd_fixture import ETCD, free_port
from tests.unit.test_store_contract import make_pod


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


async def _opened(url: str, tls: EtcdTLS, timeout: float = 20.0):
    """The store, opened once etcd answers (it takes a moment to start)."""
    async with asyncio.timeout(timeout):
        while True:
            store = open_store(url, etcd_tls=tls)
            try:
                await store.open()
                return store
            except (ApiError, OSError):
                await store.close()
                await asyncio.sleep(0.2)


async def test_the_store_speaks_tls_to_etcd_with_a_client_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    server_key, server_cert = ca.issue("etcd", "etcd", ["127.0.0.1"], 3600, server=True, client=False)
    client_key, client_cert = ca.issue("pymaster", "masters", [], 3600, server=False, client=True)
    ca_file = _write(tmp_path / "ca.pem", ca.cert_pem)
    client_port, peer_port = free_port(), free_port()
    url, peer = f"https://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    process = subprocess.Popen(
        [ETCD, "--name", "tls", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"tls={peer}", "--log-level", "warn", "--logger", "zap",
         "--cert-file", _write(tmp_path / "server.pem", server_cert),
         "--key-file", _write(tmp_path / "server-key.pem", server_key),
         "--trusted-ca-file", ca_file, "--client-cert-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        tls = EtcdTLS(ca_file, _write(tmp_path / "client.pem", client_cert),
                      _write(tmp_path / "client-key.pem", client_key))
        store = await _opened(f"etcd://127.0.0.1:{client_port}", tls)
        try:
            created = await store.create("pods", make_pod("web"))
            assert store.get("pods", "default", "web") == created
        finally:
            await store.close()
        # Without a client certificate etcd refuses the connection.
        bare = open_store(f"etcd://127.0.0.1:{client_port}", etcd_tls=EtcdTLS(ca_file))
        with pytest.raises(ApiError):
            await asyncio.wait_for(bare.open(), 20)
        await bare.close()
    finally:
        process.kill()
        process.wait()
