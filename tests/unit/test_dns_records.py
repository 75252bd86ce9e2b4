"""The cluster domain's records (pykubelet.dns.records.Zone) from hand-made Services and
EndpointSlices, against Kubernetes' DNS specification: A for cluster IPs and headless endpoints,
SRV for named ports, pod names, PTR, SOA on negative answers, NXDOMAIN vs NODATA."""

from __future__ import annotations

import dns.name
import dns.rdatatype as T
import pytest
from dns.rcode import NOERROR, NXDOMAIN

from pykubelet.dns.records import TTL, Zone
from pymaster.api import objects_pb2


def service(name: str, ip: str, *ports: tuple[str, int, str],
            namespace: str = "default") -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = name, namespace
    svc.spec.cluster_ip = ip
    for port_name, port, protocol in ports:
        svc.spec.ports.add(name=port_name, port=port, protocol=protocol)
    return svc


def endpoint_slice(service_name: str, endpoints: list[tuple[str, bool | None, str | None]],
                   ports: list[tuple[str, int]], namespace: str = "default",
                   address_type: str = "IPv4") -> objects_pb2.EndpointSlice:
    """``endpoints`` as (address, ready (None: unset), hostname)."""
    eps = objects_pb2.EndpointSlice(address_type=address_type)
    eps.metadata.name, eps.metadata.namespace = f"{service_name}-abc", namespace
    eps.metadata.labels["kubernetes.io/service-name"] = service_name
    for address, ready, hostname in endpoints:
        endpoint = eps.endpoints.add(addresses=[address])
        if ready is not None:
            endpoint.conditions.ready = ready
        if hostname is not None:
            endpoint.hostname = hostname
    for name, port in ports:
        eps.ports.add(name=name, port=port, protocol="TCP")
    return eps


SERVICES = [
    service("web", "10.96.0.10", ("http", 80, "TCP"), ("", 8080, "TCP")),
    service("dns", "10.96.0.53", ("dns", 53, "UDP")),
    service("db", "None", ("", 5432, "TCP"), namespace="team"),
    service("empty", "None", ("", 80, "TCP")),
    service("pending", ""),
]
SLICES = [
    endpoint_slice("db", [("10.244.1.5", True, "db-0"), ("10.244.2.7", None, None),
                          ("10.244.1.9", False, None)], [("pg", 5432)], namespace="team"),
    endpoint_slice("web", [("10.244.1.3", True, None)], [("http", 8080)]),  # not headless: not used
    endpoint_slice("gone", [("10.244.1.4", True, None)], [("http", 80)]),  # no such Service
    endpoint_slice("db", [("fd00::1", True, None)], [], namespace="team", address_type="IPv6"),
]
ZONE = Zone(SERVICES, SLICES, "cluster.local", reverse_cidrs=("10.96.0.0/12", "10.244.0.0/16"),
            nameserver="10.244.0.1")


def ask(name: str, rdtype: int = T.A) -> tuple[int, list[str], list[str], list[str]]:
    """(rcode, answer, authority, additional) as sorted record texts."""
    answer = ZONE.answer(dns.name.from_text(name), rdtype)
    assert answer is not None
    text = [sorted(line for rrset in section for line in rrset.to_text().splitlines())
            for section in (answer.answer, answer.authority, answer.additional)]
    return answer.rcode, *text  # type: ignore[return-value]


SOA = [f"cluster.local. {TTL} IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {TTL}"]


@pytest.mark.parametrize(("name", "rdtype", "expected"), [
    ("web.default.svc.cluster.local.", T.A, (NOERROR, ["web.default.svc.cluster.local. 30 IN A 10.96.0.10"])),
    ("WEB.Default.SVC.cluster.local.", T.A, (NOERROR, ["WEB.Default.SVC.cluster.local. 30 IN A 10.96.0.10"])),
    ("db.team.svc.cluster.local.", T.A, (NOERROR, ["db.team.svc.cluster.local. 30 IN A 10.244.1.5",
                                                   "db.team.svc.cluster.local. 30 IN A 10.244.2.7"])),
    ("db-0.db.team.svc.cluster.local.", T.A,
     (NOERROR, ["db-0.db.team.svc.cluster.local. 30 IN A 10.244.1.5"])),
    ("10-244-2-7.db.team.svc.cluster.local.", T.A,
     (NOERROR, ["10-244-2-7.db.team.svc.cluster.local. 30 IN A 10.244.2.7"])),
    ("10-244-9-9.team.pod.cluster.local.", T.A,
     (NOERROR, ["10-244-9-9.team.pod.cluster.local. 30 IN A 10.244.9.9"])),
    ("dns-version.cluster.local.", T.TXT, (NOERROR, ['dns-version.cluster.local. 30 IN TXT "1.1.0"'])),
    ("cluster.local.", T.NS, (NOERROR, ["cluster.local. 30 IN NS ns.dns.cluster.local."])),
    ("ns.dns.cluster.local.", T.A, (NOERROR, ["ns.dns.cluster.local. 30 IN A 10.244.0.1"])),
])
def test_positive_answers(name: str, rdtype: int, expected: tuple[int, list[str]]) -> None:
    rcode, answer, authority, _ = ask(name, rdtype)
    assert (rcode, answer) == expected
    assert authority == []


def test_srv_for_a_cluster_ip_service_names_the_service() -> None:
    rcode, answer, _, additional = ask("_http._tcp.web.default.svc.cluster.local.", T.SRV)
    assert rcode == NOERROR
    assert answer == [
        "_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local."]
    assert additional == ["web.default.svc.cluster.local. 30 IN A 10.96.0.10"]
    assert ask("_dns._udp.dns.default.svc.cluster.local.", T.SRV)[1] == [
        "_dns._udp.dns.default.svc.cluster.local. 30 IN SRV 0 100 53 dns.default.svc.cluster.local."]


def test_srv_for_a_headless_service_names_each_ready_endpoint() -> None:
    rcode, answer, _, additional = ask("_pg._tcp.db.team.svc.cluster.local.", T.SRV)
    assert rcode == NOERROR
    assert answer == [
        "_pg._tcp.db.team.svc.cluster.local. 30 IN SRV 0 50 5432 10-244-2-7.db.team.svc.cluster.local.",
        "_pg._tcp.db.team.svc.cluster.local. 30 IN SRV 0 50 5432 db-0.db.team.svc.cluster.local.",
    ]
    assert additional == ["10-244-2-7.db.team.svc.cluster.local. 30 IN A 10.244.2.7",
                          "db-0.db.team.svc.cluster.local. 30 IN A 10.244.1.5"]


@pytest.mark.parametrize(("name", "rdtype"), [
    ("web.default.svc.cluster.local.", T.AAAA),  # a name with no record of that type
    ("empty.default.svc.cluster.local.", T.A),  # headless, no ready endpoint
    ("pending.default.svc.cluster.local.", T.A),  # no cluster IP yet
    ("default.svc.cluster.local.", T.A),  # names above records exist
    ("_tcp.web.default.svc.cluster.local.", T.SRV),
    ("svc.cluster.local.", T.A),
    ("web.default.svc.cluster.local.", T.SRV),
])
def test_existing_names_without_the_type_are_nodata_with_soa(name: str, rdtype: int) -> None:
    assert ask(name, rdtype) == (NOERROR, [], SOA, [])


@pytest.mark.parametrize("name", [
    "nope.default.svc.cluster.local.",
    "web.nowhere.svc.cluster.local.",
    "gone.default.svc.cluster.local.",  # slices without a Service
    "10-244-1-9.db.team.svc.cluster.local.",  # not ready
    "_http._udp.web.default.svc.cluster.local.",
    "_8080._tcp.web.default.svc.cluster.local.",  # unnamed ports have no SRV
    "google.com.default.svc.cluster.local.",  # what ndots:5 search paths produce
    "not-an-ip.team.pod.cluster.local.",
    "x.web.default.svc.cluster.local.",
    "anything.cluster.local.",
])
def test_unknown_names_are_nxdomain_with_soa(name: str) -> None:
    assert ask(name) == (NXDOMAIN, [], SOA, [])


def test_any_returns_every_type_of_the_name() -> None:
    _, answer, _, _ = ask("cluster.local.", T.ANY)
    assert {line.split()[3] for line in answer} == {"SOA", "NS"}


def test_reverse_names() -> None:
    assert ask("10.0.96.10.in-addr.arpa.", T.PTR)[:2] == (
        NOERROR, ["10.0.96.10.in-addr.arpa. 30 IN PTR web.default.svc.cluster.local."])
    assert ask("5.1.244.10.in-addr.arpa.", T.PTR)[:2] == (
        NOERROR, ["5.1.244.10.in-addr.arpa. 30 IN PTR db-0.db.team.svc.cluster.local."])
    assert ask("99.0.96.10.in-addr.arpa.", T.PTR)[0] == NXDOMAIN  # the cluster's, unknown
    assert ZONE.answer(dns.name.from_text("1.0.0.127.in-addr.arpa."), T.PTR) is None  # not ours
    assert ZONE.answer(dns.name.from_text("example.com."), T.A) is None
    assert not ZONE.owns(dns.name.from_text("example.com."))


def test_another_cluster_domain() -> None:
    zone = Zone(SERVICES, SLICES, "corp.example")
    answer = zone.answer(dns.name.from_text("web.default.svc.corp.example."), T.A)
    assert answer is not None and answer.answer[0][0].to_text() == "10.96.0.10"
    assert zone.answer(dns.name.from_text("web.default.svc.cluster.local."), T.A) is None
