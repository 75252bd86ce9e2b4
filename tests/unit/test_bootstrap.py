"""Joining (pymaster.server.bootstrap): SANs, the failed-join throttle, identity bindings and the
Join servicer against a real store, without gRPC transport."""

from __future__ import annotations

import asyncio

import pytest

from pymaster.api import pki, services_pb2, tokens
from pymaster.api.errors import Forbidden, NotFound, ResourceExhausted, Unauthenticated, ValidationError
from pymaster.server.bootstrap import (
    MAX_FAILURE_DELAY,
    MAX_JOINS_PER_HOST,
    BootstrapServicer,
    JoinThrottle,
    NodeCertificates,
    failure_delay,
    peer_host,
)
from pymaster.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    "failures, delay",
    [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (1000, MAX_FAILURE_DELAY)],
)
def test_failure_delay(failures, delay):
    assert failure_delay(failures) == pytest.approx(delay)


@pytest.mark.parametrize(
    "peer, host",
    [
        ("ipv4:10.0.0.1:5000", "10.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),
        ("", ""),
    ],
)
def test_peer_host(peer, host):
    assert peer_host(peer) == host


async def test_throttle_delays_after_failures_and_forgets_on_success():
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    throttle = JoinThrottle(max_hosts=2, sleep=sleep)
    async with throttle.attempt("a"):
        throttle.failed("a")
    async with throttle.attempt("a"):
        throttle.failed("a")
    async with throttle.attempt("a"):
        throttle.succeeded("a")
    async with throttle.attempt("a"):
        pass
    assert delays == [0.1, 0.2]
    for host in ("b", "c", "d"):
        throttle.failed(host)
    assert (throttle.failures("b"), throttle.failures("d")) == (0, 1)  # at most 2 hosts remembered


async def test_throttle_serializes_attempts_of_a_failing_host():
    throttle = JoinThrottle(sleep=lambda seconds: asyncio.sleep(0))
    throttle.failed("a")
    running = 0
    most = 0

    async def attempt() -> None:
        nonlocal running, most
        async with throttle.attempt("a"):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(attempt() for _ in range(MAX_JOINS_PER_HOST)))
    assert most == 1


async def test_one_host_cannot_hold_every_join_slot():
    release = asyncio.Event()
    throttle = JoinThrottle(sleep=lambda seconds: release.wait())
    throttle.failed("flood")
    entered: list[str] = []

    async def attempt(host: str) -> None:
        async with throttle.attempt(host):
            entered.append(host)

    waiting = [asyncio.create_task(attempt("flood")) for _ in range(MAX_JOINS_PER_HOST)]
    async with asyncio.timeout(5):
        while throttle.in_flight("flood") < MAX_JOINS_PER_HOST:
            await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="too many joins in flight from flood"):
        await attempt("flood")  # refused at once, not queued behind the others
    await attempt("node-host")  # another host is not held up
    assert entered == ["node-host"]
    release.set()
    await asyncio.gather(*waiting)
    assert entered.count("flood") == MAX_JOINS_PER_HOST
    await attempt("flood")  # the slots are free again


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(tmp_path / "db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def ca():
    return pki.CertificateAuthority.create()


async def test_bind_and_check(store, ca):
    certificates = NodeCertificates(store, ca, 3600, clock=lambda: 1234.5)
    assert await certificates.bind("n1", "k1") is True
    assert await certificates.bind("n1", "k1") is False
    with pytest.raises(Forbidden, match="node name n1 is held by another identity"):
        await certificates.bind("n1", "k2")
    binding = store.get("identities", "", "n1")
    assert (binding.public_key_sha256, binding.metadata.creation_timestamp.seconds) == ("k1", 1234)
    certificates.check_bound("n1", "k1")
    with pytest.raises(Forbidden, match="a renewal keeps the key"):
        certificates.check_bound("n1", "k2")
    with pytest.raises(Unauthenticated):
        certificates.check_bound("n2", "k1")


class FakeContext:
    def peer(self) -> str:
        return "ipv4:10.1.1.1:4242"


def join_request(name: str, secret: str, key=None) -> services_pb2.JoinRequest:
    csr = pki.make_csr(key or pki.generate_key(), "whatever", "system:masters", ["evil", "10.1.1.1"])
    return services_pb2.JoinRequest(node_name=name, csr_pem=csr, proof=tokens.join_proof(secret, name, csr))


async def test_join(store, ca):
    token = tokens.JoinToken.new(ca.sha256)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    servicer = BootstrapServicer(NodeCertificates(store, ca, 600), lambda: token, JoinThrottle(sleep=sleep))
    reply = await servicer.Join(join_request("n1", token.secret), FakeContext())
    info = pki.cert_info(reply.certificate_pem)
    # The CA's choice of subject and SANs, whatever the CSR asked for: the node name only, never
    # an address (a node certificate must never be good for answering as the master).
    assert (info.common_name, info.organization, info.sans) == ("system:node:n1", "system:nodes", ["n1"])
    assert (info.not_after - info.not_before).total_seconds() == pytest.approx(600 + 300, abs=2)
    assert reply.ca_pem == ca.cert_pem

    with pytest.raises(Unauthenticated, match="^invalid join token$"):
        await servicer.Join(join_request("n2", "wrong-secret-0123456789"), FakeContext())
    with pytest.raises(ValidationError, match="^nodeName: "):
        await servicer.Join(join_request("N_2", token.secret), FakeContext())
    await servicer.Join(join_request("n2", token.secret), FakeContext())
    assert delays == [0.1, 0.1]  # both attempts after the failed proof waited
    assert (await servicer.GetCA(services_pb2.Empty(), FakeContext())).ca_pem == ca.cert_pem


@pytest.mark.parametrize(
    "name", ["pymaster", "kubernetes", "kubernetes.default.svc", "localhost", "master.example"]
)
async def test_names_of_the_master_are_refused(store, ca, name):
    token = tokens.JoinToken.new(ca.sha256)
    reserved = [*pki.MASTER_NAMES, "master.example"]
    servicer = BootstrapServicer(NodeCertificates(store, ca, 600, reserved_names=reserved), lambda: token)
    with pytest.raises(ValidationError, match=f'^nodeName: "{name}" is a name of the master'):
        await servicer.Join(join_request(name, token.secret), FakeContext())
    with pytest.raises(NotFound):
        store.get("identities", "", name)
