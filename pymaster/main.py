"""``pymaster``: the master daemon's command line.

    pymaster --data-dir ./pykube-data --listen 127.0.0.1:6443 --metrics-addr 127.0.0.1:8080 \\
             --node-monitor-grace-period 40 --log-level info

Secure by default: the first start creates the cluster CA, the master's certificates, the admin
client config (``<data-dir>/admin.yaml``), the join token (``<data-dir>/token``) and the key
Secrets are encrypted with at rest (``<data-dir>/encryption-key``); later starts reuse them (a
wrong or missing key for the stored Secrets stops the start, saying so). ``--listen`` is mutual
TLS only; agents join through ``--join-listen`` (plaintext, Bootstrap only) with the token and
renew their node leases on ``--lease-listen`` (mutual TLS, pymaster.server.lease_lane).
Privileged containers, host networking and host paths are refused unless allowed by flags. Logs
are key=value lines on stderr; the start line names the addresses and the paths of admin.yaml
and the token. SIGTERM or SIGINT stops it gracefully:
health turns NOT_SERVING, in-flight calls get a short grace, then the store is closed.

Several masters on one etcd (``--store etcd://...``) share one CA, admin config, join token and
Secrets encryption key: ``pymaster init --data-dir DIR [--tls-san NAME...] [--server A,B,C]``
writes them once and exits; every replica starts from a copy of DIR with ``--leader-elect``
(only the elected one runs the scheduler and the controllers; see pymaster.leader).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable

import prometheus_client
import uvloop

from pymaster.api.default_tolerations import DEFAULT_TOLERATION_SECONDS
from pymaster.api.errors import ValidationError
from pymaster.api.network import (
    DEFAULT_CLUSTER_CIDR,
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    NetworkConfig,
)
from pymaster.app import MasterApp
from pymaster.controllers.event_ttl import DEFAULT_EVENT_TTL_SECONDS
from pymaster.controllers.eviction_rate import EvictionPolicy
from pymaster.leader import LeaderElectionConfig
from pymaster.logs import configure_logging
from pymaster.server.interceptors import DEFAULT_UNARY_TIMEOUT_SECONDS
from pymaster.server.tls import DEFAULT_CERTIFICATE_LIFETIME, MasterPKI
from pymaster.store.encryption import KEY_FILE, SecretEncryption
from pymaster.store.etcd_client import EtcdTLS

log = logging.getLogger("pymaster")


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {value!r}")
    return seconds


def _non_negative(kind: type) -> Callable[[str], float | int]:
    """An argparse type: a number of ``kind`` (float or int) that is 0 or more."""

    def parse(value: str) -> float | int:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        if number < 0 or number != number:
            raise argparse.ArgumentTypeError(f"must be 0 or more: {value!r}")
        return number

    return parse


def _fraction(value: str) -> float:
    number = _non_negative(float)(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1: {value!r}")
    return number


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return value


def _host_path_prefix(value: str) -> str:
    if not value.startswith("/"):
        raise argparse.ArgumentTypeError(f"must be an absolute path, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymaster", description="The pykube master: API server, store and scheduler."
    )
    parser.add_argument(
        "--data-dir",
        default="./pykube-data",
        help="pki/, admin.yaml, the join token, the encryption key and (by default) the SQLite store "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="where the objects live: sqlite:///PATH (default: sqlite://<data-dir>/pykube.db) or "
        "etcd://HOST:PORT[,HOST:PORT...], the client URLs of etcd members",
    )
    parser.add_argument("--etcd-cafile", metavar="PATH", help="CA of the etcd members' certificates (TLS)")
    parser.add_argument("--etcd-certfile", metavar="PATH", help="client certificate for etcd (TLS)")
    parser.add_argument("--etcd-keyfile", metavar="PATH", help="client key for etcd (TLS)")
    parser.add_argument(
        "--listen",
        type=_address,
        default="127.0.0.1:6443",
        help="gRPC address HOST:PORT (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-addr",
        type=_address,
        default="127.0.0.1:8080",
        help="HOST:PORT serving /metrics and /healthz (default: %(default)s)",
    )
    parser.add_argument(
        "--node-monitor-grace-period",
        type=_positive_seconds,
        default=40.0,
        help="seconds without a lease renewal before a node turns Ready=Unknown (default: 40)",
    )
    defaults = EvictionPolicy()
    parser.add_argument(
        "--node-eviction-rate",
        type=_non_negative(float),
        default=defaults.rate,
        metavar="NODES_PER_SECOND",
        help="how many failed nodes per second get their NoExecute taint (and so have their pods "
        "evicted) in a healthy zone (default: %(default)g)",
    )
    parser.add_argument(
        "--secondary-node-eviction-rate",
        type=_non_negative(float),
        default=defaults.secondary_rate,
        metavar="NODES_PER_SECOND",
        help="the same when a zone is unhealthy (see --unhealthy-zone-threshold); 0 in zones of at "
        "most --large-cluster-size-threshold nodes (default: %(default)g)",
    )
    parser.add_argument(
        "--unhealthy-zone-threshold",
        type=_fraction,
        default=defaults.unhealthy_zone_threshold,
        metavar="FRACTION",
        help="fraction of not-Ready nodes (at least 3) from which a zone is unhealthy "
        "(default: %(default)g)",
    )
    parser.add_argument(
        "--large-cluster-size-threshold",
        type=_non_negative(int),
        default=defaults.large_cluster_size_threshold,
        metavar="NODES",
        help="zones of more nodes keep the secondary eviction rate when unhealthy (default: %(default)d)",
    )
    for which in ("not-ready", "unreachable"):
        parser.add_argument(
            f"--default-{which}-toleration-seconds",
            type=_non_negative(int),
            default=DEFAULT_TOLERATION_SECONDS,
            metavar="SECONDS",
            help=f"tolerationSeconds of the {which}:NoExecute toleration every new pod gets, unless it "
            "has one (default: %(default)d)",
        )
    parser.add_argument(
        "--join-listen",
        type=_address,
        default=None,
        help="plaintext address HOST:PORT of the Bootstrap service agents join through "
        "(default: the --listen host, port + 1; port 0 picks a free one, logged)",
    )
    parser.add_argument(
        "--lease-listen",
        type=lambda v: "" if v == "off" else _address(v),
        default=None,
        help="mutual-TLS address HOST:PORT where node lease renewals are served by a process of their "
        "own, so API load never delays them (default: the --listen host, port + 2; port 0 picks a "
        "free one, logged; off: renewals on --listen)",
    )
    parser.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP of the serving certificate, for tools that check the address they "
        "dial (pyctl and agents check the name pymaster); repeatable or comma-separated (always: "
        "pymaster, kubernetes[.default[.svc[.cluster.local]]], localhost, 127.0.0.1, ::1 and the "
        "--listen host); no node may take one of these names",
    )
    parser.add_argument(
        "--certificate-lifetime",
        type=_positive_seconds,
        default=float(DEFAULT_CERTIFICATE_LIFETIME),
        metavar="SECONDS",
        help="lifetime of node certificates; agents renew theirs well before expiry; the master's own "
        f"certificates live at least a year (default: {DEFAULT_CERTIFICATE_LIFETIME} = one year)",
    )
    parser.add_argument(
        "--rotate-join-token",
        action="store_true",
        help="write a new join token at start; the old one stops working for new joins "
        "(nodes that joined keep their certificates)",
    )
    parser.add_argument(
        "--allow-privileged", action="store_true", help="admit pods with privileged containers"
    )
    parser.add_argument(
        "--allow-host-network", action="store_true", help="admit pods with spec.hostNetwork: true"
    )
    parser.add_argument(
        "--allowed-host-path",
        action="append",
        default=[],
        type=_host_path_prefix,
        metavar="PREFIX",
        help="admit hostPath volumes under this absolute path prefix; repeatable (default: none)",
    )
    parser.add_argument(
        "--allow-privileged-host-ports",
        action="store_true",
        help="admit container ports with a hostPort below 1024 (the master's own ports never)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=DEFAULT_UNARY_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="longest a unary call may run before DEADLINE_EXCEEDED (default: %(default)g)",
    )
    parser.add_argument(
        "--event-ttl",
        type=_positive_seconds,
        default=DEFAULT_EVENT_TTL_SECONDS,
        metavar="SECONDS",
        help="how long an event is kept after its last occurrence (default: %(default)g, one hour)",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="the scheduler's configuration, a KubeSchedulerConfiguration-like YAML file "
        "(default: the default profile)",
    )
    parser.add_argument(
        "--cluster-cidr", default=DEFAULT_CLUSTER_CIDR, metavar="CIDR",
        help="pods' addresses; each node gets a /24 of it as spec.podCIDR (default: %(default)s)",
    )
    parser.add_argument(
        "--service-cluster-ip-range", default=DEFAULT_SERVICE_CIDR, metavar="CIDR",
        help="Services' ClusterIPs (default: %(default)s)",
    )
    parser.add_argument(
        "--service-node-port-range", default=DEFAULT_NODE_PORT_RANGE, metavar="LOW-HIGH",
        help="NodePort Services' ports (default: %(default)s)",
    )
    parser.add_argument(
        "--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN, metavar="DOMAIN",
        help="the DNS domain of Services and pods (default: %(default)s)",
    )
    _leader_election_flags(parser)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    return parser


def _leader_election_flags(parser: argparse.ArgumentParser) -> None:
    """kube-controller-manager's leader election flags and defaults."""
    defaults = LeaderElectionConfig()
    parser.add_argument(
        "--leader-elect", action="store_true",
        help="run the scheduler and the controllers only while this master holds the leader lease in "
        "etcd (several masters on one --store etcd://...); every master serves the API",
    )
    for flag, default, text in (
        ("lease-duration", defaults.lease_duration,
         "how long other candidates wait after the leader's last renewal before taking over"),
        ("renew-deadline", defaults.renew_deadline,
         "how long the leader retries renewing before it stops leading; less than the lease duration"),
        ("retry-period", defaults.retry_period, "how often the leader renews and candidates retry"),
    ):
        parser.add_argument(
            f"--leader-elect-{flag}", type=_positive_seconds, default=default, metavar="SECONDS",
            help=f"{text} (default: %(default)g)",
        )


def leader_election(args: argparse.Namespace) -> LeaderElectionConfig | None:
    """The election durations of --leader-elect, or None without it."""
    if not args.leader_elect:
        return None
    return LeaderElectionConfig(
        args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period
    )


def build_init_parser() -> argparse.ArgumentParser:
    """``pymaster init``: the shared files of several masters, written once."""
    parser = argparse.ArgumentParser(
        prog="pymaster init",
        description="Write the cluster CA, the masters' certificates, the admin client config, the join "
        "token and the Secrets encryption key into --data-dir, then exit; start every master from a "
        "copy of that directory.",
    )
    parser.add_argument("--data-dir", default="./pykube-data", help="(default: %(default)s)")
    parser.add_argument(
        "--tls-san", action="append", default=[], metavar="NAME",
        help="extra DNS name or IP of the serving certificate (every master's address); repeatable or "
        "comma-separated",
    )
    parser.add_argument(
        "--server", default="127.0.0.1:6443", metavar="HOST:PORT[,HOST:PORT...]",
        help="the masters admin.yaml lists, in the order clients try them (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    return parser


def init_data_dir(data_dir: str, tls_sans: list[str], servers: str) -> None:
    """Writes the PKI, admin.yaml (listing ``servers``), the join token and the encryption key.

    Raises:
        OSError: the directory cannot be written.
        ValueError: a broken CA or token already there, or a server that is not HOST:PORT.
    """
    for server in servers.split(","):
        _address(server.strip())
    master_pki = MasterPKI(data_dir, tls_sans=tls_sans)
    master_pki.write_admin_config(servers)
    encryption = SecretEncryption(master_pki.data_dir / KEY_FILE)
    encryption.load()
    encryption.ensure_key()
    log.info("pymaster init done data_dir=%s admin_config=%s token=%s ca_sha256=%s servers=%s",
             data_dir, master_pki.admin_config_path, master_pki.token_path, master_pki.ca.sha256, servers)


async def _run(args: argparse.Namespace) -> None:
    network = NetworkConfig(args.cluster_cidr, args.service_cluster_ip_range, args.service_node_port_range,
                            args.cluster_domain)
    try:
        network.check()
    except ValidationError as err:
        raise ValueError(str(err)) from None
    app = MasterApp(
        args.data_dir,
        args.listen,
        args.metrics_addr,
        args.node_monitor_grace_period,
        join_listen=args.join_listen,
        lease_listen=args.lease_listen,
        tls_sans=args.tls_san,
        certificate_lifetime=args.certificate_lifetime,
        allow_privileged=args.allow_privileged,
        allow_host_network=args.allow_host_network,
        allowed_host_paths=args.allowed_host_path,
        allow_privileged_host_ports=args.allow_privileged_host_ports,
        rotate_join_token=args.rotate_join_token,
        unary_timeout=args.request_timeout,
        event_ttl=args.event_ttl,
        scheduler_config=args.config,
        eviction_policy=EvictionPolicy(
            args.node_eviction_rate,
            args.secondary_node_eviction_rate,
            args.unhealthy_zone_threshold,
            args.large_cluster_size_threshold,
        ),
        not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
        unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
        network=network,
        leader_election=leader_election(args),
        store_url=args.store,
        etcd_tls=EtcdTLS(args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        tune_gc()
        await stop.wait()
        log.info("pymaster stopping on signal")
    finally:
        await app.stop()


# Allocations between young collections, and young (then middle) collections between older ones:
# Python's defaults are 700, 10, 10. Measured with bench/scheduler.py at 5,000 nodes, the defaults
# stop the master for full collections of up to ~90 ms (every thread waits on the GIL); with these,
# one full collection of ~20 ms in the run, and less time in the collector.
GC_THRESHOLDS = (10_000, 20, 100)


def tune_gc() -> None:
    """Moves what start-up allocated (modules, the relisted store) out of the collector's sight
    and makes collections rarer (GC_THRESHOLDS): a full one walks every object the master holds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: list[str] | None = None) -> int:
    """Runs the master until SIGTERM/SIGINT (or ``init``: writes the shared files and exits).
    Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["init"]:
        return _init(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    election = leader_election(args)
    if election is not None:
        try:
            election.check()
        except ValueError as err:
            parser.error(str(err))
    # Kubernetes components export no *_created series; dashboards written for them expect none.
    prometheus_client.disable_created_metrics()
    configure_logging(args.log_level)
    try:
        # uvloop's event loop (libuv): the master's loop runs every call, watch and the
        # scheduler; at 5,000 nodes it costs about a tenth less CPU per pod than asyncio's.
        uvloop.run(_run(args))
    except (OSError, ValueError) as err:
        # A port in use, an unwritable data dir, a broken CA or token file.
        log.error("pymaster failed to start error=%r", str(err))
        return 1
    return 0


def _init(argv: list[str]) -> int:
    parser = build_init_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        init_data_dir(args.data_dir, args.tls_san, args.server)
    except argparse.ArgumentTypeError as err:
        parser.error(f"--server: {err}")
    except (OSError, ValueError) as err:
        log.error("pymaster init failed error=%r", str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
