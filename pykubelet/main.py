"""``pykubelet``: the node agent's command line. Parses the flags, sets up key=value logging and
runs the agent until SIGTERM/SIGINT (exit 0) or a failed start-up check (exit 1).

The join token comes from ``--token``, ``--token-file`` or $PYKUBE_TOKEN (in that order); the
file or the variable keep it out of ``ps``. It is needed only for the first start (or to join
again): afterwards the node's key and certificate under ``<root-dir>/pki`` are reused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Mapping

import prometheus_client

from pykubelet import node_info
from pykubelet.config import AgentConfig, default_join_server, parse_address, parse_servers
from pykubelet.runtime.base import ContainerLogLimits
from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy, check_sysctl_pattern, normalize_host_path
from pymaster.api.errors import ValidationError
from pymaster.api.quantity import format_bytes, memory_bytes
from pymaster.api.resource_validation import check_extended_resource_name
from pymaster.api.scheduling_validation import check_taints
from pymaster.api.taints import parse_taint
from pymaster.api.tokens import JoinToken

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_SERVER = "127.0.0.1:6443"
TOKEN_ENV = "PYKUBE_TOKEN"
PROXY_MODES = ("iptables", "none")

# A label key is an optional DNS-subdomain prefix and a name; values are names or empty.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = re.compile(rf"({_LABEL_PREFIX}/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
# Node names are DNS-1123 subdomains, like the label prefix.
_NODE_NAME = re.compile(_LABEL_PREFIX)
_MIN_LOG_FILES = 2  # the kubelet's minimum of --container-log-max-files


def parse_node_labels(text: str) -> dict[str, str]:
    """Parses ``--node-labels``: "k=v,k2=v2" (empty text: no labels).

    Raises:
        ValueError: a pair is not key=value or its key/value is not a valid label; the message
            names the flag and the pair.
    """
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"--node-labels: {item!r} is not key=value")
        prefix = key.partition("/")[0] if "/" in key else ""
        if not _LABEL_KEY.fullmatch(key) or len(prefix) > 253:
            raise ValueError(f"--node-labels: invalid label key {key!r}")
        if not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"--node-labels: invalid value {value!r} for label {key!r}")
        labels[key] = value
    return labels


def parse_extended_resource(text: str) -> tuple[str, str]:
    """Parses one ``--extended-resource NAME=COUNT``: an extended resource name as the master
    validates it (a domain with a dot, outside ``kubernetes.io/``) and a whole count.

    Raises:
        argparse.ArgumentTypeError: the message names what is wrong.
    """
    name, sep, count = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not DOMAIN/NAME=COUNT (e.g. example.com/dongle=4)")
    try:
        check_extended_resource_name("name", name)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(f"{name!r}: {err.detail}") from None
    if not count.isdigit():
        raise argparse.ArgumentTypeError(f"{name!r}: the count {count!r} must be a whole number")
    return name, str(int(count))


def parse_sysctl_patterns(text: str) -> tuple[str, ...]:
    """Parses ``--allowed-unsafe-sysctls``: comma-separated sysctl names, or prefixes ending in
    ``*`` (``kernel.msg*,net.core.somaxconn``), as the kubelet's flag; only namespaced sysctls.

    Raises:
        argparse.ArgumentTypeError: an entry that is no sysctl name, or not namespaced.
    """
    patterns = []
    for pattern in (part.strip() for part in text.split(",") if part.strip()):
        try:
            patterns.append(check_sysctl_pattern(pattern))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return tuple(patterns)


def read_token(token: str | None, token_file: str | None, env: Mapping[str, str]) -> JoinToken | None:
    """The join token of ``--token``, else ``--token-file``, else $PYKUBE_TOKEN (None: none).

    Raises:
        ValueError: the file cannot be read or the token is malformed; the message names where
            it came from and never contains the secret.
    """
    if token:
        source, text = "--token", token
    elif token_file:
        source = "--token-file"
        try:
            with open(token_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise ValueError(f"--token-file: cannot read {token_file}: {err.strerror or err}") from None
    elif env.get(TOKEN_ENV):
        source, text = "$" + TOKEN_ENV, env[TOKEN_ENV]
    else:
        return None
    try:
        return JoinToken.parse(text)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def _host_path_prefix(text: str) -> str:
    try:
        return normalize_host_path(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute path") from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _labels_flag(text: str) -> dict[str, str]:
    try:
        return parse_node_labels(text)
    except ValueError as err:
        # argparse prefixes the flag itself.
        raise argparse.ArgumentTypeError(str(err).removeprefix("--node-labels: ")) from None


def _taints_flag(text: str) -> list[objects_pb2.Taint]:
    """``--register-with-taints``: the kubelet's "k=v:Effect,k2:Effect" (empty text: none),
    checked as the master checks a node's taints."""
    taints = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            taint = parse_taint(item)
            check_taints("", [taint])
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        except ValidationError as err:
            raise argparse.ArgumentTypeError(f"{item}: {err.detail}") from None
        taints.append(taint)
    try:
        check_taints("", taints)  # the same key and effect twice
    except ValidationError as err:
        raise argparse.ArgumentTypeError(err.detail) from None
    return taints


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_log_max_size(text: str) -> int:
    """Parses ``--container-log-max-size``: a Kubernetes quantity ("10Mi", "500Ki", "1G") of
    bytes, rounded up.

    Raises:
        argparse.ArgumentTypeError: not a quantity, not positive, or over 2^63-1 bytes (argparse
            names the flag).
    """
    try:
        size = memory_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (expected a size such as 10Mi)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be a positive size, got {text!r}")
    return size


def parse_log_max_files(text: str) -> int:
    """Parses ``--container-log-max-files``: an integer of at least 2, as the kubelet requires
    (the file being written and at least one rotated one).

    Raises:
        argparse.ArgumentTypeError: not such an integer (argparse names the flag).
    """
    if not text.isdigit() or int(text) < _MIN_LOG_FILES:
        raise argparse.ArgumentTypeError(f"must be an integer of at least {_MIN_LOG_FILES}, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``pykubelet``."""
    p = argparse.ArgumentParser(
        prog="pykubelet",
        description="The pykube node agent: registers this host with the master and runs the pods "
        "bound to it on the local Docker Engine.",
    )
    p.add_argument("--server", default=os.environ.get("PYKUBE_SERVER") or DEFAULT_SERVER,
                   metavar="HOST:PORT[,HOST:PORT...]",
                   help="the master's mutual-TLS API, or several masters' (tried in turn when one is "
                   "unavailable) (default: $PYKUBE_SERVER or 127.0.0.1:6443)")
    p.add_argument("--join-server", metavar="HOST:PORT",
                   help="the master's plaintext join port (its --join-listen; default: the --server host "
                   "with port + 1)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", metavar="TOKEN",
                       help="the join token (the master's <data-dir>/token), needed when the node has no "
                       f"credentials under <root-dir>/pki yet; also ${TOKEN_ENV}")
    token.add_argument("--token-file", metavar="PATH", help="read the join token from this file")
    p.add_argument("--node-name", default=node_info.hostname(),
                   help="this node's name (default: the hostname, lowercased)")
    p.add_argument("--root-dir", default="/var/lib/pykubelet", metavar="DIR",
                   help="the agent's directory: node credentials (pki/) and emptyDir volumes (pods/); its "
                   "filesystem is reported as disk usage")
    p.add_argument("--listen", default="127.0.0.1:10250", metavar="HOST:PORT",
                   help="the agent's gRPC API (logs; mutual TLS, the master only); port 0 picks a free one")
    p.add_argument("--metrics-addr", default="127.0.0.1:10255", metavar="HOST:PORT",
                   help="/metrics and /healthz; port 0 picks a free one")
    p.add_argument("--status-interval", type=_positive_seconds, default=10.0,
                   metavar="SECONDS", help="node status report period")
    p.add_argument("--lease-interval", type=_positive_seconds, default=10.0,
                   metavar="SECONDS", help="requested lease period (the master may set another)")
    p.add_argument("--max-pods", type=_positive_int, default=110, help="the node's pod capacity")
    p.add_argument("--node-labels", type=_labels_flag, default={}, metavar="K=V,...",
                   help="labels added to the node")
    p.add_argument("--register-with-taints", type=_taints_flag, default=[], metavar="K=V:EFFECT,...",
                   help="taints the node is created with (the kubelet's flag; a node the master knows "
                   "already keeps its own)")
    p.add_argument("--pod-infra-image", default="pykube/pause:3.9", metavar="IMAGE",
                   help="the image of pods' infra containers (never pulled)")
    p.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST,
                   metavar="URL", help="the Docker Engine (default: $DOCKER_HOST or the local socket)")
    p.add_argument("--allow-privileged", action="store_true",
                   help="run containers with securityContext.privileged (refused by default)")
    p.add_argument("--allow-host-network", action="store_true",
                   help="run pods with hostNetwork (refused by default)")
    p.add_argument("--allowed-host-path", action="append", type=_host_path_prefix, default=[],
                   metavar="PREFIX", help="a host directory pods may mount as hostPath, with everything "
                   "under it; repeatable (default: none)")
    p.add_argument("--allow-privileged-host-ports", action="store_true",
                   help="run containers publishing a hostPort below 1024 (refused by default; the agent's "
                   "own --listen and --metrics-addr ports are refused always)")
    p.add_argument("--extended-resource", action="append", type=parse_extended_resource, default=[],
                   metavar="DOMAIN/NAME=COUNT", help="an extended resource this node advertises in its "
                   "capacity (e.g. example.com/dongle=4); repeatable")
    p.add_argument("--allowed-unsafe-sysctls", type=parse_sysctl_patterns, default=(),
                   metavar="NAME[,NAME*...]", help="sysctls outside Kubernetes' safe set that pods may "
                   "set (names, or prefixes ending in *); default: none")
    defaults = ContainerLogLimits()
    p.add_argument("--container-log-max-size", type=parse_log_max_size, default=defaults.max_size,
                   metavar="QUANTITY", help="the size at which a container's log file is rotated "
                   f"(default {format_bytes(defaults.max_size)})")
    p.add_argument("--container-log-max-files", type=parse_log_max_files, default=defaults.max_files,
                   metavar="N", help="log files kept per container, the current one included "
                   f"(default {defaults.max_files}, at least {_MIN_LOG_FILES})")
    p.add_argument("--proxy-mode", default="iptables", choices=list(PROXY_MODES),
                   help="the node proxy: iptables (Services through the host's nat table, as kube-proxy's "
                   "iptables mode; one agent per host programs it, the others stand by) or none")
    p.add_argument("--cleanup", action="store_true",
                   help="remove every iptables rule and chain of the node proxy and the pod network, then "
                   "exit (like kube-proxy --cleanup)")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the flags; exits with status 2 and a message naming the flag on error.

    ``args.token`` becomes a ``JoinToken`` (or None) and ``args.join_server`` is always set.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.node_name = args.node_name.strip().lower()
    if len(args.node_name) > 253 or not _NODE_NAME.fullmatch(args.node_name):
        parser.error(
            f"--node-name: {args.node_name!r} is not a valid node name (lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit)"
        )
    for flag in ("listen", "metrics_addr"):
        try:
            parse_address(getattr(args, flag), "--" + flag.replace("_", "-"))
        except ValueError as err:
            parser.error(str(err))
    try:
        # Several masters: "a:6443,b:6443" (the client fails over between them).
        parse_servers(args.server, "--server")
        if args.join_server is None:
            args.join_server = default_join_server(args.server)
        else:
            parse_servers(args.join_server, "--join-server")
        args.token = read_token(args.token, args.token_file, os.environ)
    except ValueError as err:
        parser.error(str(err))
    return args


def configure_logging(level: str) -> None:
    """key=value log lines on stderr."""
    logging.basicConfig(
        level=level,
        format="time=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    # grpc and docker-py chatter is not the agent's story.
    for noisy in ("urllib3", "docker", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def cleanup() -> int:
    """``--cleanup``: removes the node proxy's and the pod network's rules and chains from the host;
    the exit status (0, or 1 when iptables failed)."""
    from pykubelet.network.iptables_rules import cleanup_pod_network_rules
    from pykubelet.proxy.cleanup import cleanup_proxy_rules
    from pykubelet.proxy.iptables import IptablesError

    try:
        asyncio.run(cleanup_proxy_rules())
    except (IptablesError, OSError) as err:
        logging.getLogger(__name__).error("cleanup failed: %s", err)
        return 1
    cleanup_pod_network_rules()
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the agent and exits with its status."""
    args = parse_args(argv)
    # Kubernetes components export no *_created series; dashboards written for them expect none.
    prometheus_client.disable_created_metrics()
    configure_logging(args.log_level)
    if args.cleanup:
        sys.exit(cleanup())
    # Imported here so that --help works (and is fast) even without Docker libraries loaded.
    from pykubelet.agent import Agent

    config = AgentConfig(
        server=args.server,
        node_name=args.node_name,
        docker_host=args.docker_host,
        root_dir=args.root_dir,
        listen=args.listen,
        metrics_addr=args.metrics_addr,
        status_interval=args.status_interval,
        lease_interval=args.lease_interval,
        max_pods=args.max_pods,
        node_labels=args.node_labels,
        register_with_taints=args.register_with_taints,
        infra_image=args.pod_infra_image,
        join_server=args.join_server,
        token=args.token,
        policy=AdmissionPolicy.of(
            allow_privileged=args.allow_privileged,
            allow_host_network=args.allow_host_network,
            allowed_host_paths=args.allowed_host_path,
            allow_privileged_host_ports=args.allow_privileged_host_ports,
            reserved_host_ports=[parse_address(args.listen, "--listen")[1],
                                 parse_address(args.metrics_addr, "--metrics-addr")[1]],
            allowed_unsafe_sysctls=args.allowed_unsafe_sysctls,
        ),
        extended_resources=dict(args.extended_resource),
        proxy_mode=args.proxy_mode,
        container_logs=ContainerLogLimits(
            max_size=args.container_log_max_size, max_files=args.container_log_max_files
        ),
    )
    sys.exit(asyncio.run(Agent(config).run()))


if __name__ == "__main__":
    main()
