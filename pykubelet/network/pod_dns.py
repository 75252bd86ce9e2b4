"""Pods' DNS settings, as the kubelet computes them (``pkg/kubelet/network/dns``): which
nameservers, search domains and options a pod's ``/etc/resolv.conf`` holds, from its
``dnsPolicy`` and ``dnsConfig``, the cluster's domain, the node's DNS server (its pod network's
gateway, where the node-local DNS server listens) and the host's own ``/etc/resolv.conf``.

- ClusterFirst (the default): nameserver = the node's DNS server, search
  ``<ns>.svc.<domain> svc.<domain> <domain>`` then the host's search domains, ``options ndots:5``;
  on the host's network it means Default (Kubernetes' rule), unless the policy is
  ClusterFirstWithHostNet.
- Default: the host's nameservers, search domains and options.
- None: only what ``dnsConfig`` gives.
- ``dnsConfig`` is appended (nameservers, searches; duplicates dropped) and its options override
  the base ones by name. The result is cut to Kubernetes' limits (3 nameservers, 32 search
  domains, 2048 characters of search list), as the kubelet does.

Without a node DNS server (the node has no pod CIDR) ClusterFirst falls back to Default, as the
kubelet does without ``--cluster-dns``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.dns_validation import (
    CLUSTER_FIRST,
    CLUSTER_FIRST_WITH_HOST_NET,
    DEFAULT,
    MAX_NAMESERVERS,
    MAX_SEARCH_CHARS,
    MAX_SEARCHES,
)
from pymaster.api.network import NetworkConfig, pod_gateway

CLUSTER_OPTIONS = ("ndots:5",)


@dataclass(frozen=True)
class ResolvConf:
    """What a resolv.conf says (the parts a pod inherits)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    """The nameservers, search domains and options of a resolv.conf's text. Like the kubelet, the
    last ``search`` (or ``domain``) line wins, a trailing dot is dropped from search domains and
    "." itself is skipped; comments (``#``, ``;``) are ignored."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key in ("search", "domain"):
            searches = [s.rstrip(".") for s in values if s != "."]
        elif key == "options":
            options.extend(values)
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def effective_policy(pod: objects_pb2.Pod, has_cluster_dns: bool) -> str:
    """The policy the kubelet applies: ClusterFirst means Default on the host's network, and
    ClusterFirst(WithHostNet) means Default when the node has no DNS server."""
    policy = pod.spec.dns_policy or CLUSTER_FIRST
    if policy == CLUSTER_FIRST and pod.spec.host_network:
        policy = DEFAULT
    if policy in (CLUSTER_FIRST, CLUSTER_FIRST_WITH_HOST_NET) and not has_cluster_dns:
        policy = DEFAULT
    return policy


def pod_dns(
    pod: objects_pb2.Pod, network: NetworkConfig, pod_cidr: str, host_resolv_conf: ResolvConf
) -> tuple[list[str], list[str], list[str]]:
    """The (nameservers, searches, options) of ``pod``'s resolv.conf.

    Args:
        pod: the pod (spec.dnsPolicy, spec.dnsConfig, spec.hostNetwork, metadata.namespace).
        network: the cluster's settings (its domain).
        pod_cidr: the node's pod CIDR; its gateway is the node's DNS server ("": none).
        host_resolv_conf: the host's resolv.conf, parsed.
    """
    policy = effective_policy(pod, bool(pod_cidr))
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in (CLUSTER_FIRST, CLUSTER_FIRST_WITH_HOST_NET):
        domain = network.cluster_domain
        namespace = pod.metadata.namespace or "default"
        nameservers = [pod_gateway(pod_cidr)]
        searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host_resolv_conf.searches]
        options = list(CLUSTER_OPTIONS)
    elif policy == DEFAULT:
        nameservers = list(host_resolv_conf.nameservers)
        searches = list(host_resolv_conf.searches)
        options = list(host_resolv_conf.options)
    if pod.spec.HasField("dns_config"):
        config = pod.spec.dns_config
        nameservers = _unique([*nameservers, *config.nameservers])
        searches = _unique([*searches, *config.searches])
        options = _merge_options(options, [_option(o.name, o.value) for o in config.options])
    return nameservers[:MAX_NAMESERVERS], _fit_searches(_unique(searches)), options


def _option(name: str, value: str) -> str:
    return f"{name}:{value}" if value else name


def _merge_options(base: list[str], overrides: list[str]) -> list[str]:
    """Options by name (the part before ":"), later ones winning, in first-seen order."""
    merged: dict[str, str] = {}
    for option in [*base, *overrides]:
        merged[option.split(":", 1)[0]] = option
    return list(merged.values())


def _fit_searches(searches: list[str]) -> list[str]:
    """At most MAX_SEARCHES domains and MAX_SEARCH_CHARS characters (spaces included), as the
    kubelet trims them."""
    kept: list[str] = []
    length = -1
    for search in searches[:MAX_SEARCHES]:
        if length + 1 + len(search) > MAX_SEARCH_CHARS:
            break
        kept.append(search)
        length += 1 + len(search)
    return kept


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
