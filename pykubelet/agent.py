"""The agent's wiring: start-up checks, the concurrent loops, and shutdown.

Start-up fails fast, with a message naming the fix, when Docker does not answer, the infra
image is missing, or the node has no credentials and no join token (or the join is refused).
The node's certificate (``credentials``) is then both its client certificate towards the master
and the agent API's serving certificate; when it is renewed, the master client reconnects and
the agent API serves the new one. Every loop runs as its own asyncio task (lease, node status,
pod stream, docker events, relist, resync tick, status pushes, events, certificate renewal, pod
workers, probes), so one slow Docker call delays only its own pod. On SIGTERM/SIGINT the loops stop and the
containers keep running, like the kubelet's: the next agent adopts them from their labels.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from pykubelet import node_info
from pykubelet.cluster_view import ClusterView
from pykubelet.config import AgentConfig, default_join_server
from pykubelet.config_objects import ConfigObjects
from pykubelet.config_source import ConfigSource
from pykubelet.credentials import (
    CertificateManager,
    CredentialsError,
    CredentialSettings,
    NodeCredentials,
)
from pykubelet.dns.server import DnsServer
from pykubelet.events import EventRecorder
from pykubelet.executor import PodExecutor
from pykubelet.metrics import AgentMetrics
from pykubelet.network.pod_network import PodNetwork
from pykubelet.network.routes import RouteManager
from pykubelet.node_status import NodeConfig, NodeStatusReporter
from pykubelet.pleg import Pleg
from pykubelet.pod_workers import PodWorkers
from pykubelet.prober import ProbeManager, ProbeMetrics
from pykubelet.proxy.metrics import ProxyMetrics
from pykubelet.proxy.proxier import Proxier
from pykubelet.runtime.base import ImageNeverPullError, Runtime
from pykubelet.runtime.docker import DockerRuntime
from pykubelet.server import AgentServer, ServerTLS
from pykubelet.service_env import services_from
from pykubelet.status import StatusManager
from pykubelet.volumes import PodVolumes
from pymaster.api.metrics_http import MetricsServer
from pymaster.api.network import pod_gateway
from pymaster.client import Client

log = logging.getLogger(__name__)


def agent_version() -> str:
    """The installed package's version ("unknown" when run from a source tree)."""
    try:
        return importlib.metadata.version("pykube")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class StartupError(Exception):
    """A start-up check failed; the message says what to do."""


@dataclass
class _Started:
    """What start-up established."""

    docker_version: str
    internal_ip: str
    certificates: CertificateManager


class Agent:
    """One node agent.

    Args:
        config: the settings.
        registry: the Prometheus registry (a fresh one by default).
    """

    def __init__(self, config: AgentConfig, registry: CollectorRegistry | None = None):
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = AgentMetrics(self.registry, config.node_name)

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Runs until ``stop`` is set or SIGTERM/SIGINT; returns the exit code (1: start-up failed)."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runtime: Runtime | None = None
        try:
            runtime = DockerRuntime(
                base_url=self.config.docker_host, observe=self.metrics.observe_runtime,
                log_limits=self.config.container_logs,
                # Localhost seccomp profiles: <root-dir>/seccomp/<localhostProfile>
                seccomp_dir=os.path.join(self.config.root_dir, "seccomp"),
            )
            # An engine that hangs, or a master not up yet, must not make Ctrl-C wait.
            check = asyncio.create_task(self._start(runtime))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({check, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not check.done():
                check.cancel()
                log.info("pykubelet stopped during start-up node=%s", self.config.node_name)
                return 0
            return await self._serve(runtime, check.result(), stop)
        except StartupError as err:
            log.error("%s", err)
            return 1
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if runtime is not None:
                await runtime.close()

    async def _start(self, runtime: Runtime) -> _Started:
        cfg = self.config
        docker_version = await self._check_runtime(runtime)
        self._prepare_root_dir()
        listen_host = cfg.listen.rpartition(":")[0].strip("[]")
        internal_ip = node_info.internal_ip(listen_host, node_info.primary_ip())
        certificates = CertificateManager(
            CredentialSettings(
                root_dir=cfg.root_dir, node_name=cfg.node_name, server=cfg.server,
                join_server=cfg.join_server or default_join_server(cfg.server), token=cfg.token,
            ),
            metrics=self.metrics,
        )
        try:
            await certificates.start()
        except CredentialsError as err:
            raise StartupError(str(err)) from None
        return _Started(docker_version, internal_ip, certificates)

    async def _check_runtime(self, runtime: Runtime) -> str:
        cfg = self.config
        try:
            version = await runtime.version()
        except Exception as err:
            raise StartupError(f"cannot reach the Docker Engine at {cfg.docker_host}: {err}") from None
        try:
            await runtime.ensure_image(cfg.infra_image, "Never")
        except ImageNeverPullError:
            raise StartupError(
                f"infra image {cfg.infra_image} not found locally; build it with `make images` "
                "or pass --pod-infra-image"
            ) from None
        except Exception as err:
            raise StartupError(f"cannot check the infra image {cfg.infra_image}: {err}") from None
        return version

    async def _serve(self, runtime: Runtime, started: _Started, stop: asyncio.Event) -> int:
        cfg = self.config
        docker_version, internal_ip = started.docker_version, started.internal_ip
        certificates = started.certificates
        listen_host = cfg.listen.rpartition(":")[0]
        creds = certificates.credentials

        tls = ServerTLS(creds.key_pem, creds.cert_pem, creds.ca_pem)
        server = AgentServer(cfg.listen, runtime, cfg.node_name, tls)
        try:
            api_port = await server.start()
        except RuntimeError as err:
            raise StartupError(f"cannot listen on --listen {cfg.listen}: {err}") from None
        # The explicit server wins over $PYKUBE_SERVER, which the Client would prefer to the config's.
        client = Client(server=cfg.server, config=certificates.client_config())

        async def rotated(new: NodeCredentials) -> None:
            tls.update(new.key_pem, new.cert_pem, new.ca_pem)
            await client.reconnect(certificates.client_config())
            info = new.info()
            log.info("node certificate rotated node=%s serial=%s not_after=%s", cfg.node_name, info.serial,
                     info.not_after.isoformat())

        certificates.on_rotate(rotated)
        self.metrics.certificate_ttl.set_function(certificates.ttl_seconds)
        status_manager = StatusManager(client)

        # The workers and the pod source refer to each other (changes -> syncs, syncs read the
        # desired set); the closure breaks the cycle.
        def pod_changed(uid: str) -> None:
            workers.wake(uid)

        source = ConfigSource(client, cfg.node_name, on_change=pod_changed)
        # Pods' volumes live under <root-dir>/pods (emptyDir directories, tmpfs mounts, staged
        # hostPath binds); hostPaths are checked against the admission's prefixes once more there.
        objects = ConfigObjects(client)
        volumes = PodVolumes(Path(cfg.root_dir) / "pods", cfg.policy.allowed_host_paths, objects)
        recorder = EventRecorder(client, cfg.node_name, on_dropped=self.metrics.events_dropped.inc)
        probes = ProbeManager(
            runtime, internal_ip, on_change=pod_changed, recorder=recorder,
            metrics=ProbeMetrics(self.registry),
        )
        # Services, EndpointSlices and Nodes: the proxy, the DNS server, pod routes, service env vars.
        view = ClusterView(client)
        executor = PodExecutor(
            runtime, volumes, cfg.node_name, cfg.infra_image, internal_ip, recorder, objects,
            # The pod network is made below, after the reporter it reads the node's podCIDR from.
            sandbox_config=lambda pod: pod_network.sandbox_config(pod),
            services_for=services_from(view.services),
        )
        workers = PodWorkers(
            executor, source.pods, source.synced, status_manager, self.metrics, cfg.node_name, internal_ip,
            cfg.policy, probes=probes, recorder=recorder,
            # The reporter (made below) knows the node's allocatable; pods sync only once it runs.
            allocatable=lambda fresh: reporter.allocatable(fresh),
        )
        pleg = Pleg(runtime, cfg.node_name, workers.wake, self.metrics, on_relist=workers.reap)
        reporter = NodeStatusReporter(
            client,
            NodeConfig(
                name=cfg.node_name, labels=cfg.node_labels, taints=cfg.register_with_taints,
                max_pods=cfg.max_pods, internal_ip=internal_ip,
                api_port=api_port, root_dir=cfg.root_dir, runtime_version=docker_version,
                agent_version=agent_version(), lease_interval=cfg.lease_interval,
                status_interval=cfg.status_interval, extended_resources=cfg.extended_resources,
            ),
            counts=lambda: pleg.counts,
            on_unauthenticated=certificates.renew_soon,
            not_ready=pleg.unhealthy_message,
        )
        pod_network = PodNetwork(runtime, cfg.node_name, reporter)
        routes = RouteManager(view.nodes, lambda: pod_network.pod_cidr)
        try:
            metrics_server = MetricsServer(cfg.metrics_addr, self.registry, healthz=pleg.healthy).start()
        except OSError as err:
            await server.stop(0)
            await client.close()
            raise StartupError(f"cannot listen on --metrics-addr {cfg.metrics_addr}: {err}") from None
        log.info(
            "pykubelet started node=%s server=%s api=%s:%d metrics=%s:%d docker=%s docker_version=%s "
            "infra_image=%s internal_ip=%s allow_privileged=%s allow_host_network=%s allowed_host_paths=%s "
            "container_log_max_size=%d container_log_max_files=%d",
            cfg.node_name, cfg.server, listen_host, api_port, cfg.metrics_addr.rpartition(":")[0],
            metrics_server.port, cfg.docker_host, docker_version, cfg.infra_image, internal_ip,
            cfg.policy.allow_privileged, cfg.policy.allow_host_network,
            ",".join(cfg.policy.allowed_host_paths) or "none",
            cfg.container_logs.max_size, cfg.container_logs.max_files,
        )

        async def watch_pods() -> None:
            # The master streams a node's pods once it knows the node; containers get the service
            # env vars, so the services are listed first.
            await reporter.registered.wait()
            await view.services.synced.wait()
            await source.run()

        async def follow_cluster() -> None:
            await reporter.registered.wait()
            await view.run()

        async def proxy() -> None:
            # The address plan (cluster and service CIDRs, NodePort range) comes with registration.
            await reporter.registered.wait()
            await Proxier(view, cfg.node_name, reporter.network, metrics=ProxyMetrics(self.registry)).run()

        async def serve_dns() -> None:
            await reporter.registered.wait()
            if not reporter.pod_cidr:  # no pod network: pods resolve with the host's DNS (Default)
                log.warning("no pod CIDR for node=%s: no node-local DNS server", cfg.node_name)
                return
            await DnsServer(view, reporter.network, pod_gateway(reporter.pod_cidr)).run()

        loops: dict[str, Coroutine[Any, Any, None]] = {
            "lease": reporter.run_lease(),
            "node-status": reporter.run_status(),
            "pod-source": watch_pods(),
            "cluster-view": follow_cluster(),
            "cluster-dns": serve_dns(),
            "pod-network": pod_network.run(),
            "pod-routes": routes.run(),
            "pleg-relist": pleg.run_relist(),
            "pleg-events": pleg.run_events(),
            "resync": workers.run_resync(),
            "status-manager": status_manager.run(),
            "events": recorder.run(),
            "certificates": certificates.run(),
        }
        if cfg.proxy_mode == "iptables":
            loops["proxy"] = proxy()
        tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        code = 0
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopped}:
                # The loops never end on their own; one that did is a bug: exit so a supervisor restarts.
                log.error("loop ended unexpectedly loop=%s error=%r", task.get_name(),
                          task.exception() if not task.cancelled() else "cancelled")
                code = 1
        finally:
            log.info("pykubelet stopping node=%s (containers keep running)", cfg.node_name)
            for task in [stopped, *tasks]:
                task.cancel()
            await asyncio.gather(stopped, *tasks, return_exceptions=True)
            await workers.stop()
            await probes.stop()
            await server.stop(1.0)
            metrics_server.close()
            await client.close()
        log.info("pykubelet stopped node=%s", cfg.node_name)
        return code

    def _prepare_root_dir(self) -> None:
        # It holds the node's credentials (pki/) and emptyDir volumes (pods/); Docker's labels
        # are the agent's memory of its pods. Its filesystem is the one reported as disk usage.
        try:
            os.makedirs(self.config.root_dir, exist_ok=True)
        except OSError as err:
            raise StartupError(f"cannot create --root-dir {self.config.root_dir}: {err}") from None
