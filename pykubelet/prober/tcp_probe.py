"""The tcpSocket probe (kubelet's ``pkg/probe/tcp``): a TCP connection to host:port that opens
within the timeout is a success; it is closed at once, nothing is sent. A refused or timed-out
connection is a failure worded like Go's dialer (``dial tcp 10.0.0.5:9000: connect: connection
refused``, ``dial tcp 10.0.0.5:9000: i/o timeout``).
"""

from __future__ import annotations

import asyncio

from pykubelet.prober.netutil import dial_error, hostport
from pykubelet.prober.results import Outcome, Result


def timeout_message(host: str, port: int) -> str:
    """What a connection that did not open in time says."""
    return f"dial tcp {hostport(host, port)}: i/o timeout"


async def probe(host: str, port: int, timeout: float) -> Outcome:
    """Opens (and closes) a TCP connection to ``host:port`` within ``timeout`` seconds.

    Returns:
        Success when the connection opened, else a failure saying why; never raises.
    """
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome(Result.FAILURE, timeout_message(host, port))
    except OSError as err:
        return Outcome(Result.FAILURE, dial_error(host, port, err))
    writer.close()  # nothing to say: the connection opening was the test
    return Outcome(Result.SUCCESS)
