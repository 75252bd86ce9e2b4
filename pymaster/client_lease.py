"""Where the client sends node lease renewals (``Client.renew_lease``): the master's lease lane
(``pymaster.server.lease_lane``, its own port, named in the API port's ``RenewLeaseResponse``)
once the API port has named it, and the API port again for ``LEASE_LANE_RETRY_SECONDS`` after the
lane could not be reached (another port, maybe firewalled; or the master is gone, and the API
port fails over to the next one). A lane belongs to the API address that named it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import grpc

from pymaster.api import services_pb2_grpc

# Seconds a client renews on the API port after the master's lease lane could not be reached.
LEASE_LANE_RETRY_SECONDS = 60.0
# A renewal on the lane failing with these goes to the API port instead.
LANE_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class _Lane(NamedTuple):
    server: str  # the API address that named it
    channel: grpc.aio.Channel
    stub: services_pb2_grpc.NodeLeaseStub


class LeaseLaneRoute:
    """The lane in use, if any, and the lanes recently found unreachable."""

    def __init__(self) -> None:
        self._lane: _Lane | None = None
        self._down_until: dict[str, float] = {}  # API address -> when to try its lane again

    def stub(self, server: str) -> services_pb2_grpc.NodeLeaseStub | None:
        """The lane's stub when it belongs to ``server`` (the API address in use)."""
        return self._lane.stub if self._lane is not None and self._lane.server == server else None

    def failed(self, server: str) -> None:
        """The lane of ``server`` could not be reached: the API port for a while."""
        self._down_until[server] = time.monotonic() + LEASE_LANE_RETRY_SECONDS

    def named(self, server: str, lease_port: int, open_channel: Callable[[str], grpc.aio.Channel]) -> None:
        """The API port of ``server`` named its lane's port (0: none): opened unless it failed
        lately. Call ``close`` first."""
        if lease_port and time.monotonic() >= self._down_until.get(server, 0.0):
            channel = open_channel(f"{server.rpartition(':')[0]}:{lease_port}")
            self._lane = _Lane(server, channel, services_pb2_grpc.NodeLeaseStub(channel))

    def close(self) -> grpc.aio.Channel | None:
        """Forgets the lane; returns its channel, for the caller to close."""
        lane, self._lane = self._lane, None
        return lane.channel if lane is not None else None
