"""Client failover between several masters (``--server a,b`` / ``servers:``): two real masters
in-process started from copies of one ``pymaster init`` directory (one CA, one admin config),
each on its own SQLite store; the first is stopped and the client moves to the second: reads are
retried there, a create is retried only when it never reached a master, a stream that had not
started is reopened there, one that had started raises Unavailable; plus the config format."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from master_fixtures import start_master

from pykubelet.config import default_join_server, parse_servers
from pymaster.api import errors, objects_pb2
from pymaster.api.clientconfig import ClientConfig, dump_config, load_config, save_config
from pymaster.app import MasterApp
from pymaster.client import BootstrapClient, Client
from pymaster.main import init_data_dir
from pymaster.server.tls import ADMIN_CONFIG


def _pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = "default"
    container = pod.spec.containers.add()
    container.name, container.image = "c", "pykube/busybox:1.35"
    return pod


@pytest.fixture
async def masters(tmp_path) -> AsyncIterator[list[MasterApp]]:
    init_data_dir(str(tmp_path / "shared"), [], "127.0.0.1:6443")
    apps = []
    for name in ("m1", "m2"):
        shutil.copytree(tmp_path / "shared", tmp_path / name)
        apps.append(await start_master(tmp_path / name))
    yield apps
    for app in apps:
        await app.stop()


@pytest.fixture
async def client(masters, tmp_path) -> AsyncIterator[Client]:
    config = load_config(tmp_path / "shared" / ADMIN_CONFIG)
    async with Client(",".join(m.address for m in masters), config=config, timeout=5) as c:
        yield c


async def test_reads_move_to_the_next_master(masters, client):
    m1, m2 = masters
    assert client.server == m1.address
    await client.list_pods()
    await m1.stop()
    assert (await client.list_pods()).items == []  # m2's store, reached after the failover
    assert client.server == m2.address
    await client.create_pod(_pod("p"))
    assert (await client.get_pod("p")).metadata.name == "p"


async def test_create_moves_on_when_the_master_cannot_be_reached(masters, client):
    m1, m2 = masters
    await m1.stop()
    created = await client.create_pod(_pod("web"))
    assert created.metadata.uid and client.server == m2.address


async def test_a_stream_that_had_not_started_is_reopened_on_the_next_master(masters, client):
    m1, m2 = masters
    await m1.stop()
    await client.create_pod(_pod("seen"))
    watch = client.watch_pods()
    event = await anext(watch)
    assert event.object.metadata.name == "seen"
    await watch.aclose()


async def test_a_stream_that_had_started_raises_unavailable_and_the_next_call_moves(masters, client):
    m1, m2 = masters
    await client.create_pod(_pod("on-m1"))
    watch = client.watch_pods()
    assert (await anext(watch)).object.metadata.name == "on-m1"
    await m1.stop()
    with pytest.raises(errors.Unavailable):
        async for _ in watch:  # the pod's updates before the stop, then the error
            pass
    assert client.server == m2.address
    assert (await client.list_pods()).items == []


async def test_one_server_unavailable_is_raised(masters, tmp_path):
    m1, _ = masters
    async with Client(m1.address, config=load_config(tmp_path / "shared" / ADMIN_CONFIG), timeout=5) as c:
        await m1.stop()
        with pytest.raises(errors.Unavailable):
            await c.list_pods()
        assert c.server == m1.address


def test_servers_in_the_config(tmp_path):
    init_data_dir(str(tmp_path / "d"), [], "a:6443,b:6443")
    cfg = load_config(tmp_path / "d" / ADMIN_CONFIG)
    assert (cfg.server, cfg.servers) == ("a:6443", ["a:6443", "b:6443"])
    assert "servers:\n- a:6443\n- b:6443\n" in dump_config(cfg)
    single = ClientConfig("c:6443", cfg.ca_pem, cfg.cert_pem, cfg.key_pem)
    assert single.servers == ["c:6443"] and "server: c:6443\n" in dump_config(single)
    save_config(tmp_path / "x.yaml", single)
    assert load_config(tmp_path / "x.yaml") == single
    listed = "servers:\n- a:6443\n- b:6443\n"
    text = (tmp_path / "d" / ADMIN_CONFIG).read_text().replace(listed, "servers: a\n")
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match="servers: must be a list of HOST:PORT strings"):
        load_config(tmp_path / "bad.yaml")


async def test_join_port_client_moves_to_the_next_master(masters):
    m1, m2 = masters
    await m1.stop()
    async with BootstrapClient(f"{m1.join_address},{m2.join_address}", timeout=5) as bootstrap:
        assert await bootstrap.get_ca() == m2.pki.ca.cert_pem
        assert bootstrap.server == m2.join_address


def test_agent_server_flag_takes_several_masters():
    assert default_join_server("10.0.0.1:6443, 10.0.0.2:7443") == "10.0.0.1:6444,10.0.0.2:7444"
    with pytest.raises(ValueError, match="--server: expected HOST:PORT, got 'b'"):
        parse_servers("a:1,b", "--server")
