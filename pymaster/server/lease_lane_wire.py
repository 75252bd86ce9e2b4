"""What the master and its lease lane process (``pymaster.server.lease_lane`` and
``pymaster.server.lease_lane_child``) say to each other over the child's stdin and stdout: pickled
tuples, each framed by its length. Both ends are this program, one the parent of the other.

The master says, in this order:
- ``(INIT, Init)``: where to serve and what the master knows at the start;
- then any of ``(NODES, added, removed, replace)``, ``(IDENTITIES, [(name, serialized binding or
  None)], replace)`` and ``(CREDENTIALS, Credentials)`` as the store and the serving certificate
  change (``replace``: the list is the whole set, after the master's watch fell behind);
- ``(STOP, grace_seconds)`` at the end (closing stdin also stops the child: the master is gone).

The child says ``(SERVING, port)`` or ``(FAILED, message)`` once, then batches of
``(RENEWED, [node names], [finished calls], [refusals])``: the renewals it answered and what the
master's metrics should count (``MasterMetrics.observe_rpc`` and ``observe_refused`` arguments).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, NamedTuple

INIT, NODES, IDENTITIES, CREDENTIALS, STOP = "init", "nodes", "identities", "credentials", "stop"
SERVING, FAILED, RENEWED = "serving", "failed", "renewed"

_LENGTH = struct.Struct("!I")


class Credentials(NamedTuple):
    """The serving key pair and the CA that signs client certificates (PEM)."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


class Init(NamedTuple):
    listen: str  # "HOST:PORT" (port 0 picks one)
    options: list[tuple[str, int]]  # gRPC server options
    grace_period: float  # the master's node monitor grace period (caps the lease period)
    log_level: int
    credentials: Credentials
    nodes: list[str]  # the registered nodes
    identities: list[tuple[str, bytes]]  # node name -> serialized NodeIdentity binding


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message. Raises asyncio.IncompleteReadError at the end of the stream."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(length))
