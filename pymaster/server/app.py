"""The master's wiring: store, gRPC server (Cluster, NodeAgent, health, reflection), scheduler,
node lifecycle controller, bound-pods hub and the metrics endpoint, started and stopped in order.

``MasterApp`` is what ``pymaster`` runs and what in-process tests start on port 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from pymaster.api import services_pb2, services_pb2_grpc
from pymaster.api.metrics_http import MetricsServer
from pymaster.controllers.node_lifecycle import NodeLeases, NodeLifecycleController
from pymaster.metrics import ClusterState, MasterMetrics
from pymaster.scheduler.scheduler import Scheduler
from pymaster.server.bound_pods import BoundPodsHub
from pymaster.server.cluster import ClusterServicer
from pymaster.server.interceptors import MasterInterceptor
from pymaster.server.node_agent import NodeAgentServicer
from pymaster.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DB_FILE = "pykube.db"
SERVICE_NAMES = tuple(
    services_pb2.DESCRIPTOR.services_by_name[name].full_name for name in ("Cluster", "NodeAgent")
)
# Seconds in-flight RPCs get to finish on stop; long streams (watches) are cancelled after it.
SHUTDOWN_GRACE_SECONDS = 2.0
# How long a metrics scrape waits for the event loop to take a snapshot of the store.
SNAPSHOT_TIMEOUT_SECONDS = 5.0


class MasterApp:
    """One master: call ``await start()``, later ``await stop()``."""

    def __init__(
        self,
        data_dir: str | Path,
        listen: str = "127.0.0.1:6443",
        metrics_addr: str = "127.0.0.1:8080",
        node_monitor_grace_period: float = 40.0,
        registry: CollectorRegistry | None = None,
    ):
        """
        Args:
            data_dir: Directory of the SQLite database (created if missing).
            listen: gRPC "HOST:PORT"; port 0 picks a free one (see ``port`` after start).
            metrics_addr: "HOST:PORT" of /metrics and /healthz; port 0 picks a free one.
            node_monitor_grace_period: Seconds without lease renewal before a node is Unknown.
            registry: Where the metrics go; a new registry by default (several apps per process).
        """
        self.data_dir = Path(data_dir)
        self.listen = listen
        self.metrics_addr = metrics_addr
        self.node_monitor_grace_period = node_monitor_grace_period
        self.registry = registry or CollectorRegistry()
        self.port = 0
        self.metrics_port = 0
        self.store = SQLiteStore(self.data_dir / DB_FILE)
        self.metrics = MasterMetrics(self.registry, self._cluster_state)
        self.leases = NodeLeases(node_monitor_grace_period)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._serving = False
        self._hub = BoundPodsHub(self.store)
        self._scheduler = Scheduler(self.store, self.metrics)
        self._lifecycle = NodeLifecycleController(self.store, self.leases)
        self._metrics_server: MetricsServer | None = None

    @property
    def address(self) -> str:
        """The bound gRPC "HOST:PORT" (after start)."""
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Opens the store, starts the background loops, then serves gRPC and metrics."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        self._hub.start()
        self._lifecycle.start()
        await self._scheduler.start()

        server = grpc.aio.server(interceptors=[MasterInterceptor(self.metrics)])
        services_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(self.store, self.leases), server)
        services_pb2_grpc.add_NodeAgentServicer_to_server(
            NodeAgentServicer(self.store, self.leases, self._hub), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        try:
            self.port = server.add_insecure_port(self.listen)
        except RuntimeError as err:  # grpc reports a failed bind as RuntimeError
            raise OSError(f"cannot listen on {self.listen}: address in use or not available") from err
        await server.start()
        self._server = server
        for service in ("", *SERVICE_NAMES):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._serving = True
        self._metrics_server = MetricsServer(
            self.metrics_addr, self.registry, healthz=lambda: self._serving
        ).start()
        self.metrics_port = self._metrics_server.port
        log.info(
            "pymaster listening address=%s metrics_port=%d data_dir=%s node_monitor_grace_period=%s",
            self.address,
            self.metrics_port,
            self.data_dir,
            self.node_monitor_grace_period,
        )

    async def stop(self) -> None:
        """Stops serving (in-flight calls get a short grace), then the loops, then the store."""
        self._serving = False
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            # Agent streams end first so that they do not hold the grace period.
            await self._hub.stop()
            await self._server.stop(SHUTDOWN_GRACE_SECONDS)
            self._server = None
        await self._hub.stop()
        await self._scheduler.stop()
        await self._lifecycle.stop()
        if self._metrics_server is not None:
            # Blocking (the HTTP server notices shutdown at its next poll): keep the loop free.
            await asyncio.to_thread(self._metrics_server.close)
            self._metrics_server = None
        await self.store.close()
        log.info("pymaster stopped")

    async def wait_for_termination(self) -> None:
        """Returns when the gRPC server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()

    # ---- metrics snapshot (called from the scrape thread) ----

    def _cluster_state(self) -> ClusterState:
        def take() -> ClusterState:
            if not self._serving:
                return ClusterState()
            pods, rv = self.store.list("pods")
            nodes, _ = self.store.list("nodes")
            return ClusterState(pods, nodes, rv)

        return self._on_loop(take, ClusterState())

    def _on_loop(self, fn: Callable[[], _T], default: _T) -> _T:
        """Runs ``fn`` on the event loop (the store is not thread-safe) and returns its result;
        ``default`` if the loop is not running or too busy."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return default
        if threading.get_ident() == self._loop_thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
            return future.result(timeout=SNAPSHOT_TIMEOUT_SECONDS)
        except (RuntimeError, concurrent.futures.TimeoutError):
            log.warning("metrics snapshot unavailable: event loop stopped or busy")
        except Exception:
            log.exception("metrics snapshot failed")
        return default
