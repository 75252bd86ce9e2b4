"""The master's composition root: opens the store, builds the registry, the servicers, the
scheduler and the controllers, and starts and stops them in order (with the PKI, the two gRPC
servers, the bound-pods hub and the metrics endpoint).

- The main port (``listen``) is mutual TLS with client certificates required: Cluster,
  NodeAgent, health and reflection, every call authenticated and authorized by the interceptor.
- The join port (``join_listen``) is plaintext and serves only Bootstrap (GetCA, Join) and
  health: a joining agent has no certificate yet; it pins the CA by the token's hash and proves
  the token's secret without sending it (see pymaster.server.bootstrap).

Both servers refuse messages over ``MAX_MESSAGE_BYTES`` (4 MiB; a pod is limited to 1 MiB by
pymaster.server.limits), ping idle peers every ``KEEPALIVE_SECONDS`` and drop those that do not
answer within ``KEEPALIVE_TIMEOUT_SECONDS`` (so a vanished agent's stream is released), give a TLS
handshake ``HANDSHAKE_TIMEOUT_SECONDS``, serve at most ``MAX_CONCURRENT_RPCS`` calls at once
(streams included; beyond that RESOURCE_EXHAUSTED) and bound unary calls to ``unary_timeout``.

Secrets are encrypted at rest with the key in ``<data-dir>/encryption-key`` (made at the first
start; see pymaster.store.encryption): the key is read before the store opens, so a wrong or
missing key stops the start with a message saying so, and made only once the store has loaded.

With ``leader_election`` (``--leader-elect``, an etcd store only) every replica serves the API,
but the scheduler and the controllers (node lifecycle, taint eviction, event TTL, the controller
manager) run only while this replica holds the etcd lease (pymaster.leader): started when it is
elected, stopped when it stops leading (before the lease can expire). Without it they run from
the start, as on a single master.

``MasterApp`` is what ``pymaster`` runs and what in-process tests start on port 0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from pymaster.api import services_pb2, services_pb2_grpc
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.default_tolerations import DEFAULT_TOLERATION_SECONDS
from pymaster.api.kinds import EVENTS
from pymaster.api.metrics_http import MetricsServer
from pymaster.api.network import NetworkConfig
from pymaster.controllers.event_ttl import DEFAULT_EVENT_TTL_SECONDS, EventTTLController
from pymaster.controllers.eviction_rate import EvictionPolicy
from pymaster.controllers.manager import ControllerManager
from pymaster.controllers.master_service import MasterService
from pymaster.controllers.node_lifecycle import NodeLifecycleController
from pymaster.controllers.taint_eviction import TaintEvictionController
from pymaster.leader import LEASE_NAME, LeaderElectionConfig, LeaderElector, default_identity
from pymaster.metrics import MasterMetrics
from pymaster.registry import Registry
from pymaster.registry.lease_relay import LeaseRelay
from pymaster.registry.leases import NodeLeases
from pymaster.scheduler.scheduler import Scheduler, scheduler_framework
from pymaster.server.authz import NodeGraph
from pymaster.server.bootstrap import BootstrapServicer, NodeCertificates
from pymaster.server.bound_pods import BoundPodsHub
from pymaster.server.cluster import ClusterServicer
from pymaster.server.interceptors import DEFAULT_UNARY_TIMEOUT_SECONDS, MasterInterceptor
from pymaster.server.lease_lane import LeaseLane
from pymaster.server.node_agent import NodeAgentServicer
from pymaster.server.ports import bind
from pymaster.server.resources import ResourcesServicer
from pymaster.server.tls import (
    ADMIN_CONFIG,
    DEFAULT_CERTIFICATE_LIFETIME,
    TOKEN_FILE,
    MasterPKI,
    client_address,
    host_of,
    reserved_node_names,
)
from pymaster.state_metrics import EMPTY as EMPTY_STATE
from pymaster.state_metrics import ClusterStateMetrics
from pymaster.state_metrics import render as render_state
from pymaster.store import open_store, sqlite_url
from pymaster.store.base import Store
from pymaster.store.encryption import KEY_FILE, SecretEncryption
from pymaster.store.etcd_client import EtcdClient, EtcdTLS
from pymaster.store.etcd_client import parse_endpoints as parse_etcd_endpoints

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SERVICE_NAMES = tuple(
    services_pb2.DESCRIPTOR.services_by_name[name].full_name for name in ("Resources", "Cluster", "NodeAgent")
)
# Seconds in-flight RPCs get to finish on stop; long streams (watches) are cancelled after it.
SHUTDOWN_GRACE_SECONDS = 2.0
# How long a metrics scrape waits for the event loop to take a snapshot of the store.
SNAPSHOT_TIMEOUT_SECONDS = 5.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
KEEPALIVE_SECONDS = 30
KEEPALIVE_TIMEOUT_SECONDS = 10
# Clients may ping this often without data (a client's keepalive must not be slower than this
# allows, or the server sends GOAWAY "too_many_pings").
MIN_CLIENT_PING_INTERVAL_SECONDS = 10
HANDSHAKE_TIMEOUT_SECONDS = 10
MAX_CONCURRENT_RPCS = 10_000
MAX_CONCURRENT_JOIN_RPCS = 1_000
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_SECONDS * 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_SECONDS * 1000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_SECONDS * 1000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_SECONDS * 1000),
]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
BOOTSTRAP_SERVICE = services_pb2.DESCRIPTOR.services_by_name["Bootstrap"].full_name


def default_join_listen(listen: str) -> str:
    """The join address for a --listen address: same host, port + 1 (port 0 stays 0)."""
    return _port_after(listen, 1)


def default_lease_listen(listen: str) -> str:
    """The lease lane's address for a --listen address: same host, port + 2 (port 0 stays 0)."""
    return _port_after(listen, 2)


def _port_after(listen: str, offset: int) -> str:
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + offset if int(port) else 0}"


class MasterApp:
    """One master: call ``await start()``, later ``await stop()``."""

    def __init__(
        self,
        data_dir: str | Path,
        listen: str = "127.0.0.1:6443",
        metrics_addr: str = "127.0.0.1:8080",
        node_monitor_grace_period: float = 40.0,
        registry: CollectorRegistry | None = None,
        *,
        join_listen: str | None = None,
        lease_listen: str | None = None,
        tls_sans: Iterable[str] = (),
        certificate_lifetime: float = DEFAULT_CERTIFICATE_LIFETIME,
        allow_privileged: bool = False,
        allow_host_network: bool = False,
        allowed_host_paths: Iterable[str] = (),
        allow_privileged_host_ports: bool = False,
        rotate_join_token: bool = False,
        unary_timeout: float = DEFAULT_UNARY_TIMEOUT_SECONDS,
        event_ttl: float = DEFAULT_EVENT_TTL_SECONDS,
        scheduler_config: str | None = None,
        eviction_policy: EvictionPolicy | None = None,
        not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
        network: NetworkConfig | None = None,
        store_url: str | None = None,
        etcd_tls: EtcdTLS | None = None,
        leader_election: LeaderElectionConfig | None = None,
    ):
        """
        Args:
            data_dir: Directory of the SQLite database and the PKI (created if missing).
            listen: mTLS gRPC "HOST:PORT"; port 0 picks a free one (see ``port`` after start).
            metrics_addr: "HOST:PORT" of /metrics and /healthz; port 0 picks a free one.
            node_monitor_grace_period: Seconds without lease renewal before a node is Unknown.
            registry: Where the metrics go; a new registry by default (several apps per process).
            join_listen: Plaintext Bootstrap "HOST:PORT"; default the listen host, port + 1;
                port 0 picks a free one (``join_port``).
            lease_listen: mTLS "HOST:PORT" of the lease lane (``pymaster.server.lease_lane``);
                default the listen host, port + 2; port 0 picks one (``lease_port``); "": no
                lane (renewals on the API port).
            tls_sans: Extra SANs of the serving certificate (each may be a comma list).
            certificate_lifetime: Seconds node certificates live (the master's own: at least a year).
            allow_privileged: Admit privileged containers.
            allow_host_network: Admit pods with hostNetwork.
            allowed_host_paths: Path prefixes hostPath volumes may use (none by default).
            allow_privileged_host_ports: Admit host ports below 1024 (the master's own never).
            rotate_join_token: Write a new join token at start; the old one stops working for joins.
            unary_timeout: Seconds a unary call may take before DEADLINE_EXCEEDED.
            event_ttl: Seconds an event lives after its last occurrence.
            scheduler_config: Path of the scheduler's configuration file (``--config``); None:
                the default profile.
            eviction_policy: How fast failed nodes are tainted NoExecute (the controller
                manager's --node-eviction-rate and co.); None: Kubernetes' defaults.
            not_ready_toleration_seconds, unreachable_toleration_seconds: tolerationSeconds of
                the not-ready / unreachable NoExecute tolerations every new pod gets.
            network: The cluster's address plan (pod CIDRs, ClusterIPs, NodePorts, DNS domain);
                None: Kubernetes' defaults.
            store_url: Where the objects live (``--store``): ``sqlite://<path>`` or
                ``etcd://HOST:PORT[,...]``; None: ``sqlite://<data_dir>/pykube.db``.
            etcd_tls: TLS files for etcd (``--etcd-cafile/--etcd-certfile/--etcd-keyfile``).
            leader_election: Run the scheduler and the controllers only while elected on the etcd
                store's lease (``--leader-elect``); None: always (a single master).

        Raises:
            ValueError: an allowed host path is not absolute; leader election without an etcd
                store, or with unsafe durations.
        """
        self.data_dir = Path(data_dir)
        self.listen = listen
        self.join_listen = join_listen or default_join_listen(listen)
        self.lease_listen = default_lease_listen(listen) if lease_listen is None else lease_listen
        self.metrics_addr = metrics_addr
        self.node_monitor_grace_period = node_monitor_grace_period
        self.tls_sans = list(tls_sans)
        self.certificate_lifetime = certificate_lifetime
        self.admission = AdmissionPolicy.of(
            allow_privileged=allow_privileged,
            allow_host_network=allow_host_network,
            allowed_host_paths=allowed_host_paths,
            allow_privileged_host_ports=allow_privileged_host_ports,
            reserved_host_ports=[_port(a) for a in (listen, self.join_listen, self.lease_listen, metrics_addr)
                                 if a],
            not_ready_toleration_seconds=not_ready_toleration_seconds,
            unreachable_toleration_seconds=unreachable_toleration_seconds,
        )
        self.rotate_join_token = rotate_join_token
        self.unary_timeout = unary_timeout
        self.registry = registry or CollectorRegistry()
        self.port = 0
        self.join_port = 0
        self.lease_port = 0
        self._lease_lane: LeaseLane | None = None
        self.metrics_port = 0
        self.pki: MasterPKI | None = None
        # Before anything is written: a refused --config leaves no data dir behind.
        scheduler = scheduler_framework(scheduler_config)
        self.encryption = SecretEncryption(self.data_dir / KEY_FILE)
        self.store: Store = open_store(
            store_url or sqlite_url(self.data_dir), transformer=self.encryption, etcd_tls=etcd_tls,
            ttls={EVENTS.resource: event_ttl},
        )
        self.metrics = MasterMetrics(self.registry)
        self._state_metrics = ClusterStateMetrics(self.store)
        self.leases = NodeLeases(node_monitor_grace_period)
        # The object registry (self.registry is the Prometheus one, by the metrics convention).
        self.network = network or NetworkConfig()
        self.api = Registry(self.store, self.leases, self.admission, network=self.network)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: grpc.aio.Server | None = None
        self._join_server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._join_health = health_aio.HealthServicer()
        self._serving = False
        self._hub = BoundPodsHub(self.store)
        # What each node's pods reference: the node authorizer's reads of ConfigMaps and Secrets.
        self._graph = NodeGraph(self.store)
        self.api.nodes.on_deleted.append(self._hub.disconnect)
        self._scheduler = Scheduler(self.api, self.metrics, scheduler)
        self._lifecycle = NodeLifecycleController(self.api, eviction_policy, self.registry)
        self._taint_eviction = TaintEvictionController(self.api, self.registry)
        self._event_ttl = EventTTLController(self.api, event_ttl)
        self._controllers = ControllerManager(self.api, self.registry)
        self._metrics_server: MetricsServer | None = None
        self.identity = default_identity()
        self._elector = _elector(store_url, etcd_tls, leader_election, self.identity,
                                 self._start_leading, self._stop_leading, self.metrics)
        # Several masters: the node lease renewals each takes reach the leader through etcd.
        self._lease_relay: LeaseRelay | None = None
        self._lease_relay_task: asyncio.Task | None = None
        if self._elector is not None:
            self._lease_relay = LeaseRelay(
                EtcdClient(parse_etcd_endpoints(store_url or ""), etcd_tls), self.identity,
                self.api.nodes.peer_renewed, min_interval=node_monitor_grace_period / 4,
            )
            self.api.nodes.on_renewed.append(self._lease_relay.renewed)
            self.api.nodes.on_deleted.append(self._lease_relay.forget)

    @property
    def address(self) -> str:
        """The bound mTLS gRPC "HOST:PORT" (after start)."""
        host = self.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    @property
    def join_address(self) -> str:
        """The bound plaintext Bootstrap "HOST:PORT" (after start)."""
        host = self.join_listen.rpartition(":")[0]
        return f"{host}:{self.join_port}"

    @property
    def admin_config_path(self) -> Path:
        """<data-dir>/admin.yaml: the admin client config (written at start)."""
        return self.data_dir / ADMIN_CONFIG

    @property
    def encryption_key_path(self) -> Path:
        """<data-dir>/encryption-key: the key Secrets are encrypted with (made at first start)."""
        return self.encryption.path

    @property
    def token_path(self) -> Path:
        """<data-dir>/token: the join token (written at first start)."""
        return self.data_dir / TOKEN_FILE

    async def start(self) -> None:
        """Loads or creates the PKI, opens the store, starts the background loops, then serves
        gRPC (mTLS and join ports) and metrics, and writes admin.yaml for the bound address."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # Key generation and file writes: off the event loop.
        self.pki = master_pki = await asyncio.to_thread(
            MasterPKI,
            self.data_dir,
            tls_sans=self.tls_sans,
            listen_host=host_of(self.listen),
            certificate_lifetime=self.certificate_lifetime,
            rotate_join_token=self.rotate_join_token,
        )
        # The key first (a broken key file fails here), then the store (a Secret sealed with
        # another key, or with a key now missing, fails there), and only then a new key.
        await asyncio.to_thread(self.encryption.load)
        await self.store.open()
        await asyncio.to_thread(self.encryption.ensure_key)
        self._hub.start()
        self._graph.start()
        self._state_metrics.start()
        if self._elector is None:
            self.metrics.leader.labels(identity=self.identity).set(1)
            await self._start_leading()
        else:
            self._elector.start()
        if self._lease_relay is not None:
            self._lease_relay_task = asyncio.create_task(self._lease_relay.run(), name="lease-relay")

        certificates = NodeCertificates(
            self.store, master_pki.ca, self.certificate_lifetime,
            reserved_names=reserved_node_names(master_pki.server_sans),
        )
        if self.lease_listen:
            self._lease_lane = LeaseLane(self.lease_listen, master_pki, self.api.nodes, self.metrics,
                                         self.store, SERVER_OPTIONS)
            self.lease_port = await self._lease_lane.start()
        server = self._grpc_server(self._graph, MAX_CONCURRENT_RPCS)
        services_pb2_grpc.add_ResourcesServicer_to_server(ResourcesServicer(self.api), server)
        services_pb2_grpc.add_ClusterServicer_to_server(
            ClusterServicer(self.api, master_pki.agent_channel_credentials), server
        )
        services_pb2_grpc.add_NodeAgentServicer_to_server(
            NodeAgentServicer(self.api, self._hub, certificates, self.lease_port), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
        credentials = master_pki.server_credentials()
        self.port = bind(self.listen, lambda: server.add_secure_port(self.listen, credentials))
        # The `kubernetes` Service points at the port just bound (port 0 picks one).
        await MasterService(self.api, host_of(self.listen)).ensure(self.port)

        join_server = self._grpc_server(None, MAX_CONCURRENT_JOIN_RPCS)
        services_pb2_grpc.add_BootstrapServicer_to_server(
            BootstrapServicer(certificates, lambda: master_pki.token), join_server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._join_health, join_server)
        self.join_port = bind(self.join_listen, lambda: join_server.add_insecure_port(self.join_listen))

        await server.start()
        self._server = server
        await join_server.start()
        self._join_server = join_server
        for service in ("", *SERVICE_NAMES):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        for service in ("", BOOTSTRAP_SERVICE):
            await self._join_health.set(service, health_pb2.HealthCheckResponse.SERVING)
        await asyncio.to_thread(master_pki.write_admin_config, client_address(self.listen, self.port))
        self._serving = True
        self._metrics_server = MetricsServer(
            self.metrics_addr, self.registry, healthz=lambda: self._serving, extra=self._state_text
        ).start()
        self.metrics_port = self._metrics_server.port
        # Ports picked by the system (port 0) are known now: no pod may publish them either.
        ports = {self.port, self.join_port, self.lease_port, self.metrics_port} - {0}
        self.admission = dataclasses.replace(self.admission, reserved_host_ports=tuple(sorted(ports)))
        self.api.pods.admission = self.admission
        log.info(
            "pymaster listening address=%s join_address=%s lease_port=%d metrics_port=%d data_dir=%s "
            "admin_config=%s token=%s ca_sha256=%s node_monitor_grace_period=%s",
            self.address,
            self.join_address,
            self.lease_port,
            self.metrics_port,
            self.data_dir,
            self.admin_config_path,
            self.token_path,
            master_pki.ca.sha256,
            self.node_monitor_grace_period,
        )

    @property
    def leading(self) -> bool:
        """Whether this master runs the scheduler and the controllers now."""
        return self._elector is None or self._elector.leading

    async def _start_leading(self) -> None:
        """Starts what only the leader runs (each relists the store, so a restart after a lost
        lease starts from what is stored now)."""
        self._lifecycle.start()
        self._taint_eviction.start()
        self._event_ttl.start()
        await self._controllers.start()
        await self._scheduler.start()

    async def _stop_leading(self) -> None:
        """Stops what only the leader runs; the scheduler first, so no bind follows a lost lease."""
        await self._scheduler.stop()
        await self._lifecycle.stop()
        await self._taint_eviction.stop()
        await self._event_ttl.stop()
        await self._controllers.stop()

    def _grpc_server(self, store: NodeGraph | None, max_concurrent_rpcs: int) -> grpc.aio.Server:
        """A server with the master's interceptor (authenticating when ``store``, the reads of the
        role table, is given)."""
        return grpc.aio.server(
            interceptors=[MasterInterceptor(self.metrics, store, self.unary_timeout)],
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )

    async def stop(self) -> None:
        """Stops serving (in-flight calls get a short grace), then the loops, then the store."""
        self._serving = False
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._join_health.enter_graceful_shutdown()
            # Agent streams end first so that they do not hold the grace period.
            await self._hub.stop()
            servers = [s for s in (self._server, self._join_server) if s is not None]
            await asyncio.gather(*(s.stop(SHUTDOWN_GRACE_SECONDS) for s in servers))
            self._server = self._join_server = None
        if self._lease_lane is not None:
            await self._lease_lane.stop(SHUTDOWN_GRACE_SECONDS)
            self._lease_lane = None
        await self._hub.stop()
        await self._graph.stop()
        await self._state_metrics.stop()
        if self._lease_relay_task is not None:
            self._lease_relay_task.cancel()
            await asyncio.gather(self._lease_relay_task, return_exceptions=True)
            self._lease_relay_task = None
        if self._elector is None:
            await self._stop_leading()
        else:
            # Stops leading (if it leads), then hands the lease over at once.
            await self._elector.stop()
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

    def _state_text(self) -> str:
        """The cluster-state families for a scrape (from the metrics thread)."""
        if not self._serving:
            return render_state(EMPTY_STATE)
        return render_state(self._on_loop(self._state_metrics.snapshot, EMPTY_STATE))

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


def _elector(
    store_url: str | None,
    etcd_tls: EtcdTLS | None,
    config: LeaderElectionConfig | None,
    identity: str,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    metrics: MasterMetrics,
) -> LeaderElector | None:
    """The leader elector on the etcd store's members, or None without leader election."""
    if config is None:
        return None
    if not (store_url or "").startswith("etcd://"):
        raise ValueError("--leader-elect needs an etcd store (--store etcd://HOST:PORT[,HOST:PORT...])")
    return LeaderElector(
        parse_etcd_endpoints(store_url or ""), config, start, stop, identity=identity,
        on_change=lambda who, leading: metrics.set_leader(LEASE_NAME, who, leading),
        client_factory=lambda host, port: EtcdClient([(host, port)], etcd_tls),
    )


def _port(address: str) -> int:
    """The port of "HOST:PORT"."""
    return int(address.rpartition(":")[2])


