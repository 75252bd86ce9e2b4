"""The node proxy's iptables rules, computed from Services and EndpointSlices (pure: no I/O).

The layout is kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go), chain for chain:

- nat ``KUBE-SERVICES`` (jumped from PREROUTING and OUTPUT): one rule per ClusterIP port to the
  port's internal-traffic chain, then, last, ``-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS``;
- ``KUBE-NODEPORTS``: one rule per NodePort to the port's ``KUBE-EXT-<hash>`` chain;
- ``KUBE-SVC-<hash>`` (the port's ready endpoints, cluster-wide) and ``KUBE-SVL-<hash>`` (this
  node's only, for ``internalTrafficPolicy``/``externalTrafficPolicy: Local``): random balancing
  with ``-m statistic --mode random --probability 1/n``, ``-m recent`` for ClientIP affinity;
- ``KUBE-SEP-<hash>`` per endpoint: hairpin masquerade mark, then DNAT to ip:port;
- ``KUBE-EXT-<hash>``: NodePort traffic, marked for masquerade (policy Cluster), or kept with its
  source IP and sent to this node's endpoints (policy Local; pods' and the node's own traffic
  still go cluster-wide, as kube-proxy's short-circuit);
- ``KUBE-MARK-MASQ`` sets mark 0x4000, ``KUBE-POSTROUTING`` (jumped from POSTROUTING) masquerades
  marked packets;
- filter ``KUBE-SERVICES``/``KUBE-EXTERNAL-SERVICES``: REJECT to ports with no endpoints (DROP when
  only the Local policy finds none), ``KUBE-FORWARD`` accepts marked and established traffic,
  ``KUBE-FIREWALL`` drops martian packets to 127.0.0.0/8 (needed once route_localnet is on).

Chain names are kube-proxy's: the prefix and 16 characters of base32(sha256(...)). Endpoints in
use are the ready ones; when a port has none, the serving-and-terminating ones (kube's rule).
"""

from __future__ import annotations

import base64
import hashlib
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymaster.api import objects_pb2
from pymaster.api.network import NetworkConfig

MASQ_MARK = "0x4000"
DEFAULT_AFFINITY_SECONDS = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Chains written every sync that are not per service.
NAT_STATIC = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_STATIC = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-FIREWALL")
# Per-service-port and per-endpoint chains: the ones a sync may create and delete.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-SEP-")

# (table, builtin chain, rule args): the jumps into our chains, each ensured with -C || -I 1.
BASE_JUMPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("nat", "PREROUTING", ("-m", "comment", "--comment", "kubernetes service portals",
                           "-j", "KUBE-SERVICES")),
    ("nat", "OUTPUT", ("-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")),
    ("nat", "POSTROUTING", ("-m", "comment", "--comment", "kubernetes postrouting rules",
                            "-j", "KUBE-POSTROUTING")),
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                         "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES")),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                           "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES")),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                           "kubernetes service portals", "-j", "KUBE-SERVICES")),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                          "kubernetes service portals", "-j", "KUBE-SERVICES")),
    ("filter", "FORWARD", ("-m", "comment", "--comment", "kubernetes forwarding rules",
                           "-j", "KUBE-FORWARD")),
    ("filter", "INPUT", ("-j", "KUBE-FIREWALL")),
    ("filter", "OUTPUT", ("-j", "KUBE-FIREWALL")),
)

Chains = dict[str, tuple[str, ...]]  # chain -> its "-A CHAIN ..." lines, in order


@dataclass
class ProxyRules:
    """The chains of one sync, per table, in the order they are written."""

    nat: Chains = field(default_factory=dict)
    filter: Chains = field(default_factory=dict)

    def rule_count(self, table: str) -> int:
        return sum(len(rules) for rules in getattr(self, table).values())


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint address of a service port, with kube's defaults for unset conditions."""

    ip: str
    port: int
    node_name: str
    ready: bool
    serving: bool
    terminating: bool

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def _hash16(text: str) -> str:
    # The first 16 base32 characters encode exactly the first 10 bytes of the digest.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


def service_port_name(svc: objects_pb2.Service, port: objects_pb2.ServicePort) -> str:
    """kube's ServicePortName.String(): "ns/name" or "ns/name:port-name"."""
    base = f"{svc.metadata.namespace}/{svc.metadata.name}"
    return f"{base}:{port.name}" if port.name else base


def chain_name(prefix: str, port_name: str, protocol: str, endpoint: str = "") -> str:
    """``KUBE-SVC-``/``KUBE-SVL-``/``KUBE-EXT-`` (no endpoint) or ``KUBE-SEP-`` (endpoint "ip:port")
    plus 16 characters of base32(sha256(port name + protocol [+ endpoint]))."""
    return prefix + _hash16(port_name + protocol.lower() + endpoint)


def endpoints_for_port(svc: objects_pb2.Service, port: objects_pb2.ServicePort,
                       slices: Iterable[objects_pb2.EndpointSlice]) -> list[EndpointInfo]:
    """The endpoints of one service port among ``slices`` (the service's own, see
    ``slices_by_service``): every slice whose port of the same name and protocol has a number;
    each endpoint's first address, once per ip:port."""
    protocol = port.protocol or "TCP"
    seen: dict[str, EndpointInfo] = {}
    for eps in slices:
        if eps.address_type not in ("", "IPv4"):
            continue
        target = next((p.port for p in eps.ports if p.name == port.name and (p.protocol or "TCP") == protocol
                       and p.HasField("port")), None)
        if target is None:
            continue
        for ep in eps.endpoints:
            if not ep.addresses:
                continue
            c = ep.conditions
            ready = c.ready if c.HasField("ready") else True
            info = EndpointInfo(
                ip=ep.addresses[0], port=target, node_name=ep.node_name,
                ready=ready, serving=c.serving if c.HasField("serving") else ready,
                terminating=c.terminating if c.HasField("terminating") else False,
            )
            seen.setdefault(info.address, info)
    return list(seen.values())


def slices_by_service(slices: Iterable[objects_pb2.EndpointSlice]) -> dict[tuple[str, str],
                                                                          list[objects_pb2.EndpointSlice]]:
    """The slices by (namespace, service name), from their ``kubernetes.io/service-name`` label."""
    index: dict[tuple[str, str], list[objects_pb2.EndpointSlice]] = {}
    for eps in slices:
        owner = eps.metadata.labels.get(SERVICE_NAME_LABEL)
        if owner:
            index.setdefault((eps.metadata.namespace, owner), []).append(eps)
    return index


def usable(endpoints: list[EndpointInfo]) -> list[EndpointInfo]:
    """The ready endpoints, else the serving terminating ones (kube's CategorizeEndpoints)."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving and e.terminating]


_NODEPORTS_LAST = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


class _Builder:
    def __init__(self, node_name: str, network: NetworkConfig):
        self.node_name = node_name
        self.cluster_cidr = network.cluster_cidr
        self.rules = ProxyRules()
        self.nat_services: list[str] = []
        self.nodeports: list[str] = []
        self.filter_services: list[str] = []
        self.filter_external: list[str] = []

    def add_chain(self, name: str, lines: list[str]) -> None:
        self.rules.nat[name] = tuple(lines)

    def service_port(self, svc: objects_pb2.Service, port: objects_pb2.ServicePort,
                     slices: list[objects_pb2.EndpointSlice]) -> None:
        spn = service_port_name(svc, port)
        proto = (port.protocol or "TCP").lower()
        svc_chain, svl_chain, ext_chain = (chain_name(p, spn, proto) for p in ("KUBE-SVC-", "KUBE-SVL-",
                                                                               "KUBE-EXT-"))
        spec = svc.spec
        node_port = port.node_port if spec.type == "NodePort" else 0
        itp_local = spec.internal_traffic_policy == "Local"
        etp_local = bool(node_port) and spec.external_traffic_policy == "Local"
        all_eps = endpoints_for_port(svc, port, slices)
        cluster_eps = usable(all_eps)
        local_eps = usable([e for e in all_eps if e.node_name == self.node_name])
        has_endpoints = bool(cluster_eps)
        internal_chain, internal_eps = (svl_chain, local_eps) if itp_local else (svc_chain, cluster_eps)
        external_eps = local_eps if etp_local else cluster_eps
        match = f"-m {proto} -p {proto}"
        dest = f"-d {spec.cluster_ip}/32 --dport {port.port}"
        cluster_ip_args = f"{_comment(spn + ' cluster IP')} {match} {dest}"
        # No endpoints at all: REJECT; endpoints, but none on this node for a Local policy: DROP.
        target, why = ("DROP", "has no local endpoints") if has_endpoints else ("REJECT", "has no endpoints")

        if internal_eps:
            self.nat_services.append(f"-A KUBE-SERVICES {cluster_ip_args} -j {internal_chain}")
        else:
            self.filter_services.append(f"-A KUBE-SERVICES {_comment(f'{spn} {why}')} {match} {dest} "
                                        f"-j {target}")
        if node_port:
            if external_eps:
                self.nodeports.append(f"-A KUBE-NODEPORTS {_comment(spn)} {match} --dport {node_port} "
                                      f"-j {ext_chain}")
            else:
                self.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {_comment(f'{spn} {why}')} "
                                            f"-m addrtype --dst-type LOCAL {match} --dport {node_port} "
                                            f"-j {target}")

        affinity = 0
        if spec.session_affinity == "ClientIP":
            cfg = spec.session_affinity_config.client_ip
            affinity = cfg.timeout_seconds if cfg.HasField("timeout_seconds") else DEFAULT_AFFINITY_SECONDS
        # The cluster chain also serves NodePort traffic from pods and from the node itself
        # when externalTrafficPolicy is Local (kube's short-circuit).
        uses_cluster = bool(cluster_eps) and (not itp_local or bool(node_port))
        uses_local = bool(local_eps) and (itp_local or etp_local)
        # Traffic to the ClusterIP from outside the cluster CIDR may leave the node: masquerade.
        off_cluster = f"-A {internal_chain} {cluster_ip_args} ! -s {self.cluster_cidr} -j KUBE-MARK-MASQ"
        if uses_cluster:
            head = [off_cluster] if not itp_local else []
            self.add_chain(svc_chain, head + self._balance(svc_chain, spn, proto, cluster_eps, affinity))
        if uses_local:
            head = [off_cluster] if itp_local else []
            self.add_chain(svl_chain, head + self._balance(svl_chain, spn, proto, local_eps, affinity))
        if node_port and external_eps:
            self.add_chain(ext_chain, self._external(ext_chain, spn, etp_local, svc_chain, svl_chain,
                                                     uses_cluster))
        for ep in {e.address: e for e in cluster_eps + local_eps}.values():
            sep = chain_name("KUBE-SEP-", spn, proto, ep.address)
            recent = f"-m recent --name {sep} --set " if affinity else ""
            self.add_chain(sep, [
                f"-A {sep} {_comment(spn)} -s {ep.ip}/32 -j KUBE-MARK-MASQ",
                f"-A {sep} {_comment(spn)} {recent}{match} -j DNAT --to-destination {ep.address}",
            ])

    def _balance(self, chain: str, spn: str, proto: str, eps: list[EndpointInfo], affinity: int) -> list[str]:
        eps = sorted(eps, key=lambda e: e.address)
        seps = [chain_name("KUBE-SEP-", spn, proto, e.address) for e in eps]
        lines = []
        if affinity:
            lines += [f"-A {chain} {_comment(f'{spn} -> {e.address}')} -m recent --name {sep} --rcheck "
                      f"--seconds {affinity} --reap -j {sep}" for e, sep in zip(eps, seps, strict=True)]
        n = len(eps)
        for i, (e, sep) in enumerate(zip(eps, seps, strict=True)):
            stat = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} " if i < n - 1 else ""
            lines.append(f"-A {chain} {_comment(f'{spn} -> {e.address}')} {stat}-j {sep}")
        return lines

    def _external(self, chain: str, spn: str, etp_local: bool, svc_chain: str, svl_chain: str,
                  uses_cluster: bool) -> list[str]:
        if not etp_local:
            return [f"-A {chain} {_comment(f'masquerade traffic for {spn} external destinations')} "
                    "-j KUBE-MARK-MASQ", f"-A {chain} -j {svc_chain}"]
        lines = []
        if uses_cluster:
            lines += [
                f"-A {chain} {_comment(f'pod traffic for {spn} external destinations')} "
                f"-s {self.cluster_cidr} -j {svc_chain}",
                # The node's own traffic has a local source address, which cannot be kept.
                f"-A {chain} {_comment(f'masquerade LOCAL traffic for {spn} external destinations')} "
                "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                f"-A {chain} {_comment(f'route LOCAL traffic for {spn} external destinations')} "
                f"-m addrtype --src-type LOCAL -j {svc_chain}",
            ]
        return lines + [f"-A {chain} -j {svl_chain}"]

    def merge(self, part: _Builder) -> None:
        self.nat_services += part.nat_services
        self.nodeports += part.nodeports
        self.filter_services += part.filter_services
        self.filter_external += part.filter_external
        self.rules.nat.update(part.rules.nat)

    def finish(self) -> ProxyRules:
        per_service = self.rules.nat
        nat: Chains = {
            "KUBE-SERVICES": tuple(self.nat_services) + (f"-A KUBE-SERVICES {_comment(_NODEPORTS_LAST)} "
                                                         "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",),
            "KUBE-NODEPORTS": tuple(self.nodeports),
            "KUBE-POSTROUTING": (
                f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
                # Clear the mark so a packet re-traversing the stack is not masqueraded twice.
                f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
                f"-A KUBE-POSTROUTING {_comment('kubernetes service traffic requiring SNAT')} "
                "-j MASQUERADE --random-fully",
            ),
            "KUBE-MARK-MASQ": (f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",),
        }
        nat.update(per_service)
        filter_: Chains = {
            "KUBE-SERVICES": tuple(self.filter_services),
            "KUBE-EXTERNAL-SERVICES": tuple(self.filter_external),
            "KUBE-FORWARD": (
                "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
                f"-A KUBE-FORWARD {_comment('kubernetes forwarding rules')} "
                f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
                f"-A KUBE-FORWARD {_comment('kubernetes forwarding conntrack rule')} -m conntrack --ctstate "
                "RELATED,ESTABLISHED -j ACCEPT",
            ),
            "KUBE-FIREWALL": (
                f"-A KUBE-FIREWALL {_comment('block incoming localnet connections')} -d 127.0.0.0/8 "
                "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            ),
        }
        return ProxyRules(nat=nat, filter=filter_)


# (namespace, name) -> (the Service message, its slices' messages, the rules built from them)
BuildCache = dict[tuple[str, str], tuple[objects_pb2.Service, list[objects_pb2.EndpointSlice], "_Builder"]]


def build_rules(services: Iterable[objects_pb2.Service], slices: Iterable[objects_pb2.EndpointSlice],
                node_name: str, network: NetworkConfig, cache: BuildCache | None = None) -> ProxyRules:
    """Every chain of both tables for these Services and EndpointSlices on node ``node_name``.

    Services without a cluster IP (headless, or not allocated yet) get no rules; only TCP and
    UDP ports are proxied. With ``cache`` (kept by the caller between calls with the same node
    and network), a service whose message and slices' messages are the very same objects as
    last time is not recomputed (the cluster view replaces a message on every change).
    """
    builder = _Builder(node_name, network)
    index = slices_by_service(slices)
    fresh: BuildCache = {}
    for svc in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        if svc.spec.cluster_ip in ("", "None") or svc.spec.type not in ("", "ClusterIP", "NodePort"):
            continue
        key = (svc.metadata.namespace, svc.metadata.name)
        own = index.get(key, [])
        hit = cache.get(key) if cache is not None else None
        if hit and hit[0] is svc and len(hit[1]) == len(own) and all(map(operator.is_, hit[1], own)):
            part = hit[2]
        else:
            part = _Builder(node_name, network)
            for port in svc.spec.ports:
                if (port.protocol or "TCP") in ("TCP", "UDP"):
                    part.service_port(svc, port, own)
        fresh[key] = (svc, own, part)
        builder.merge(part)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return builder.finish()


def is_service_chain(chain: str) -> bool:
    return chain.startswith(SERVICE_CHAIN_PREFIXES)


def restore_text(table: str, chains: Chains, write: Iterable[str], delete: Iterable[str] = ()) -> str:
    """An ``iptables-restore --noflush`` transaction: declares (so flushes) and rewrites the chains
    ``write`` with their rules from ``chains``, then deletes the chains ``delete`` (flushed first,
    as they may still jump to each other)."""
    write, delete = list(write), sorted(set(delete))
    lines = [f"*{table}"]
    lines += [f":{c} - [0:0]" for c in write + delete]
    for c in write:
        lines += chains[c]
    lines += [f"-X {c}" for c in delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def plan_nat(new: Chains, old: Chains | None, existing: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Which nat chains a sync writes and deletes.

    A full sync (``old`` None) writes every chain and deletes the service chains in ``existing``
    (read from the host) that are no longer wanted; an incremental one writes KUBE-SERVICES,
    KUBE-NODEPORTS and the chains whose rules changed, and deletes the chains gone since ``old``.
    """
    if old is None:
        return list(new), [c for c in existing if is_service_chain(c) and c not in new]
    write = [c for c in new if c in ("KUBE-SERVICES", "KUBE-NODEPORTS") or old.get(c) != new[c]]
    return write, [c for c in old if c not in new]
