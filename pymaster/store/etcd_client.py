"""The connection of the etcd store backend: ``etcd://HOST:PORT[,HOST:PORT...]`` URLs, TLS files,
and an ``aetcd`` client whose gRPC channel spans every listed member.

aetcd (the asyncio etcd v3 client) dials one ``host:port`` in plain text only; this module gives it
a channel over every endpoint, so gRPC fails over to another member by itself when one dies (the
``ipv4:``/``ipv6:`` target with the ``round_robin`` policy: a dead member's subchannel is skipped),
and TLS with the ``--etcd-cafile/--etcd-certfile/--etcd-keyfile`` files. Host names are resolved
once, when the client connects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aetcd
import grpc
from aetcd import rpc
from aetcd.watcher import Watcher

# etcd refuses requests over 1.5 MiB; responses (a full list at open) can be much larger.
_MAX_MESSAGE = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """The files of TLS to etcd (PEM): the CA that signed the members' certificates, and this
    client's certificate and key (both or neither)."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel credentials, or None for plain text (no file given)."""
        if not (self.cafile or self.certfile or self.keyfile):
            return None
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("--etcd-certfile and --etcd-keyfile must be given together")

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.cafile), read(self.keyfile), read(self.certfile))


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of ``etcd://HOST:PORT[,HOST:PORT...]``.

    Raises:
        ValueError: not such a URL; the message says what is accepted.
    """
    parsed = urlparse(url)
    expected = f"store URL {url!r}: expected etcd://HOST:PORT[,HOST:PORT...]"
    if parsed.scheme != "etcd" or not parsed.netloc or parsed.path not in ("", "/"):
        raise ValueError(expected)
    endpoints = []
    for item in parsed.netloc.split(","):
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(expected)
        endpoints.append((host, int(port)))
    return endpoints


def _target(endpoints: list[tuple[str, int]]) -> str:
    """A gRPC target naming every endpoint's addresses (resolved now, so one channel holds all)."""
    addresses: list[str] = []
    for host, port in endpoints:
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            ips = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for ip in ips:
            addresses.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    # gRPC's ipv4:/ipv6: schemes take a list; one family per target (loopback setups are ipv4).
    scheme = "ipv6" if all(a.startswith("[") for a in addresses) else "ipv4"
    return f"{scheme}:{','.join(a for a in addresses if a.startswith('[') == (scheme == 'ipv6'))}"


class EtcdClient(aetcd.Client):
    """An aetcd client on a channel over every endpoint, with optional TLS."""

    def __init__(self, endpoints: list[tuple[str, int]], tls: EtcdTLS | None = None,
                 timeout: float | None = None):
        """
        Args:
            endpoints: The members' client URLs as (host, port).
            tls: TLS files; None: plain text.
            timeout: Deadline of each unary call in seconds (None: none).
        """
        host, port = endpoints[0]
        super().__init__(host=host, port=port, timeout=timeout)
        self._endpoints = endpoints
        self._tls = tls or EtcdTLS()

    async def connect(self) -> None:
        """Opens the channel and the stubs (no round trip: the first call waits for a member)."""
        if self._connected.is_set():
            return
        loop = asyncio.get_running_loop()
        target = await loop.run_in_executor(None, _target, self._endpoints)
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.lb_policy_name", "round_robin"),
            # A member restarting: reconnect quickly rather than after gRPC's default 20 s backoff.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        credentials = self._tls.credentials()
        if credentials is None:
            self.channel = rpc.insecure_channel(target, options=options)
        else:
            # Certificates name the members, not the resolved addresses.
            options.append(("grpc.ssl_target_name_override", self._endpoints[0][0]))
            self.channel = rpc.secure_channel(target, credentials, options=options)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=None)
        self._connected.set()
