"""Small network helpers shared by the network probes: ``host:port`` formatting and Go's wording
of socket errors, so probe messages read like the kubelet's (users search for them)."""

from __future__ import annotations

import errno
import os
import socket


def hostport(host: str, port: int) -> str:
    """``host:port``, bracketing an IPv6 address (Go's net.JoinHostPort)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    """Whether ``host`` is a literal IPv4 or IPv6 address (not a name)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def os_error_text(err: OSError) -> str:
    """Go's lower-case wording of an OS error: "connection refused", "no route to host" ..."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, ConnectionResetError):
        return "connection reset by peer"
    if err.errno == errno.ETIMEDOUT:
        return "i/o timeout"
    if err.errno:
        return os.strerror(err.errno).lower()
    return str(err) or type(err).__name__


def dial_error(host: str, port: int, err: OSError) -> str:
    """Go's dialer error for a failed TCP connection to ``host:port``."""
    if isinstance(err, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    return f"dial tcp {hostport(host, port)}: connect: {os_error_text(err)}"
