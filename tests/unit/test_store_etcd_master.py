"""The master on etcd (``--store etcd://...``), in process against a real etcd on loopback: a
restart loses nothing and resumes, Secrets reach etcd sealed, and two masters on one etcd serve each
other's writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aetcd
import pytest
from master_fixtures import Resources, admin_channel, start_master

from pymaster.api import objects_pb2
from pymaster.store.encryption import PREFIX as SEALED_PREFIX
from pymaster.store.etcd import PREFIX
from tests.etcd_fixture import EtcdCluster, running_etcd

DEADLINE = 10.0


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    with running_etcd() as cluster:
        yield cluster


@pytest.fixture
async def etcd(etcd_cluster: EtcdCluster) -> EtcdCluster:
    """The module's etcd, emptied: every test's master has its own encryption key."""
    host, port = etcd_cluster.members[0].endpoint.rsplit(":", 1)
    async with aetcd.Client(host=host, port=int(port)) as client:
        await client.delete_range(PREFIX, PREFIX[:-1] + b"0")
    return etcd_cluster


async def etcd_value(cluster: EtcdCluster, key: bytes) -> bytes | None:
    host, port = cluster.members[0].endpoint.rsplit(":", 1)
    async with aetcd.Client(host=host, port=int(port)) as client:
        got = await client.get(key)
        return None if got is None else got.value


def pod(name: str) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = name
    p.spec.containers.add(name="c", image="pykube/busybox:1.35")
    return p


async def test_master_restart_on_etcd_keeps_everything_and_seals_secrets(etcd: EtcdCluster, tmp_path) -> None:
    data_dir = tmp_path / "data"
    app = await start_master(data_dir, store_url=etcd.url)
    try:
        async with admin_channel(app) as channel:
            resources = Resources(channel)
            secret = objects_pb2.Secret(string_data={"password": "etcd-plaintext-pw"})
            secret.metadata.name = "db"
            await resources.create(secret)
            await resources.create(pod("web"))
        last = app.store.get("pods", "default", "web")
    finally:
        await app.stop()
    sealed = await etcd_value(etcd, PREFIX + b"secrets/default/db")
    assert sealed is not None and sealed.startswith(SEALED_PREFIX) and b"etcd-plaintext-pw" not in sealed

    app = await start_master(data_dir, store_url=etcd.url)
    try:
        async with admin_channel(app) as channel:
            resources = Resources(channel)
            assert (await resources.get("secrets", "db")).data["password"] == b"etcd-plaintext-pw"
            again = await resources.get("pods", "web")
            # The new master's scheduler may have written to it since: same object, same or later.
            assert (again.metadata.uid, again.spec) == (last.metadata.uid, last.spec)
            assert int(again.metadata.resource_version) >= int(last.metadata.resource_version)
    finally:
        await app.stop()


async def test_two_masters_on_one_etcd_serve_each_others_writes(etcd: EtcdCluster, tmp_path) -> None:
    # One data dir: the same PKI and encryption key (how HA masters share them is `pymaster init`).
    first = await start_master(tmp_path / "data", store_url=etcd.url)
    second = await start_master(tmp_path / "data", store_url=etcd.url)
    try:
        async with admin_channel(first) as one, admin_channel(second) as two:
            created = await Resources(one).create(pod("shared"))
            async with asyncio.timeout(DEADLINE):
                while second.store.current_rv < int(created.metadata.resource_version):
                    await asyncio.sleep(0.01)
            seen = await Resources(two).get("pods", "shared")
            assert seen.metadata.uid == created.metadata.uid
    finally:
        await second.stop()
        await first.stop()
