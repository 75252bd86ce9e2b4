"""Validation of a pod's DNS fields (``spec.dnsPolicy``, ``spec.dnsConfig``), with the rules and
the wording of Kubernetes' API server (``validateDNSPolicy``, ``validatePodDNSConfig``).
``spec.enableServiceLinks`` is a bool the loader already types; any value is valid.

The policy names and limits live here so the agent (``pykubelet.network.pod_dns``), which applies
them, uses the same ones.
"""

from __future__ import annotations

import ipaddress

from pymaster.api import objects_pb2
from pymaster.api.checks import check_dns_subdomain, quote
from pymaster.api.errors import ValidationError

CLUSTER_FIRST = "ClusterFirst"
CLUSTER_FIRST_WITH_HOST_NET = "ClusterFirstWithHostNet"
DEFAULT = "Default"
NONE = "None"
DNS_POLICIES = (CLUSTER_FIRST, CLUSTER_FIRST_WITH_HOST_NET, DEFAULT, NONE)

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048  # the search list, spaces included


def check_pod_dns(spec: objects_pb2.PodSpec) -> None:
    """Checks spec.dnsPolicy ("" is the default, ClusterFirst) and spec.dnsConfig.

    Raises:
        ValidationError: the first problem, with its field path.
    """
    policy = spec.dns_policy
    if policy and policy not in DNS_POLICIES:
        supported = ", ".join(f'"{p}"' for p in DNS_POLICIES)
        raise ValidationError("spec.dnsPolicy",
                              f"Unsupported value: {quote(policy)}: supported values: {supported}")
    if policy == NONE and not spec.HasField("dns_config"):
        raise ValidationError("spec.dnsConfig",
                              f"Required value: must provide `dnsConfig` when `dnsPolicy` is {NONE}")
    if not spec.HasField("dns_config"):
        return
    config = spec.dns_config
    path = "spec.dnsConfig"
    if policy == NONE and not config.nameservers:
        raise ValidationError(
            f"{path}.nameservers",
            f"Required value: must provide at least one DNS nameserver when `dnsPolicy` is {NONE}",
        )
    if len(config.nameservers) > MAX_NAMESERVERS:
        raise ValidationError(f"{path}.nameservers",
                              f"Invalid value: must not have more than {MAX_NAMESERVERS} nameservers")
    for i, nameserver in enumerate(config.nameservers):
        try:
            ipaddress.ip_address(nameserver)
        except ValueError:
            raise ValidationError(
                f"{path}.nameservers[{i}]",
                f"Invalid value: {quote(nameserver)}: must be a valid IP address, "
                "(e.g. 10.9.8.7 or 2001:db8::ffff)",
            ) from None
    if len(config.searches) > MAX_SEARCHES:
        raise ValidationError(f"{path}.searches",
                              f"Invalid value: must not have more than {MAX_SEARCHES} search paths")
    if len(" ".join(config.searches)) > MAX_SEARCH_CHARS:
        raise ValidationError(
            f"{path}.searches",
            f"Invalid value: must not have more than {MAX_SEARCH_CHARS} characters (including spaces) "
            "in the search list",
        )
    for i, search in enumerate(config.searches):
        if i == 0 and search == ".":  # "." first: search nothing but the name itself (Kubernetes allows it)
            continue
        check_dns_subdomain(f"{path}.searches[{i}]", search.removesuffix("."))  # a trailing dot is fine
    for i, option in enumerate(config.options):
        if not option.name:
            raise ValidationError(f"{path}.options[{i}]", "Required value: must not be empty")
