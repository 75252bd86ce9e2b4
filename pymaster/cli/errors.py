"""How pyctl tells the user what went wrong, in the one line kubectl would print: the
Kubernetes status reason of each gRPC code, and the cases where the master itself could not be
reached (connection refused, TLS handshake failed, deadline) told apart from errors it answered.
"""

from __future__ import annotations

import grpc

from pymaster.api import errors
from pymaster.cli.printers import one_line

# kubectl's "Error from server (<Reason>)": the Kubernetes status reason for each gRPC code.
_REASONS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "Invalid",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.ABORTED: "Conflict",
    grpc.StatusCode.OUT_OF_RANGE: "Expired",
    grpc.StatusCode.FAILED_PRECONDITION: "BadRequest",
    grpc.StatusCode.PERMISSION_DENIED: "Forbidden",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthorized",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "TooManyRequests",
    grpc.StatusCode.UNIMPLEMENTED: "MethodNotAllowed",
    grpc.StatusCode.UNAVAILABLE: "ServiceUnavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Timeout",
}
# gRPC's own wording when the channel cannot connect at all, as opposed to the master answering
# UNAVAILABLE about something behind it (an agent it proxies logs from, its store).
_CONNECT_FAILURES = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "socket closed",
    "connection reset",
    "connections to all backends failing",
    "name resolution",
)
# gRPC's wording when the TLS handshake fails on this side: the master's certificate does not
# verify against the config's CA, or the port does not speak TLS (the plaintext join port).
_TLS_FAILURES = ("handshake failed", "ssl_error", "tsi_", "certificate_verify_failed")
_VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED: "


def is_connect_failure(exc: errors.ApiError) -> bool:
    """True when an UNAVAILABLE error means the master itself could not be reached (TLS
    handshake failures included)."""
    text = exc.message.lower()
    return any(marker in text for marker in _CONNECT_FAILURES) or is_tls_failure(exc)


def is_tls_failure(exc: errors.ApiError) -> bool:
    """True when the connection failed in the TLS handshake.

    Either this side refused the master's certificate, or the master refused this side's: with
    TLS 1.3 the client's half of the handshake is done before the server checks the client
    certificate, so a refused certificate only shows as the master closing the new connection
    ("failed to connect to all addresses; ... Socket closed").
    """
    if exc.code != grpc.StatusCode.UNAVAILABLE:
        return False
    text = exc.message.lower()
    if any(marker in text for marker in _TLS_FAILURES):
        return True
    return "failed to connect to all addresses" in text and "socket closed" in text


def _tls_reason(message: str) -> str:
    """The part of a handshake failure a user can act on."""
    last = message.rpartition("last error: ")[2] or message
    if "socket closed" in last.lower():
        return "the master closed the connection: it did not accept the client certificate"
    if "WRONG_VERSION_NUMBER" in last:
        return "the server does not speak TLS: the master's plaintext join port?"
    verify = last.partition(_VERIFY_FAILED)[2]
    if verify:
        return f"the master's certificate did not verify: {one_line(verify.removesuffix(': OK'))}"
    return one_line(last)


def format_api_error(exc: errors.ApiError, server: str, timeout: float | None = None) -> str:
    """The one line kubectl would print for an error from the API.

    Args:
        exc: the error the client raised.
        server: "HOST:PORT" of the master, named when it cannot be reached.
        timeout: the request timeout in seconds, named when a request ran out of time.

    Returns:
        e.g. ``Error from server (NotFound): pods "web" not found``, for an unreachable master
        ``error: cannot reach the pykube master at 127.0.0.1:6443: <detail> (...)``, for a failed
        TLS handshake ``error: TLS handshake with the pykube master at 127.0.0.1:6443 failed: ...``,
        for a refused certificate ``error: You must be logged in to the server (Unauthorized): ...``.
    """
    code = exc.code
    if is_tls_failure(exc):
        return (
            f"error: TLS handshake with the pykube master at {server} failed: is --config the admin "
            f"config of this master? ({_tls_reason(exc.message)})"
        )
    if code == grpc.StatusCode.UNAVAILABLE and is_connect_failure(exc):
        return (
            f"error: cannot reach the pykube master at {server}: {one_line(exc.message)} "
            "(is pymaster running? try `make up`)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f" within {timeout:g}s" if timeout else ""
        return f"error: the pykube master at {server} did not answer{within} (see --request-timeout)"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"error: You must be logged in to the server (Unauthorized): {one_line(exc.message)}"
    reason = _REASONS.get(code, "InternalError")
    return f"Error from server ({reason}): {one_line(exc.message)}"
