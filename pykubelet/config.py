"""The agent's settings: the ``AgentConfig`` its flags fill, and the address rules they share
(``pykubelet.main`` parses the command line into it, ``pykubelet.agent`` runs with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pykubelet.runtime.base import ContainerLogLimits
from pymaster.api import objects_pb2
from pymaster.api.admission import AdmissionPolicy
from pymaster.api.tokens import JoinToken


@dataclass
class AgentConfig:
    """The agent's settings (the flags of ``pykubelet``)."""

    server: str
    node_name: str
    docker_host: str
    root_dir: str = "/var/lib/pykubelet"
    listen: str = "127.0.0.1:10250"
    metrics_addr: str = "127.0.0.1:10255"
    status_interval: float = 10.0
    lease_interval: float = 10.0
    max_pods: int = 110
    node_labels: dict[str, str] = field(default_factory=dict)
    register_with_taints: list[objects_pb2.Taint] = field(default_factory=list)
    infra_image: str = "pykube/pause:3.9"
    join_server: str = ""  # the master's Bootstrap port; empty: the --server host, port + 1
    token: JoinToken | None = None
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    container_logs: ContainerLogLimits = field(default_factory=ContainerLogLimits)
    # Extended resources the node advertises (--extended-resource): name -> whole count.
    extended_resources: dict[str, str] = field(default_factory=dict)
    # The node proxy (--proxy-mode): "iptables" (kube-proxy's iptables mode) or "none".
    proxy_mode: str = "iptables"


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """Splits "HOST:PORT" (IPv6 in brackets) of ``flag``.

    Raises:
        ValueError: no port, or a port outside 0-65535; the message names the flag.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_servers(text: str, flag: str) -> list[tuple[str, int]]:
    """Splits "HOST:PORT[,HOST:PORT...]" (several masters) of ``flag``.

    Raises:
        ValueError: an empty list or an entry that is not HOST:PORT; the message names the flag.
    """
    servers = [parse_address(part.strip(), flag) for part in text.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"{flag}: expected HOST:PORT, got {text!r}")
    return servers


def default_join_server(server: str) -> str:
    """The master's Bootstrap address by default: the --server host, port + 1 (the master's
    --join-listen default); for several masters, each one's ("a:6444,b:6444").

    Raises:
        ValueError: --server is not HOST:PORT or its port is the last one.
    """
    joins = []
    for host, port in parse_servers(server, "--server"):
        if port >= 65535:
            raise ValueError(f"--join-server: cannot default to --server's port + 1 (--server {server})")
        joins.append(f"[{host}]:{port + 1}" if ":" in host else f"{host}:{port + 1}")
    return ",".join(joins)
