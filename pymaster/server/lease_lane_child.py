"""The lease lane's process (``python -m pymaster.server.lease_lane_child``, started and fed by
``pymaster.server.lease_lane``): a gRPC server of its own, on its own CPU, that answers node lease
renewals (the NodeLease service) and tells the master which it answered, in batches.

It holds a copy of what a renewal is checked against, kept current by the master: the registered
node names and the node identity bindings (which public key a node's certificate must carry, which
serials are revoked). Calls go through the API port's interceptor (the same authentication,
authorization and metrics: a node renews only its own lease); its metrics go to the master with
the renewals. A renewal of a node, or by a node, this copy does not know is answered UNAVAILABLE,
which sends the client to the API port, where the master answers from its store (registered or
joined a moment ago: taken; not registered: NOT_FOUND, and the agent registers again).

Talks to the master over stdin and stdout (``pymaster.server.lease_lane_wire``); ends when stdin
closes (the master is gone) or on the master's STOP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
from asyncio.streams import FlowControlMixin

import grpc
import uvloop

from pymaster.api import objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.errors import Unavailable
from pymaster.api.kinds import IDENTITIES
from pymaster.logs import configure_logging
from pymaster.registry.leases import check_renewal, next_renew_seconds
from pymaster.server import lease_lane_wire as wire
from pymaster.server.interceptors import MasterInterceptor
from pymaster.server.ports import bind

log = logging.getLogger(__name__)

# Renewals in flight at once on the lane (every node renews about once per lease interval).
MAX_CONCURRENT_RENEWALS = 10_000
# How long answered renewals wait to go to the master together (one message a batch, so that
# 500 renewals a second wake the master's loop a hundred times at most).
BATCH_SECONDS = 0.01


class Replica:
    """The lane's copy of the master's registered nodes and node identity bindings; ``get`` is
    the interceptor's read of a binding (``pymaster.server.authz.authenticate``)."""

    def __init__(self) -> None:
        self.nodes: set[str] = set()
        self._identities: dict[str, objects_pb2.NodeIdentity] = {}

    def set_nodes(self, added: list[str], removed: list[str], replace: bool = False) -> None:
        """Applies registered and deleted nodes; ``replace``: ``added`` is the whole set."""
        if replace:
            self.nodes.clear()
        self.nodes.update(added)
        self.nodes.difference_update(removed)

    def set_identities(self, changes: list[tuple[str, bytes | None]], replace: bool = False) -> None:
        """Applies (name, serialized binding, or None for deleted); ``replace``: the whole list."""
        if replace:
            self._identities.clear()
        for name, data in changes:
            if data is None:
                self._identities.pop(name, None)
            else:
                self._identities[name] = objects_pb2.NodeIdentity.FromString(data)

    def get(self, kind: str, namespace: str, name: str) -> objects_pb2.NodeIdentity:
        """A node's binding. Raises Unavailable when there is none: the node may have joined a
        moment ago, and the API port knows (a stale copy is otherwise only ever more lenient:
        revocations add serials, a new binding replaces the key only for a new certificate)."""
        binding = self._identities.get(name) if kind == IDENTITIES.resource else None
        if binding is None:
            raise Unavailable(f"the lease lane does not know node {name}; renew on the API port")
        return binding


class _Recorder:
    """MasterMetrics' two calls, kept for the master's metrics until the next batch."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.refusals: list[tuple] = []

    def observe_rpc(self, grpc_type: str, service: str, method: str, code: grpc.StatusCode,
                    seconds: float) -> None:
        self.calls.append((grpc_type, service, method, code, seconds))

    def observe_refused(self, code: grpc.StatusCode, identity_kind: str, method: str) -> None:
        self.refusals.append((code, identity_kind, method))


class Lane:
    """The server and the batches; ``run`` until the master says stop or goes away."""

    def __init__(self, init: wire.Init, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._init = init
        self._reader = reader
        self._writer = writer
        self.replica = Replica()
        self.replica.set_nodes(init.nodes, [])
        self.replica.set_identities(init.identities)
        self._credentials = init.credentials
        self._served: wire.Credentials | None = None
        self._metrics = _Recorder()
        self._renewed: list[str] = []
        self._flush: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        self.port = 0

    async def run(self) -> None:
        server = grpc.aio.server(
            interceptors=[MasterInterceptor(self._metrics, self.replica, None)],  # type: ignore[arg-type]
            options=self._init.options,
            maximum_concurrent_rpcs=MAX_CONCURRENT_RENEWALS,
        )
        services_pb2_grpc.add_NodeLeaseServicer_to_server(_NodeLeaseServicer(self), server)
        credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=True)
        try:
            listen = self._init.listen
            self.port = bind(listen, lambda: server.add_secure_port(listen, credentials))
        except OSError as err:
            self._send((wire.FAILED, str(err)))
            return
        await server.start()
        self._send((wire.SERVING, self.port))
        grace = await self._follow_master()
        await server.stop(grace)
        self._send_renewed()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        self._served = served = self._credentials
        return grpc.ssl_server_certificate_configuration([(served.key_pem, served.cert_pem)],
                                                         root_certificates=served.ca_pem)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on every TLS handshake; None keeps the current certificate.
        return self._configuration() if self._credentials is not self._served else None

    async def _follow_master(self) -> float:
        """Applies the master's messages; returns the grace for calls in flight at the end."""
        while True:
            try:
                message = await wire.read_frame(self._reader)
            except asyncio.IncompleteReadError:
                log.info("lease lane stopping reason=the master is gone")
                return 0.0
            tag = message[0]
            if tag == wire.NODES:
                self.replica.set_nodes(*message[1:])
            elif tag == wire.IDENTITIES:
                self.replica.set_identities(message[1], replace=message[2])
            elif tag == wire.CREDENTIALS:
                self._credentials = message[1]
            elif tag == wire.STOP:
                return message[1]

    def renew(self, request: services_pb2.RenewLeaseRequest) -> services_pb2.RenewLeaseResponse:
        """Answers a renewal and queues it for the master.

        Raises:
            ValidationError: a bad name or period.
            Unavailable: a node the lane does not know (the API port answers for it).
        """
        name = request.node_name
        check_renewal(name, request.requested_seconds)
        if name not in self.replica.nodes:
            raise Unavailable(f"the lease lane does not know node {name}; renew on the API port")
        period = next_renew_seconds(request.requested_seconds, self._init.grace_period, self._rng.random())
        self._renewed.append(name)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._send_renewed)
        return services_pb2.RenewLeaseResponse(next_renew_seconds=period, lease_port=self.port)

    def _send_renewed(self) -> None:
        self._flush = None
        metrics = self._metrics
        if self._renewed or metrics.calls or metrics.refusals:
            self._send((wire.RENEWED, self._renewed, metrics.calls, metrics.refusals))
            self._renewed, metrics.calls, metrics.refusals = [], [], []

    def _send(self, message: tuple) -> None:
        if not self._writer.is_closing():
            self._writer.write(wire.frame(message))


class _NodeLeaseServicer(services_pb2_grpc.NodeLeaseServicer):
    def __init__(self, lane: Lane):
        self._lane = lane

    async def RenewLease(self, request: services_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
                         ) -> services_pb2.RenewLeaseResponse:
        return self._lane.renew(request)


async def _main() -> None:
    # The messages go out on a copy of stdout; stdout itself becomes stderr, so that nothing
    # printed by a library can break a message.
    to_master = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(FlowControlMixin, to_master)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        tag, init = await wire.read_frame(reader)
    except asyncio.IncompleteReadError:
        return  # the master went away before it said anything
    assert tag == wire.INIT
    configure_logging(init.log_level)
    await Lane(init, reader, writer).run()
    with contextlib.suppress(ConnectionError):  # the master is gone
        await writer.drain()
    writer.close()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_main())


if __name__ == "__main__":
    main()
