"""The httpGet probe's HTTP/1.1 client against a local asyncio HTTP(S) server on 127.0.0.1: status
codes, headers (Host override, defaults), redirects, body framing and caps, timeouts, broken
answers, HTTPS with a self-signed certificate, and the kubelet's wording of failures."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubelet.prober import http_probe
from pykubelet.prober.results import Result


class Server:
    """Answers by path; records each request's target and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            headers: dict[str, str] = {}
            while (header := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip()] = value.strip()
            target = line.split()[1].decode()
            self.requests.append((target, headers))
            await self.answer(target.split("?")[0], writer)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        def respond(status: int, extra: str = "", body: bytes = b"") -> None:
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            writer.write(head.encode() + body)

        if path.startswith("/status/"):
            respond(int(path.rsplit("/", 1)[1]), body=b"secret body")
        elif path == "/redirect-local":
            respond(302, "Location: /status/200\r\n")
        elif path == "/redirect-to-fail":
            respond(301, f"Location: http://127.0.0.1:{self.port}/status/503\r\n")
        elif path == "/redirect-loop":
            respond(307, "Location: /redirect-loop\r\n")
        elif path == "/redirect-away":
            respond(302, "Location: http://probe-elsewhere.invalid/\r\n")
        elif path == "/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            respond(204)
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        elif path == "/big":
            respond(200, body=b"x" * (1 << 20))
        elif path == "/endless":  # no length, never ends: read up to the cap, then done
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * (64 * 1024))
            await writer.drain()
            await asyncio.sleep(30)
        elif path == "/slow":
            await asyncio.sleep(30)
        elif path == "/slow-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            await writer.drain()
            await asyncio.sleep(30)
        elif path == "/garbage":
            writer.write(b"hello there\r\n\r\n")
        elif path == "/hangup":
            return
        else:
            respond(404)


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


@contextlib.asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server()
    tasks: set[asyncio.Task] = set()

    async def handle(reader, writer):
        task = asyncio.current_task()
        tasks.add(task)
        try:
            await server.handle(reader, writer)
        finally:
            tasks.discard(task)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        for task in list(tasks):
            task.cancel()
        listener.close()
        await listener.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serving() as srv:
        yield srv


async def get(server: Server, path: str, timeout: float = 2.0, **kwargs):
    return await http_probe.probe("127.0.0.1", server.port, path, timeout=timeout, **kwargs)


@pytest.mark.parametrize(
    ("path", "result", "message"),
    [
        ("/status/200", Result.SUCCESS, "HTTP probe succeeded with statuscode: 200"),
        ("/status/204", Result.SUCCESS, "HTTP probe succeeded with statuscode: 204"),
        ("/status/399", Result.WARNING, "Probe terminated redirects"),  # 3xx: a success, with a warning
        ("/status/400", Result.FAILURE, "HTTP probe failed with statuscode: 400"),
        ("/status/500", Result.FAILURE, "HTTP probe failed with statuscode: 500"),
        ("/nowhere", Result.FAILURE, "HTTP probe failed with statuscode: 404"),
        ("/redirect-local", Result.SUCCESS, "HTTP probe succeeded with statuscode: 200"),
        ("/redirect-to-fail", Result.FAILURE, "HTTP probe failed with statuscode: 503"),
        ("/redirect-away", Result.WARNING, "Probe terminated redirects"),
        ("/status/301", Result.WARNING, "Probe terminated redirects"),  # no Location: not followed
        ("/continue", Result.SUCCESS, "HTTP probe succeeded with statuscode: 204"),
        ("/chunked", Result.SUCCESS, "HTTP probe succeeded with statuscode: 200"),
        ("/big", Result.SUCCESS, "HTTP probe succeeded with statuscode: 200"),
        ("/endless", Result.SUCCESS, "HTTP probe succeeded with statuscode: 200"),
    ],
)
async def test_status_codes_and_redirects(server, path, result, message):
    outcome = await get(server, path)
    assert (outcome.result, outcome.message) == (result, message)


async def test_the_body_never_reaches_the_message(server):
    outcome = await get(server, "/status/500")
    assert "secret" not in outcome.message


async def test_redirect_loop_stops_after_ten(server):
    outcome = await get(server, "/redirect-loop")
    url = f"http://127.0.0.1:{server.port}/redirect-loop"
    assert (outcome.result, outcome.message) == (Result.FAILURE, f'Get "{url}": stopped after 10 redirects')
    assert len(server.requests) == 11


async def test_default_headers_and_request_target(server):
    await get(server, "healthz?verbose=1&x=a b", scheme="HTTP")
    target, headers = server.requests[0]
    assert target == "/healthz?verbose=1&x=a%20b"
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["User-Agent"].startswith("kube-probe/")
    assert (headers["Accept"], headers["Connection"]) == ("*/*", "close")


async def test_probe_headers_are_sent_and_host_overrides(server):
    custom = [("X-Probe", "yes"), ("Host", "app.example.com"), ("User-Agent", "mine"),
              ("Accept", "text/plain")]
    outcome = await get(server, "/status/200", headers=custom)
    assert outcome.result is Result.SUCCESS
    _, headers = server.requests[0]
    assert headers["Host"] == "app.example.com"
    assert (headers["X-Probe"], headers["User-Agent"], headers["Accept"]) == ("yes", "mine", "text/plain")
    # A relative redirect keeps the Host override, as Go's client does.
    await get(server, "/redirect-local", headers=custom)
    assert [h["Host"] for _, h in server.requests[1:]] == ["app.example.com"] * 2


async def test_header_injection_is_refused(server):
    outcome = await get(server, "/status/200", headers=[("X-Bad", "a\r\nEvil: 1")])
    assert outcome.result is Result.FAILURE
    assert server.requests == []


async def test_timeout_is_a_failure_at_the_timeout(server):
    start = time.monotonic()
    outcome = await get(server, "/slow", timeout=0.3)
    elapsed = time.monotonic() - start
    url = f"http://127.0.0.1:{server.port}/slow"
    expected = f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    assert (outcome.result, outcome.message) == (Result.FAILURE, expected)
    assert 0.25 < elapsed < 2  # safety bounds only


async def test_a_body_that_stalls_is_a_probe_error_not_a_failure(server):
    outcome = await get(server, "/slow-body", timeout=0.3)
    assert outcome.result is Result.UNKNOWN
    assert "while reading body" in outcome.message


@pytest.mark.parametrize(("path", "error"), [("/hangup", "EOF"), ("/garbage", "malformed HTTP response")])
async def test_broken_answers_are_failures(server, path, error):
    outcome = await get(server, path)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith(f'Get "http://127.0.0.1:{server.port}{path}": ')
    assert error in outcome.message


async def test_connection_refused_reads_like_the_kubelet():
    async with serving() as srv:
        port = srv.port
    outcome = await http_probe.probe("127.0.0.1", port, "/healthz", timeout=1)
    url = f"http://127.0.0.1:{port}/healthz"
    assert outcome.result is Result.FAILURE
    assert outcome.message == f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'


async def test_https_with_a_self_signed_certificate(tmp_path):
    async with serving(self_signed(tmp_path)) as srv:
        outcome = await http_probe.probe("127.0.0.1", srv.port, "/status/200", scheme="HTTPS", timeout=2)
        assert outcome.result is Result.SUCCESS
        outcome = await http_probe.probe("127.0.0.1", srv.port, "/status/500", scheme="HTTPS", timeout=2)
        assert outcome.message == "HTTP probe failed with statuscode: 500"
        # Plain HTTP to a TLS port: the server hangs up or answers garbage, a failure either way.
        outcome = await http_probe.probe("127.0.0.1", srv.port, "/status/200", timeout=2)
        assert outcome.result is Result.FAILURE


async def test_https_to_a_plain_server_fails(server):
    outcome = await get(server, "/status/200", scheme="HTTPS", timeout=0.5)
    assert outcome.result is Result.FAILURE
    assert outcome.message.startswith(f'Get "https://127.0.0.1:{server.port}/status/200": ')
