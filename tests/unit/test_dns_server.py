"""The agent's DNS server (pykubelet.dns.server.DnsServer) over real UDP and TCP sockets on
127.0.0.1 (a random port), with a ClusterView filled by hand: cluster names from the view, the
view's changes seen by the next query, SERVFAIL before the view is synced, truncation over UDP and
the full answer over TCP, and forwarding to a fake upstream resolver of the test's own (never a
real one) with SERVFAIL when it does not answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pykubelet.cluster_view import ClusterView
from pykubelet.dns.forward import parse_upstream, read_resolv_conf
from pykubelet.dns.server import DnsServer
from pymaster.api.network import NetworkConfig
from tests.unit.test_dns_records import endpoint_slice, service

HOST = "127.0.0.1"


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver answering every A question with 192.0.2.<n> (n = 1 .. the first label's number
    of records, e.g. ``40.example.test`` has 40), over UDP (truncated at 512 bytes) and TCP."""

    def __init__(self) -> None:
        self.questions: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def answer(self, wire: bytes, limit: int) -> bytes:
        query = dns.message.from_wire(wire)
        name = query.question[0].name
        self.questions.append(name.to_text())
        response = dns.message.make_response(query)
        count = int(name.labels[0]) if name.labels[0].isdigit() else 1
        response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "A",
                                                        [f"192.0.2.{i}" for i in range(1, count + 1)]))
        return response.to_wire(max_size=limit, prefer_truncation=True)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.answer(data, 512), addr)

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = int.from_bytes(await reader.readexactly(2), "big")
        reply = self.answer(await reader.readexactly(length), 65535)
        writer.write(len(reply).to_bytes(2, "big") + reply)
        await writer.drain()
        writer.close()


Upstream = tuple[FakeUpstream, int]  # the fake and its port


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = FakeUpstream()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: fake, local_addr=(HOST, 0))
    port = transport.get_extra_info("sockname")[1]
    tcp = await asyncio.start_server(fake.serve_tcp, HOST, port)
    yield fake, port
    transport.close()
    tcp.close()


def make_view(synced: bool = True) -> ClusterView:
    view = ClusterView(None)  # type: ignore[arg-type]  # never run: filled by hand
    if synced:
        view.services.synced.set()
        view.endpoint_slices.synced.set()
    return view


def put(view: ClusterView, obj: object, resource: str = "services") -> None:
    """As a watch event would: store, then tell the listeners."""
    kind = view.kinds[resource]
    kind.objects[obj.metadata.namespace, obj.metadata.name] = obj  # type: ignore[attr-defined]
    kind._changed()


@pytest.fixture
async def server(upstream: Upstream) -> AsyncIterator[DnsServer]:
    view = make_view()
    put(view, service("web", "10.96.0.10", ("http", 80, "TCP")))
    dns_server = DnsServer(view, NetworkConfig(), HOST, port=0, upstream=[f"{HOST}:{upstream[1]}"],
                           forward_timeout=1.0)
    await dns_server.start()
    yield dns_server
    await dns_server.stop()


async def query(server: DnsServer, name: str, rdtype: str = "A", tcp: bool = False,
                payload: int | None = None, timeout: float = 5) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 1232)
    ask = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await ask(q, HOST, timeout=timeout, port=server.port)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in response.answer for r in rrset if hasattr(r, "address"))


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_cluster_names_from_the_view(server: DnsServer, tcp: bool) -> None:
    response = await query(server, "web.default.svc.cluster.local", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == ["10.96.0.10"]
    assert response.flags & dns.flags.AA and response.flags & dns.flags.RA
    missing = await query(server, "nope.default.svc.cluster.local", tcp=tcp)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority[0].rdtype == dns.rdatatype.SOA


async def test_view_changes_are_seen_by_the_next_query(server: DnsServer) -> None:
    view = server._view
    assert (await query(server, "api.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    put(view, service("api", "10.96.0.20", ("", 80, "TCP")))
    assert addresses(await query(server, "api.default.svc.cluster.local")) == ["10.96.0.20"]
    del view.services.objects["default", "api"]
    view.services._changed()
    assert (await query(server, "api.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN


async def test_headless_answer_truncated_over_udp_then_whole_over_tcp(server: DnsServer) -> None:
    put(server._view, service("big", "None", ("", 80, "TCP")))
    endpoints = [(f"10.244.1.{i}", True, None) for i in range(1, 61)]
    put(server._view, endpoint_slice("big", endpoints, [("http", 80)]), "endpointslices")
    over_udp = await query(server, "big.default.svc.cluster.local")
    assert over_udp.flags & dns.flags.TC
    over_tcp = await query(server, "big.default.svc.cluster.local", tcp=True)
    assert not over_tcp.flags & dns.flags.TC
    assert len(addresses(over_tcp)) == 60
    with_edns = await query(server, "big.default.svc.cluster.local", payload=4096)
    assert len(addresses(with_edns)) == 60 and not with_edns.flags & dns.flags.TC


async def test_other_names_are_forwarded(server: DnsServer, upstream: Upstream) -> None:
    fake, _ = upstream
    response = await query(server, "www.example.test")
    assert addresses(response) == ["192.0.2.1"]
    assert fake.questions == ["www.example.test."]
    assert not response.flags & dns.flags.AA
    truncated = await query(server, "40.example.test")
    assert truncated.flags & dns.flags.TC
    whole = await query(server, "40.example.test", tcp=True)
    assert len(addresses(whole)) == 40
    assert (await query(server, "1.0.0.127.in-addr.arpa", "PTR")).rcode() == dns.rcode.NOERROR  # forwarded
    assert fake.questions[-1] == "1.0.0.127.in-addr.arpa."


async def test_cluster_names_are_never_forwarded(server: DnsServer, upstream: Upstream) -> None:
    await query(server, "www.example.test.default.svc.cluster.local")
    await query(server, "99.0.96.10.in-addr.arpa", "PTR")
    assert upstream[0].questions == []


async def test_no_answer_from_upstream_is_servfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind((HOST, 0))
        server = DnsServer(make_view(), NetworkConfig(), HOST, port=0,
                           upstream=[f"{HOST}:{silent.getsockname()[1]}"], forward_timeout=0.2)
        await server.start()
        try:
            assert (await query(server, "www.example.test")).rcode() == dns.rcode.SERVFAIL
        finally:
            await server.stop()


async def test_servfail_for_cluster_names_until_the_view_is_synced(upstream: Upstream) -> None:
    view = make_view(synced=False)
    server = DnsServer(view, NetworkConfig(), HOST, port=0, upstream=[f"{HOST}:{upstream[1]}"])
    await server.start()
    try:
        assert (await query(server, "web.default.svc.cluster.local")).rcode() == dns.rcode.SERVFAIL
        assert addresses(await query(server, "www.example.test")) == ["192.0.2.1"]
        view.services.synced.set()
        view.endpoint_slices.synced.set()
        put(view, service("web", "10.96.0.10", ("", 80, "TCP")))
        assert addresses(await query(server, "web.default.svc.cluster.local")) == ["10.96.0.10"]
    finally:
        await server.stop()


async def test_malformed_query_is_formerr_and_responses_are_ignored(server: DnsServer) -> None:
    junk = b"\x12\x34\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\xff"  # claims 5 questions, holds none
    reply = await server.answer_wire(junk, tcp=False)
    assert reply is not None and reply[:2] == b"\x12\x34"
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert await server.answer_wire(response.to_wire(), tcp=False) is None
    assert await server.answer_wire(b"\x00", tcp=False) is None


def test_upstreams_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.test\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\noptions ndots:2\n")
    assert read_resolv_conf(str(conf)) == [("10.0.0.2", 53), ("fe80::1", 53)]
    assert read_resolv_conf(str(tmp_path / "missing")) == []
    assert parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_upstream("[::1]:5353") == ("::1", 5353)
    assert parse_upstream("::1") == ("::1", 53)
    with pytest.raises(ValueError):
        parse_upstream("resolver.example")


async def test_run_retries_the_bind_then_serves_until_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # holds the port, as a missing bridge would
    holder.bind((HOST, 0))
    port = holder.getsockname()[1]
    view = make_view()
    put(view, service("web", "10.96.0.10", ("", 80, "TCP")))
    server = DnsServer(view, NetworkConfig(), HOST, port=port, upstream=[])
    task = asyncio.create_task(server.run())
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while "dns server cannot listen" not in caplog.text:
            assert asyncio.get_running_loop().time() < deadline, "the bind never failed"
            await asyncio.sleep(0.01)
        holder.close()
        while True:
            try:
                response = await query(server, "web.default.svc.cluster.local", timeout=0.2)
                break
            except (dns.exception.Timeout, OSError):
                assert asyncio.get_running_loop().time() < deadline, "the server never came up"
        assert addresses(response) == ["10.96.0.10"]
        assert (await query(server, "www.example.test")).rcode() == dns.rcode.SERVFAIL  # no upstream
    finally:
        holder.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with pytest.raises((dns.exception.Timeout, OSError)):
        await dns.asyncquery.tcp(dns.message.make_query("web.default.svc.cluster.local", "A"), HOST,
                                 timeout=1, port=port)
