"""Forwarding of names outside the cluster to the host's resolvers (the ``nameserver`` lines of
the host's ``/etc/resolv.conf``, as CoreDNS's ``forward . /etc/resolv.conf``): tried in order,
each with a timeout, over the transport the client used (UDP, or TCP after a truncated answer).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

log = logging.getLogger(__name__)

RESOLV_CONF = "/etc/resolv.conf"
DNS_PORT = 53

Upstream = tuple[str, int]  # (address, port)


def parse_upstream(text: str) -> Upstream:
    """``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (address, port).

    Raises:
        ValueError: not an address with an optional port.
    """
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else DNS_PORT
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in {text!r}")
    return host, port


def read_resolv_conf(path: str = RESOLV_CONF) -> list[Upstream]:
    """The nameservers of a resolv.conf, in order (malformed lines skipped; none when unreadable)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        log.warning("dns cannot read resolvers path=%s error=%s", path, err)
        return []
    servers = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(parse_upstream(fields[1].split("%")[0]))
            except ValueError:
                log.warning("dns skips nameserver path=%s value=%s", path, fields[1])
    return servers


class Forwarder:
    """Asks the upstream resolvers.

    Args:
        upstreams: (address, port) pairs, tried in order.
        timeout: seconds per upstream.
    """

    def __init__(self, upstreams: list[Upstream], timeout: float = 2.0):
        self.upstreams = upstreams
        self.timeout = timeout

    async def forward(self, query: dns.message.Message, tcp: bool) -> dns.message.Message | None:
        """The first upstream answer to ``query`` (its id kept), or None when none answered."""
        for host, port in self.upstreams:
            try:
                if tcp:
                    return await dns.asyncquery.tcp(query, host, timeout=self.timeout, port=port)
                return await dns.asyncquery.udp(query, host, timeout=self.timeout, port=port)
            except (dns.exception.DNSException, OSError, EOFError) as err:
                log.debug("dns upstream failed upstream=%s:%d error=%r", host, port, err)
        return None
