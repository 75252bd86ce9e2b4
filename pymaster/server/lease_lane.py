"""The lease lane: node lease renewals (the NodeLease service) served on a port of their own
(``--lease-listen``) by a gRPC server on a thread with its own event loop, so that load on the API
(thousands of creates, watch fan-out, scheduling) never queues a node's heartbeat behind it: the
role of Kubernetes' API Priority and Fairness, whose ``system-node-high`` level keeps node leases
ahead of workload traffic.

The lane only answers. It authenticates and authorizes every call like the API port (the same
interceptor: a node renews only its own lease), checks that the node is registered and hands the
renewal to the master's event loop, in batches (``NodeRegistry.take_renewals``), where the leases,
the Ready marks and the lease relay live. Its reads of the store (the node, the node's identity
binding) are lookups in the store's in-memory cache, which the GIL keeps whole across threads.

The API port's RenewLease answers with the lane's port (``lease_port``) and clients move there by
themselves (``pymaster.client``); a client that cannot reach it keeps renewing on the API port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable

import grpc
import uvloop

from pymaster.api import services_pb2, services_pb2_grpc
from pymaster.metrics import MasterMetrics
from pymaster.registry.nodes import NodeRegistry
from pymaster.server.interceptors import MasterInterceptor

log = logging.getLogger(__name__)

# Renewals in flight at once on the lane (every node renews about once per lease interval).
MAX_CONCURRENT_RENEWALS = 10_000


class LeaseLane:
    """The lane's server thread: ``await start()`` binds and returns the port, ``await stop()``.

    Args:
        listen: "HOST:PORT" to serve on (port 0 picks one).
        credentials: The API port's server credentials (mutual TLS).
        nodes: Checks renewals (from the lane's thread) and takes them (on the master's loop).
        metrics: Where calls are counted (``grpc_server_handling_seconds`` of RenewLease).
        store: The interceptor's reads (identity bindings, the role table).
        options: gRPC server options (the API port's keepalive and size limits).
        bind: Runs ``add_port`` for ``listen``; turns a failed bind into OSError.
    """

    def __init__(self, listen: str, credentials: grpc.ServerCredentials, nodes: NodeRegistry,
                 metrics: MasterMetrics, store, options: list[tuple[str, int]],
                 bind: Callable[[str, Callable[[], int]], int]):
        self.listen = listen
        self.port = 0
        self._credentials = credentials
        self._nodes = nodes
        self._metrics = metrics
        self._store = store
        self._options = options
        self._bind = bind
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the lane's own
        self._stopping: asyncio.Event | None = None
        self._grace = 0.0
        self._master_loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[str] = []  # renewals answered, not yet taken on the master's loop
        self._pending_lock = threading.Lock()

    async def start(self) -> int:
        """Starts the thread and its server; returns the bound port.

        Raises:
            OSError: the address cannot be bound.
        """
        self._master_loop = asyncio.get_running_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="pymaster-lease-lane",
                                        daemon=True)
        self._thread.start()
        self.port = await asyncio.wrap_future(started)
        log.info("lease lane serving address=%s port=%d", self.listen, self.port)
        return self.port

    async def stop(self, grace: float) -> None:
        """Stops the server (renewals in flight get ``grace`` seconds) and the thread."""
        if self._thread is None:
            return
        self._grace = grace
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the thread is ending
                loop.call_soon_threadsafe(stopping.set)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _run(self, started: concurrent.futures.Future[int]) -> None:
        loop = self._loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as err:  # not serving: start() raises it
            if not started.done():
                started.set_exception(err)
            else:
                log.error("lease lane stopped error=%r", err)
        finally:
            loop.close()

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._stopping = asyncio.Event()
        # No deadline: a renewal never waits on anything (``renew`` is synchronous).
        server = grpc.aio.server(
            interceptors=[MasterInterceptor(self._metrics, self._store, None)],
            options=self._options,
            maximum_concurrent_rpcs=MAX_CONCURRENT_RENEWALS,
        )
        services_pb2_grpc.add_NodeLeaseServicer_to_server(_NodeLeaseServicer(self), server)
        port = self._bind(self.listen, lambda: server.add_secure_port(self.listen, self._credentials))
        await server.start()
        self.port = port
        started.set_result(port)
        try:
            await self._stopping.wait()
        finally:
            await server.stop(self._grace)

    def renew(self, request: services_pb2.RenewLeaseRequest) -> services_pb2.RenewLeaseResponse:
        """Answers a renewal (on the lane's thread) and hands it to the master's loop.

        Raises:
            ValidationError, NotFound: as NodeRegistry.renew_lease.
        """
        period = self._nodes.check_renewal(request.node_name, request.requested_seconds)
        self._hand_over(request.node_name)
        return services_pb2.RenewLeaseResponse(next_renew_seconds=period, lease_port=self.port)

    def _hand_over(self, name: str) -> None:
        """Queues a renewal for the master's loop; the first of a batch schedules the taking."""
        with self._pending_lock:
            self._pending.append(name)
            first = len(self._pending) == 1
        if first and self._master_loop is not None:
            with contextlib.suppress(RuntimeError):  # the master's loop closed: it is stopping
                self._master_loop.call_soon_threadsafe(self._take)

    def _take(self) -> None:
        with self._pending_lock:
            names, self._pending = self._pending, []
        self._nodes.take_renewals(names)


class _NodeLeaseServicer(services_pb2_grpc.NodeLeaseServicer):
    def __init__(self, lane: LeaseLane):
        self._lane = lane

    async def RenewLease(self, request: services_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
                         ) -> services_pb2.RenewLeaseResponse:
        return self._lane.renew(request)
