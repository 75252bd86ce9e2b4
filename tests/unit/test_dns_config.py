"""Pods' DNS settings: the kubelet's rules (pod_dns), resolv.conf parsing, and the API server's
validation of spec.dnsPolicy / spec.dnsConfig."""

from __future__ import annotations

import pytest

from pykubelet.network.pod_dns import ResolvConf, parse_resolv_conf, pod_dns
from pykubelet.runtime.base import PodDNS
from pykubelet.runtime.docker.networks import resolv_conf_text
from pymaster.api import objects_pb2
from pymaster.api.dns_validation import check_pod_dns
from pymaster.api.errors import ValidationError
from pymaster.api.network import NetworkConfig

HOST = ResolvConf(nameservers=("10.255.255.53", "10.255.255.54"), searches=("corp.example",),
                  options=("timeout:2",))
CIDR = "10.244.3.0/24"
CLUSTER_SEARCH = ["web.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def pod(policy: str = "", host_network: bool = False, config: dict | None = None) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "p", "web"
    p.spec.dns_policy = policy
    p.spec.host_network = host_network
    if config is not None:
        p.spec.dns_config.CopyFrom(objects_pb2.PodDNSConfig(**config))
    return p


@pytest.mark.parametrize(
    ("policy", "host_network", "cidr", "expected"),
    [
        ("", False, CIDR, (["10.244.3.1"], [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"])),
        ("ClusterFirst", False, CIDR, (["10.244.3.1"], [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"])),
        # On the host's network ClusterFirst means Default (Kubernetes' rule) ...
        ("ClusterFirst", True, CIDR, (["10.255.255.53", "10.255.255.54"], ["corp.example"], ["timeout:2"])),
        # ... unless the pod asks for ClusterFirstWithHostNet.
        ("ClusterFirstWithHostNet", True, CIDR,
         (["10.244.3.1"], [*CLUSTER_SEARCH, "corp.example"], ["ndots:5"])),
        ("Default", False, CIDR, (["10.255.255.53", "10.255.255.54"], ["corp.example"], ["timeout:2"])),
        # No pod CIDR, no node DNS server: ClusterFirst falls back to the host's.
        ("ClusterFirst", False, "", (["10.255.255.53", "10.255.255.54"], ["corp.example"], ["timeout:2"])),
        ("None", False, CIDR, ([], [], [])),
    ],
)
def test_policies(policy: str, host_network: bool, cidr: str, expected: tuple) -> None:
    assert pod_dns(pod(policy, host_network), NetworkConfig(), cidr, HOST) == expected


def test_cluster_domain_comes_from_the_network() -> None:
    _, searches, _ = pod_dns(pod(), NetworkConfig(cluster_domain="k8s.test"), CIDR, ResolvConf())
    assert searches == ["web.svc.k8s.test", "svc.k8s.test", "k8s.test"]


def test_dns_config_is_merged_as_kubernetes_does() -> None:
    config = {
        "nameservers": ["10.244.3.1", "1.1.1.1"],
        "searches": ["svc.cluster.local", "extra.example"],
        "options": [objects_pb2.PodDNSConfigOption(name="ndots", value="2"),
                    objects_pb2.PodDNSConfigOption(name="edns0")],
    }
    assert pod_dns(pod("ClusterFirst", config=config), NetworkConfig(), CIDR, ResolvConf()) == (
        ["10.244.3.1", "1.1.1.1"],  # duplicates dropped
        [*CLUSTER_SEARCH, "extra.example"],
        ["ndots:2", "edns0"],  # dnsConfig's options override the base ones by name
    )


def test_none_takes_only_dns_config() -> None:
    config = {"nameservers": ["1.2.3.4"], "searches": ["a.example"],
              "options": [objects_pb2.PodDNSConfigOption(name="ndots", value="1")]}
    assert pod_dns(pod("None", config=config), NetworkConfig(), CIDR, HOST) == (
        ["1.2.3.4"], ["a.example"], ["ndots:1"]
    )


def test_limits_are_applied() -> None:
    config = {"nameservers": ["1.1.1.1", "1.1.1.2"], "searches": [f"d{i}.example" for i in range(40)]}
    nameservers, searches, _ = pod_dns(pod("Default", config=config), NetworkConfig(), CIDR, HOST)
    assert nameservers == ["10.255.255.53", "10.255.255.54", "1.1.1.1"]
    assert len(searches) == 32 and searches[0] == "corp.example"


def test_parse_resolv_conf() -> None:
    text = (
        "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3 ; second\nsearch old.example\n"
        "search a.example. . b.example\noptions ndots:1 rotate\n"
    )
    assert parse_resolv_conf(text) == ResolvConf(("10.0.0.2", "10.0.0.3"), ("a.example", "b.example"),
                                                 ("ndots:1", "rotate"))


def test_resolv_conf_text() -> None:
    dns = PodDNS(("10.244.3.1",), ("web.svc.cluster.local", "cluster.local"), ("ndots:5",))
    assert resolv_conf_text(dns) == (
        "nameserver 10.244.3.1\nsearch web.svc.cluster.local cluster.local\noptions ndots:5\n"
    )


# ---- validation ----


def test_valid_dns_fields() -> None:
    for policy in ("", "ClusterFirst", "ClusterFirstWithHostNet", "Default"):
        check_pod_dns(pod(policy).spec)
    check_pod_dns(pod("None", config={"nameservers": ["10.0.0.1", "fd00::1"], "searches": [".", "a.b."],
                                     "options": [objects_pb2.PodDNSConfigOption(name="ndots")]}).spec)


@pytest.mark.parametrize(
    ("policy", "config", "message"),
    [
        ("Foo", None, 'spec.dnsPolicy: Unsupported value: "Foo": supported values: "ClusterFirst", '
                      '"ClusterFirstWithHostNet", "Default", "None"'),
        ("None", None, "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
        ("None", {}, "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver "
                     "when `dnsPolicy` is None"),
        ("", {"nameservers": ["1.1.1.1"] * 4},
         "spec.dnsConfig.nameservers: Invalid value: must not have more than 3 nameservers"),
        ("", {"nameservers": ["1.1.1.1", "dns.example"]},
         'spec.dnsConfig.nameservers[1]: Invalid value: "dns.example": must be a valid IP address, '
         "(e.g. 10.9.8.7 or 2001:db8::ffff)"),
        ("", {"searches": [f"d{i}" for i in range(33)]},
         "spec.dnsConfig.searches: Invalid value: must not have more than 32 search paths"),
        ("", {"searches": ["a" * 60 + "." + "b" * 60] * 20},
         "spec.dnsConfig.searches: Invalid value: must not have more than 2048 characters (including "
         "spaces) in the search list"),
        ("", {"options": [objects_pb2.PodDNSConfigOption(value="1")]},
         "spec.dnsConfig.options[0]: Required value: must not be empty"),
    ],
)
def test_invalid_dns_fields(policy: str, config: dict | None, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_pod_dns(pod(policy, config=config).spec)
    assert str(err.value) == message


def test_invalid_search_domain_names_the_index() -> None:
    with pytest.raises(ValidationError, match=r"^spec\.dnsConfig\.searches\[1\]: invalid value \"Bad_Name\""):
        check_pod_dns(pod(config={"searches": ["ok.example", "Bad_Name"]}).spec)
