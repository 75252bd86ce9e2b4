"""The agent's DNS server (the role CoreDNS plays in a kubeadm cluster, run per node): UDP and TCP
on one address and port (the pod network's gateway, port 53), answering the cluster domain and the
cluster's reverse names from the agent's ClusterView (``records.Zone``) and forwarding every other
name to the host's resolvers (``forward.Forwarder``; SERVFAIL when none answers).

The zone is rebuilt lazily: a change of Services or EndpointSlices only marks it stale, and the
next query rebuilds it once. Until the view has listed both kinds, cluster names get SERVFAIL (a
client retries) rather than an NXDOMAIN it would cache. UDP answers larger than the client's
buffer (512 bytes, or its EDNS size) are truncated with TC set, so the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
from google.protobuf.message import Message

from pykubelet.backoff import Backoff
from pykubelet.cluster_view import ClusterView
from pykubelet.dns.forward import Forwarder, parse_upstream, read_resolv_conf
from pykubelet.dns.records import TTL, Zone
from pymaster.api.network import NetworkConfig

log = logging.getLogger(__name__)

UDP_MIN_PAYLOAD = 512
MAX_IN_FLIGHT = 1000  # UDP queries being answered at once; more are dropped (the client retries)
TCP_IDLE_TIMEOUT = 10.0


class DnsServer:
    """Serves DNS for the pods of this node.

    Args:
        view: the agent's view of Services and EndpointSlices (run elsewhere).
        network: the cluster's address plan (its domain, Service and cluster CIDRs).
        host: the address to listen on (the pod network's gateway).
        port: 53; 0 picks a free port (tests), then ``self.port`` is the one bound.
        upstream: resolvers for other names (``"addr"`` or ``"addr:port"``); None: the host's
            /etc/resolv.conf.
        forward_timeout: seconds per upstream.
        ttl: of every cluster record.
    """

    def __init__(
        self,
        view: ClusterView,
        network: NetworkConfig,
        host: str,
        port: int = 53,
        upstream: list[str] | None = None,
        forward_timeout: float = 2.0,
        ttl: int = TTL,
    ):
        self._view = view
        self._network = network
        self.host = host
        self.port = port
        self._ttl = ttl
        servers = [parse_upstream(u) for u in upstream] if upstream is not None else read_resolv_conf()
        self.forwarder = Forwarder(servers, forward_timeout)
        self._zone: Zone | None = None
        # Says which names are the cluster's before the view is synced (an empty zone owns the same).
        self._empty = self._build_zone([], [])
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        view.services.add_listener(self._changed)
        view.endpoint_slices.add_listener(self._changed)

    def _changed(self, resource: str) -> None:
        self._zone = None

    async def start(self) -> None:
        """Binds UDP and TCP (the same port: with port 0, the one UDP got)."""
        loop = asyncio.get_running_loop()
        for attempt in range(5):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port))
            bound = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, bound)
            except OSError:
                transport.close()
                if self.port or attempt == 4:
                    raise
                continue
            self._udp, self.port = transport, bound
            break
        # The server's own address is never an upstream: a host resolv.conf naming it would loop.
        self.forwarder.upstreams = [u for u in self.forwarder.upstreams if u != (self.host, self.port)]
        log.info("dns server listening host=%s port=%d upstreams=%s", self.host, self.port,
                 ",".join(f"{h}:{p}" for h, p in self.forwarder.upstreams))

    async def run(self) -> None:
        """Starts, retrying with back-off while the address cannot be bound (the pod network's
        bridge, which holds the gateway address, may not exist yet), then serves until cancelled."""
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                await self.start()
                break
            except OSError as err:
                delay = backoff.next_delay()
                log.warning("dns server cannot listen host=%s port=%d error=%s retry_in=%.1fs",
                            self.host, self.port, err, delay)
                await asyncio.sleep(delay)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Closes the sockets and drops queries in flight."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _zone_now(self) -> Zone | None:
        """The zone for the view as it is, None before the view has listed both kinds."""
        if not (self._view.services.synced.is_set() and self._view.endpoint_slices.synced.is_set()):
            return None
        if self._zone is None:
            self._zone = self._build_zone(self._view.services.objects.values(),
                                          self._view.endpoint_slices.objects.values())
        return self._zone

    def _build_zone(self, services: Iterable[Message], slices: Iterable[Message]) -> Zone:
        return Zone(services, slices, self._network.cluster_domain,  # type: ignore[arg-type]
                    reverse_cidrs=(self._network.service_cidr, self._network.cluster_cidr),
                    nameserver=self.host, serial=int(time.time()), ttl=self._ttl)

    async def resolve(self, query: dns.message.Message, tcp: bool) -> dns.message.Message:
        """The response to one parsed query."""
        response = dns.message.make_response(query, recursion_available=True)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        zone = self._zone_now()
        if zone is None:
            if self._empty.owns(question.name):
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
        elif zone.owns(question.name):
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.NOTIMP)
                return response
            answer = zone.answer(question.name, question.rdtype)
            if answer is not None:
                response.flags |= dns.flags.AA
                response.set_rcode(answer.rcode)
                response.answer, response.authority, response.additional = (
                    answer.answer, answer.authority, answer.additional)
                return response
        forwarded = await self.forwarder.forward(query, tcp)
        if forwarded is None:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        return forwarded

    async def answer_wire(self, wire: bytes, tcp: bool) -> bytes | None:
        """The response bytes to a query's bytes; None: nothing to send (a response, or junk)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        response = await self.resolve(query, tcp)
        if tcp:
            return response.to_wire(max_size=65535, prefer_truncation=True)
        size = max(UDP_MIN_PAYLOAD, query.payload) if query.edns >= 0 else UDP_MIN_PAYLOAD
        return response.to_wire(max_size=size, prefer_truncation=True)

    def received(self, wire: bytes, addr: tuple[str, int]) -> None:
        """A UDP datagram arrived: answered on its own task."""
        if len(self._tasks) >= MAX_IN_FLIGHT:
            return
        task = asyncio.ensure_future(self._serve_udp(wire, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_udp(self, wire: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.answer_wire(wire, tcp=False)
        except Exception:
            log.exception("dns query failed client=%s", addr[0])
            reply = _servfail(wire)
        if reply is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                try:
                    reply = await self.answer_wire(wire, tcp=True)
                except Exception:
                    log.exception("dns query failed client=%s", writer.get_extra_info("peername"))
                    reply = _servfail(wire)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _header_reply(wire: bytes, rcode: int) -> bytes | None:
    """A bare reply (no sections) to a query too broken to parse: its id and opcode, ``rcode``;
    None for what is not a query (shorter than a header, or a response)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | 0x0080 | rcode  # QR, the opcode, RA
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def _formerr(wire: bytes) -> bytes | None:
    return _header_reply(wire, dns.rcode.FORMERR)


def _servfail(wire: bytes) -> bytes | None:
    return _header_reply(wire, dns.rcode.SERVFAIL)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._server.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns udp error error=%r", exc)
