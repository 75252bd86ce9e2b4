"""The cluster domain's DNS records, computed from one snapshot of the agent's view of Services and
EndpointSlices (pure: no sockets, no clock), following Kubernetes' DNS specification
(kubernetes/dns docs/specification.md) as CoreDNS's ``kubernetes`` plugin serves it:

- ``<svc>.<ns>.svc.<zone>`` A: the cluster IP; for a headless Service (``clusterIP: None``)
  every ready address of its EndpointSlices (label ``kubernetes.io/service-name``; a ready
  condition left unset counts as ready, as the EndpointSlice API says). A headless Service with
  no ready endpoint exists with no address (NOERROR, no answer: CoreDNS's default).
- ``<host>.<svc>.<ns>.svc.<zone>`` A for every ready endpoint of a headless Service, ``<host>``
  the endpoint's ``hostname`` or its address dashed (``10-244-0-5``, as CoreDNS).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV for every named port: the Service's port and
  name as target; for a headless Service one record per ready endpoint (the endpoint port of
  that name, ``<host>.<svc>...`` as target). The targets' A records go in the additional section.
- ``<a-b-c-d>.<ns>.pod.<zone>`` A ``a.b.c.d`` for any namespace and address (CoreDNS's
  ``pods insecure``, kubeadm's default).
- PTR for cluster IPs (``<svc>.<ns>.svc.<zone>``) and headless endpoints (``<host>.<svc>...``);
  any other address of the Service or cluster CIDR is NXDOMAIN here (private cluster addresses
  are not asked of the host's resolvers); other reverse names are not ours (forwarded).
- The zone apex has SOA and NS (``ns.dns.<zone>``, with an A when the server's address is
  given); ``dns-version.<zone>`` TXT ``1.1.0``.

Every record has TTL ``TTL`` (30 s: kubeadm's CoreDNS setting; the SOA minimum, which bounds
negative caching, is the same). A name in the zone with no record of the asked type is NOERROR
with the SOA in authority; a name with no record at all (nor any below it) is NXDOMAIN with the SOA.
Names are case-insensitive; wildcard queries (``*.ns.svc...``) are not supported (NXDOMAIN).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rcode import NOERROR, NXDOMAIN

from pymaster.api import objects_pb2

TTL = 30
DNS_SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_V4 = dns.name.from_text("in-addr.arpa.")
A, SRV, PTR, SOA, NS, TXT, ANY = (dns.rdatatype.A, dns.rdatatype.SRV, dns.rdatatype.PTR, dns.rdatatype.SOA,
                                  dns.rdatatype.NS, dns.rdatatype.TXT, dns.rdatatype.ANY)


@dataclass
class Answer:
    """What a response says: its rcode and sections."""

    rcode: int = NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)


def _rdata(rdtype: int, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


def dashed(ip: str) -> str:
    """``10.244.0.5`` -> ``10-244-0-5``."""
    return ip.replace(".", "-")


def _ready(endpoint: objects_pb2.Endpoint) -> bool:
    return not endpoint.conditions.HasField("ready") or endpoint.conditions.ready


class Zone:
    """The records of the cluster domain (and of the cluster's reverse names) at one moment.

    Args:
        services: every Service the agent sees.
        slices: every EndpointSlice the agent sees.
        domain: the cluster domain (``cluster.local``).
        reverse_cidrs: networks whose reverse names are answered here (the Service and cluster CIDRs).
        nameserver: the server's own address, for ``ns.dns.<zone>`` A.
        serial: the SOA serial (grows with every new snapshot).
        ttl: of every record.
    """

    def __init__(
        self,
        services: Iterable[objects_pb2.Service],
        slices: Iterable[objects_pb2.EndpointSlice],
        domain: str,
        reverse_cidrs: Iterable[str] = (),
        nameserver: str | None = None,
        serial: int = 1,
        ttl: int = TTL,
    ):
        self.origin = dns.name.from_text(domain)
        self.ttl = ttl
        self._records: dict[dns.name.Name, dict[int, list[dns.rdata.Rdata]]] = defaultdict(dict)
        self._names: set[dns.name.Name] = set()  # every owner name and every name between it and the apex
        self._ptr: dict[str, list[dns.name.Name]] = defaultdict(list)
        self._reverse = [ipaddress.ip_network(cidr) for cidr in reverse_cidrs]
        ns_name = dns.name.from_text("ns.dns", self.origin)
        self.soa = dns.rrset.from_rdata(self.origin, ttl, _rdata(
            SOA, f"{ns_name} hostmaster.{self.origin} {serial} 7200 1800 86400 {ttl}"))
        self._add(self.origin, SOA, self.soa[0])
        self._add(self.origin, NS, _rdata(NS, str(ns_name)))
        if nameserver:
            self._add(ns_name, A, _rdata(A, nameserver))
        self._add(dns.name.from_text("dns-version", self.origin), TXT, _rdata(TXT, f'"{DNS_SCHEMA_VERSION}"'))
        self._add(dns.name.from_text("svc", self.origin), None, None)
        self._add(dns.name.from_text("pod", self.origin), None, None)
        by_service: dict[tuple[str, str], list[objects_pb2.EndpointSlice]] = defaultdict(list)
        for eps in slices:
            owner = eps.metadata.labels.get(SERVICE_NAME_LABEL)
            if owner and eps.address_type in ("", "IPv4"):
                by_service[eps.metadata.namespace, owner].append(eps)
        for service in services:
            key = (service.metadata.namespace, service.metadata.name)
            self._add_service(service, by_service.get(key, []))

    def _add(self, name: dns.name.Name, rdtype: int | None, rdata: dns.rdata.Rdata | None) -> None:
        """Adds a record (or, with no type, only the name), and marks the names above it as existing."""
        if rdtype is not None and rdata is not None:
            kept = self._records[name].setdefault(rdtype, [])
            if rdata not in kept:
                kept.append(rdata)
        while name != self.origin and name not in self._names:
            self._names.add(name)
            name = name.parent()

    def _add_service(self, service: objects_pb2.Service, slices: list[objects_pb2.EndpointSlice]) -> None:
        name = dns.name.from_text(f"{service.metadata.name}.{service.metadata.namespace}.svc", self.origin)
        self._add(name, None, None)
        ip = service.spec.cluster_ip
        if ip != "None":
            if not ip:  # not allocated yet: the name exists, with no address
                return
            self._add(name, A, _rdata(A, ip))
            self._ptr[ip].append(name)
            ports = [p for p in service.spec.ports if p.name]
            for port in ports:
                self._add(self._srv_name(port.name, port.protocol, name), SRV,
                          _rdata(SRV, f"0 100 {port.port} {name}"))
            return
        endpoints: list[tuple[dns.name.Name, str]] = []
        named_ports: dict[tuple[str, str], int] = {}
        for eps in slices:
            for port in eps.ports:
                if port.name and port.HasField("port"):
                    named_ports[port.name, port.protocol or "TCP"] = port.port
            for endpoint in eps.endpoints:
                if not _ready(endpoint):
                    continue
                for address in endpoint.addresses:
                    host = endpoint.hostname if endpoint.HasField("hostname") else dashed(address)
                    target = dns.name.from_text(host, name)
                    endpoints.append((target, address))
                    self._add(name, A, _rdata(A, address))
                    self._add(target, A, _rdata(A, address))
                    self._ptr[address].append(target)
        for (port_name, protocol), number in named_ports.items():
            srv = self._srv_name(port_name, protocol, name)
            weight = max(1, 100 // max(1, len(endpoints)))
            self._add(srv, None, None)
            for target, _ in endpoints:
                self._add(srv, SRV, _rdata(SRV, f"0 {weight} {number} {target}"))

    @staticmethod
    def _srv_name(port: str, protocol: str, service: dns.name.Name) -> dns.name.Name:
        return dns.name.from_text(f"_{port}._{(protocol or 'TCP').lower()}", service)

    def owns(self, qname: dns.name.Name) -> bool:
        """Whether ``qname`` is answered here (the cluster domain, the cluster's reverse names)."""
        return qname.is_subdomain(self.origin) or self._reverse_ip(qname) is not None

    def answer(self, qname: dns.name.Name, rdtype: int) -> Answer | None:
        """The answer for a question of class IN, or None when the name is not ours (forward it)."""
        if qname.is_subdomain(self.origin):
            return self._answer_cluster(qname, rdtype)
        ip = self._reverse_ip(qname)
        if ip is None:
            return None
        targets = self._ptr.get(ip)
        if not targets:
            return Answer(NXDOMAIN, authority=[self.soa])
        if rdtype not in (PTR, ANY):
            return Answer(authority=[self.soa])
        ptrs = [_rdata(PTR, str(target)) for target in targets]
        return Answer(answer=[dns.rrset.from_rdata_list(qname, self.ttl, ptrs)])

    def _reverse_ip(self, qname: dns.name.Name) -> str | None:
        """The address of a reverse name inside ``reverse_cidrs``, else None."""
        if not self._reverse or not qname.is_subdomain(REVERSE_V4):
            return None
        labels = qname.relativize(REVERSE_V4).labels
        if len(labels) != 4:
            return None
        try:
            address = ipaddress.IPv4Address(".".join(label.decode() for label in reversed(labels)))
        except (ValueError, UnicodeDecodeError):
            return None
        return str(address) if any(address in net for net in self._reverse) else None

    def _answer_cluster(self, qname: dns.name.Name, rdtype: int) -> Answer:
        records = dict(self._records.get(qname, {}))
        pod_ip = self._pod_ip(qname)
        if pod_ip is not None:
            records[A] = [_rdata(A, pod_ip)]
        if qname != self.origin and qname not in self._names and not records:
            return Answer(NXDOMAIN, authority=[self.soa])
        wanted = list(records) if rdtype == ANY else [rdtype] if rdtype in records else []
        if not wanted:
            return Answer(authority=[self.soa])
        result = Answer(answer=[dns.rrset.from_rdata_list(qname, self.ttl, records[t]) for t in wanted])
        if rdtype == NS:
            result.additional = self._addresses(r.target for r in records[NS])
        elif SRV in wanted:
            result.additional = self._addresses(r.target for r in records[SRV])
        return result

    def _addresses(self, targets: Iterable[dns.name.Name]) -> list[dns.rrset.RRset]:
        out = []
        for target in dict.fromkeys(targets):
            addresses = self._records.get(target, {}).get(A)
            if addresses:
                out.append(dns.rrset.from_rdata_list(target, self.ttl, addresses))
        return out

    def _pod_ip(self, qname: dns.name.Name) -> str | None:
        """``a.b.c.d`` for ``a-b-c-d.<ns>.pod.<zone>``, else None."""
        labels = qname.relativize(self.origin).labels
        if len(labels) != 3 or labels[2].lower() != b"pod":
            return None
        try:
            return str(ipaddress.IPv4Address(labels[0].decode().replace("-", ".")))
        except (ValueError, UnicodeDecodeError):
            return None
