"""The httpGet probe (kubelet's ``pkg/probe/http``): a minimal HTTP/1.1 client on asyncio streams,
so a probe costs one socket and no thread, and no dependency is added.

As the kubelet does:
- ``GET scheme://host:port/path`` with ``User-Agent: kube-probe/<version>``, ``Accept: */*`` and
  ``Connection: close`` unless the probe's httpHeaders set them; a ``Host`` header among them
  replaces the request's Host (not the address connected to); no proxy, no compression.
- HTTPS does not verify the server's certificate (the server name is still sent as SNI when the
  host is a name).
- 200 <= status < 400 is a success, anything else ``HTTP probe failed with statuscode: <code>``
  (never the body: it may hold secrets). Redirects to the same host are followed (at most 10); a
  redirect to another host is not followed and counts as a success with a warning.
- The body is read up to 10 KiB and dropped; the whole exchange, redirects and body included, must
  end within the timeout.
- Errors read like Go's, which users search for: ``Get "http://10.0.0.5:8080/healthz": dial tcp
  10.0.0.5:8080: connect: connection refused``, ``... context deadline exceeded (Client.Timeout
  exceeded while awaiting headers)``. A body that breaks off after the status arrived is a probe
  error (thrown away, like the kubelet), not a failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from pykubelet.prober.netutil import dial_error, hostport, is_ip, os_error_text
from pykubelet.prober.results import Outcome, Result

log = logging.getLogger(__name__)

USER_AGENT = "kube-probe/0.1"  # the kubelet sends kube-probe/<major>.<minor>; apps match the prefix
MAX_BODY = 10 * 1024  # kubelet's maxRespBodyLength
MAX_REDIRECTS = 10
MAX_HEADER_BYTES = 64 * 1024  # per line (the stream's limit) and in all
_TIMEOUT_TEXT = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
_BODY_TIMEOUT_TEXT = "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
_NO_BODY_STATUSES = (204, 304)
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)  # the ones Go's client follows


class _Broken(Exception):
    """The exchange broke off; the message is Go's wording of why."""


class _BodyError(Exception):
    """The body broke off after the status line and headers arrived."""


class _Progress:
    """How far the current exchange got, so a timeout can be told apart from a slow body."""

    reading_body = False


@dataclass(frozen=True)
class _Target:
    scheme: str  # "http" or "https"
    host: str
    port: int
    request_target: str  # the path and query as sent on the request line

    @property
    def hostport(self) -> str:
        return hostport(self.host, self.port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.hostport}{self.request_target}"


def _request_target(path: str) -> str:
    """The request line's target from a probe's path (which may carry a query), escaped."""
    path = path.split("#", 1)[0]
    path, _, query = path.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    target = urllib.parse.quote(path, safe="/%:@!$&'()*+,;=-._~")
    if query:
        target += "?" + urllib.parse.quote(query, safe="/%:@!$&'()*+,;=-._~?")
    return target


def build_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL a probe gets, as shown in its messages."""
    return _Target(_scheme(scheme), host, port, _request_target(path)).url


def _scheme(scheme: str) -> str:
    return "https" if scheme.upper() == "HTTPS" else "http"


def timeout_message(scheme: str, host: str, port: int, path: str) -> str:
    """What a probe that ran out of time says (Go's http.Client wording)."""
    return f"Get {json.dumps(build_url(scheme, host, port, path))}: {_TIMEOUT_TEXT}"


async def probe(
    host: str,
    port: int,
    path: str = "/",
    scheme: str = "HTTP",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 1.0,
) -> Outcome:
    """GETs ``scheme://host:port/path`` and judges the answer (see the module docstring).

    Args:
        host: the address or name to connect to (the pod IP by default, chosen by the caller).
        port: the TCP port.
        path: the path, with an optional query.
        scheme: ``HTTP`` or ``HTTPS``.
        headers: the probe's httpHeaders (name, value), in order.
        timeout: seconds for the whole exchange.

    Returns:
        The outcome; never raises for network trouble.
    """
    target = _Target(_scheme(scheme), host, port, _request_target(path))
    for name, value in headers:
        if not name or any(ch in name + value for ch in "\r\n\0") or any(ch in name for ch in " :\t"):
            return Outcome(Result.FAILURE, f"net/http: invalid header field {json.dumps(name)}")
    first = target
    host_override = next((value for name, value in headers if name.lower() == "host"), None)
    progress = _Progress()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    status, location = await _get(target, headers, host_override, progress)
                except _BodyError as err:
                    log.debug("http probe body error url=%s error=%s", target.url, err)
                    return Outcome(Result.UNKNOWN, f"Get {json.dumps(target.url)}: {err}")
                if status not in _REDIRECT_STATUSES or location is None:
                    break
                following = _redirect(target, location)
                if following is None or following.host != first.host:
                    log.debug("http probe redirect not followed url=%s location=%s", target.url, location)
                    return Outcome(Result.WARNING, "Probe terminated redirects")
                if urllib.parse.urlsplit(location).scheme:
                    host_override = None  # Go keeps a custom Host only across relative redirects
                target = following
            else:
                return Outcome(Result.FAILURE, f"Get {json.dumps(target.url)}: stopped after 10 redirects")
    except TimeoutError:
        if progress.reading_body:
            # The answer came but its body did not end in time: a probe error, as in the kubelet.
            return Outcome(Result.UNKNOWN, f"Get {json.dumps(target.url)}: {_BODY_TIMEOUT_TEXT}")
        return Outcome(Result.FAILURE, f"Get {json.dumps(target.url)}: {_TIMEOUT_TEXT}")
    except _Broken as err:
        return Outcome(Result.FAILURE, f"Get {json.dumps(target.url)}: {err}")
    if 200 <= status < 400:
        if status >= 300:
            return Outcome(Result.WARNING, "Probe terminated redirects")
        return Outcome(Result.SUCCESS, f"HTTP probe succeeded with statuscode: {status}")
    return Outcome(Result.FAILURE, f"HTTP probe failed with statuscode: {status}")


def _redirect(current: _Target, location: str) -> _Target | None:
    """Where a redirect leads; None when it leaves HTTP(S)."""
    parsed = urllib.parse.urlsplit(urllib.parse.urljoin(current.url, location))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return _Target(parsed.scheme, parsed.hostname, port, _request_target(target))


async def _get(
    target: _Target, headers: Sequence[tuple[str, str]], host_override: str | None, progress: _Progress
) -> tuple[int, str | None]:
    """One GET: connects, sends, reads the status, the headers and up to MAX_BODY of the body.

    Returns:
        The status code and the Location header (None if absent).
    """
    reader, writer = await _connect(target)
    try:
        writer.write(_request(target, headers, host_override))
        try:
            await writer.drain()
            status, response_headers = await _read_head(reader)
        except asyncio.IncompleteReadError as err:
            raise _Broken("EOF") from err
        except ConnectionError as err:
            raise _Broken(os_error_text(err)) from err
        progress.reading_body = True
        try:
            await _read_body(reader, status, response_headers)
        except asyncio.IncompleteReadError as err:
            raise _BodyError("unexpected EOF") from err
        except (ConnectionError, ValueError, _Broken) as err:
            raise _BodyError(str(err) or type(err).__name__) from err
        progress.reading_body = False
        return status, response_headers.get("location")
    finally:
        writer.close()


async def _connect(target: _Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    if target.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False  # the kubelet's InsecureSkipVerify
        context.verify_mode = ssl.CERT_NONE
        server_hostname = "" if is_ip(target.host) else target.host
    try:
        return await asyncio.open_connection(
            target.host, target.port, ssl=context, server_hostname=server_hostname, limit=MAX_HEADER_BYTES
        )
    except ssl.SSLError as err:
        raise _Broken(f"tls: {err.reason or err}".lower()) from err
    except OSError as err:
        raise _Broken(dial_error(target.host, target.port, err)) from err


def _request(target: _Target, headers: Sequence[tuple[str, str]], host_override: str | None) -> bytes:
    names = {name.lower() for name, _ in headers}
    lines = [f"GET {target.request_target} HTTP/1.1", f"Host: {host_override or target.hostport}"]
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines.extend(f"{name}: {value}" for name, value in headers if name.lower() != "host")
    if "connection" not in names:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status code and the headers (lower-case names, last one wins), 1xx answers skipped."""
    while True:
        line = await _readline(reader)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Broken(f"net/http: HTTP/1.x transport connection broken: malformed HTTP response {line!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        total = 0
        while True:
            line = await _readline(reader)
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise _Broken("net/http: server response headers exceeded the limit")
            if not line.strip():
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if not (100 <= status < 200) or status == 101:
            return status, headers


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readline()
    except ValueError as err:  # asyncio.LimitOverrunError, wrapped: a line over the limit
        raise _Broken("net/http: server response headers exceeded the limit") from err
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    return line


async def _read_body(reader: asyncio.StreamReader, status: int, headers: dict[str, str]) -> None:
    """Reads (and drops) up to MAX_BODY bytes of the body, honouring its framing."""
    if status in _NO_BODY_STATUSES or 100 <= status < 200:
        return
    if "chunked" in headers.get("transfer-encoding", "").lower():
        read = 0
        while read < MAX_BODY:
            size_line = await _readline(reader)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return
            await reader.readexactly(min(size, MAX_BODY - read))
            read += size
            if read < MAX_BODY:
                await reader.readexactly(2)  # the CRLF after the chunk
        return
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        await reader.readexactly(min(int(length), MAX_BODY))
        return
    await reader.read(MAX_BODY)
