"""Only the master can answer as the master: a node certificate (from a real join, asking for the
master's addresses and names) serving on the master's address is refused by pyctl's client and
by agents, and node names that are names of the master cannot join. Real TLS, real master app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from pymaster.api import errors, objects_pb2, pki, services_pb2_grpc, tokens
from pymaster.api.clientconfig import ClientConfig, load_config
from pymaster.api.kinds import wrap
from pymaster.app import MasterApp
from pymaster.client import BootstrapClient, Client

# What an attacker's CSR asks for: every address and name a client might dial the master by.
MASTER_LIKE_SANS = ["127.0.0.1", "::1", "localhost", "pymaster", "kubernetes.default.svc"]


class _RogueResources(services_pb2_grpc.ResourcesServicer):
    """Answers every List with a node that does not exist: proof that the rogue was believed."""

    async def List(self, request, context):  # noqa: N802 (gRPC method name)
        node = objects_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = "planted-by-the-rogue"
        return objects_pb2.ObjectList(items=[wrap(node)])


async def join(master: MasterApp, name: str) -> tuple[bytes, bytes]:
    """Joins ``name`` with the master's token, asking for the master's SANs; (key, cert) PEM."""
    key = pki.generate_key()
    csr = pki.make_csr(key, pki.node_common_name(name), pki.NODES_GROUP, MASTER_LIKE_SANS)
    token = master.pki.token
    async with BootstrapClient(master.join_address) as bootstrap:
        reply = await bootstrap.join(name, csr, tokens.join_proof(token.secret, name, csr))
    return pki.key_to_pem(key), reply.certificate_pem


@pytest.fixture
async def rogue(master: MasterApp) -> AsyncIterator[str]:
    """A server on 127.0.0.1 presenting a node certificate of ``master``'s CA."""
    key_pem, cert_pem = await join(master, "evil")
    server = grpc.aio.server()
    services_pb2_grpc.add_ResourcesServicer_to_server(_RogueResources(), server)
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_node_certificates_carry_only_the_node_name(master: MasterApp) -> None:
    _, cert_pem = await join(master, "n1")
    assert pki.cert_info(cert_pem).sans == ["n1"]


async def test_the_admin_client_refuses_a_node_certificate_as_the_master(master: MasterApp, rogue: str):
    admin = load_config(master.admin_config_path)
    async with Client(master.address, config=admin, timeout=5) as client:
        assert [n.metadata.name for n in (await client.list_nodes()).items] == []  # the real master
    async with Client(rogue, config=admin, timeout=5) as client:
        with pytest.raises(errors.Unavailable):
            await client.list_nodes()


async def test_an_agent_refuses_a_node_certificate_as_the_master(master: MasterApp, rogue: str) -> None:
    key_pem, cert_pem = await join(master, "n2")
    node = ClientConfig(server=rogue, ca_pem=master.pki.ca.cert_pem, cert_pem=cert_pem, key_pem=key_pem)
    async with Client(rogue, config=node, timeout=5) as client:
        with pytest.raises(errors.Unavailable):
            await client.list_nodes()


@pytest.mark.parametrize("name", [
    "pymaster", "kubernetes", "kubernetes.default.svc.cluster.local", "localhost",
])
async def test_names_of_the_master_cannot_join(master: MasterApp, name: str) -> None:
    with pytest.raises(errors.ValidationError, match="is a name of the master"):
        await join(master, name)


async def test_a_tls_san_of_the_master_cannot_join(tmp_path) -> None:
    master = MasterApp(tmp_path, "127.0.0.1:0", "127.0.0.1:0", tls_sans=["api.example.com"])
    await master.start()
    try:
        with pytest.raises(errors.ValidationError, match='"api.example.com" is a name of the master'):
            await join(master, "api.example.com")
    finally:
        await master.stop()
