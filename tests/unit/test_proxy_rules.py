"""The node proxy's rule generation (pykubelet/proxy/rules.py): kube-proxy's chains per Service
type, traffic policy, affinity and endpoint state, and the incremental plan."""

from __future__ import annotations

import pytest

from pykubelet.proxy import rules
from pymaster.api import objects_pb2
from pymaster.api.network import NetworkConfig

NET = NetworkConfig()
NODE = "node-a"


def service(name: str = "web", ns: str = "default", cluster_ip: str = "10.96.0.10", *, ports=None,
            type_: str = "ClusterIP", **spec) -> objects_pb2.Service:
    svc = objects_pb2.Service(api_version="v1", kind="Service")
    svc.metadata.name, svc.metadata.namespace = name, ns
    svc.spec.type = type_
    svc.spec.cluster_ip = cluster_ip
    for p in ports or [dict(port=80)]:
        port = svc.spec.ports.add(name=p.get("name", ""), protocol=p.get("protocol", "TCP"), port=p["port"],
                                  node_port=p.get("node_port", 0))
        port.target_port.int_value = p.get("target", p["port"])
    for key, value in spec.items():
        setattr(svc.spec, key, value)
    return svc


def endpoint(ip: str, node: str = NODE, ready: bool | None = None, serving: bool | None = None,
             terminating: bool | None = None) -> objects_pb2.Endpoint:
    ep = objects_pb2.Endpoint(addresses=[ip], node_name=node)
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            setattr(ep.conditions, key, value)
    return ep


def slice_(service_name: str, endpoints, ports=None, ns: str = "default",
           name: str = "") -> objects_pb2.EndpointSlice:
    s = objects_pb2.EndpointSlice(api_version="discovery.k8s.io/v1", kind="EndpointSlice",
                                  address_type="IPv4")
    s.metadata.name, s.metadata.namespace = name or f"{service_name}-abc", ns
    s.metadata.labels[rules.SERVICE_NAME_LABEL] = service_name
    s.endpoints.extend(endpoints)
    for p in ports or [dict(port=8080)]:
        port = s.ports.add(port=p["port"], protocol=p.get("protocol", "TCP"))
        if "name" in p:
            port.name = p["name"]
    return s


def svc_chain(spn: str = "default/web", proto: str = "tcp", prefix: str = "KUBE-SVC-") -> str:
    return rules.chain_name(prefix, spn, proto)


def sep_chain(address: str, spn: str = "default/web", proto: str = "tcp") -> str:
    return rules.chain_name("KUBE-SEP-", spn, proto, address)


def build(services, slices, node: str = NODE) -> rules.ProxyRules:
    return rules.build_rules(services, slices, node, NET)


def test_chain_names_are_kube_proxy_hashes():
    # base32(sha256("default/web" + "tcp"))[:16], the way kube-proxy names KUBE-SVC chains.
    import base64
    import hashlib
    expected = base64.b32encode(hashlib.sha256(b"default/webtcp").digest()).decode()[:16]
    assert svc_chain() == "KUBE-SVC-" + expected
    assert len(sep_chain("10.244.0.5:8080")) == len("KUBE-SEP-") + 16


def test_cluster_ip_balances_over_ready_endpoints():
    r = build([service()], [slice_("web", [endpoint("10.244.0.5"), endpoint("10.244.1.6", "node-b"),
                                           endpoint("10.244.0.7")])])
    assert r.nat["KUBE-SERVICES"][0] == (
        f'-A KUBE-SERVICES -m comment --comment "default/web cluster IP" -m tcp -p tcp -d 10.96.0.10/32 '
        f"--dport 80 -j {svc_chain()}")
    assert "--dst-type LOCAL -j KUBE-NODEPORTS" in r.nat["KUBE-SERVICES"][-1]
    chain = r.nat[svc_chain()]
    assert chain[0].endswith(f"! -s {NET.cluster_cidr} -j KUBE-MARK-MASQ")
    assert "--probability 0.3333333333 -j " + sep_chain("10.244.0.5:8080") in chain[1]
    assert "--probability 0.5000000000 -j " + sep_chain("10.244.0.7:8080") in chain[2]
    assert "statistic" not in chain[3] and chain[3].endswith("-j " + sep_chain("10.244.1.6:8080"))
    sep = r.nat[sep_chain("10.244.1.6:8080")]
    assert sep[0].endswith("-s 10.244.1.6/32 -j KUBE-MARK-MASQ")
    assert sep[1].endswith("-m tcp -p tcp -j DNAT --to-destination 10.244.1.6:8080")
    assert r.filter["KUBE-SERVICES"] == ()


@pytest.mark.parametrize("cluster_ip", ["None", ""])
def test_headless_and_unallocated_services_get_no_rules(cluster_ip):
    r = build([service(cluster_ip=cluster_ip)], [slice_("web", [endpoint("10.244.0.5")])])
    assert not any(rules.is_service_chain(c) for c in r.nat)
    assert len(r.nat["KUBE-SERVICES"]) == 1 and r.filter["KUBE-SERVICES"] == ()


def test_no_endpoints_rejects_in_filter():
    r = build([service(type_="NodePort", ports=[dict(port=80, node_port=30080)])],
              [slice_("web", [endpoint("10.244.0.5", ready=False)])])
    assert r.filter["KUBE-SERVICES"] == (
        '-A KUBE-SERVICES -m comment --comment "default/web has no endpoints" -m tcp -p tcp '
        "-d 10.96.0.10/32 --dport 80 -j REJECT",)
    assert r.filter["KUBE-EXTERNAL-SERVICES"][0].endswith(
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT")
    assert not any(rules.is_service_chain(c) for c in r.nat) and r.nat["KUBE-NODEPORTS"] == ()


def test_terminating_serving_endpoints_only_when_none_ready():
    eps = [endpoint("10.244.0.5", ready=False, serving=True, terminating=True),
           endpoint("10.244.0.6", ready=False, serving=False, terminating=True)]
    r = build([service()], [slice_("web", eps)])
    assert [c for c in r.nat if c.startswith("KUBE-SEP-")] == [sep_chain("10.244.0.5:8080")]
    r = build([service()], [slice_("web", eps + [endpoint("10.244.0.9")])])
    assert [c for c in r.nat if c.startswith("KUBE-SEP-")] == [sep_chain("10.244.0.9:8080")]


def test_nodeport_cluster_policy_masquerades():
    r = build([service(type_="NodePort", ports=[dict(port=80, node_port=30080)])],
              [slice_("web", [endpoint("10.244.1.5", "node-b")])])
    ext = svc_chain(prefix="KUBE-EXT-")
    assert r.nat["KUBE-NODEPORTS"] == (
        f'-A KUBE-NODEPORTS -m comment --comment "default/web" -m tcp -p tcp --dport 30080 -j {ext}',)
    assert r.nat[ext][0].endswith("-j KUBE-MARK-MASQ") and r.nat[ext][1] == f"-A {ext} -j {svc_chain()}"


def test_external_traffic_policy_local_uses_this_nodes_endpoints():
    svc = service(type_="NodePort", ports=[dict(port=80, node_port=30080)], external_traffic_policy="Local")
    r = build([svc], [slice_("web", [endpoint("10.244.0.5"), endpoint("10.244.1.5", "node-b")])])
    ext, svl = svc_chain(prefix="KUBE-EXT-"), svc_chain(prefix="KUBE-SVL-")
    assert r.nat[ext][-1] == f"-A {ext} -j {svl}"
    assert any(f"-s {NET.cluster_cidr} -j {svc_chain()}" in line for line in r.nat[ext])  # pods: cluster-wide
    assert any("--src-type LOCAL -j KUBE-MARK-MASQ" in line for line in r.nat[ext])
    assert not any("KUBE-MARK-MASQ" in line and "--src-type" not in line for line in r.nat[ext])
    assert [line.rsplit(" ", 1)[1] for line in r.nat[svl]] == [sep_chain("10.244.0.5:8080")]
    assert len(r.nat[svc_chain()]) == 3  # the ClusterIP still balances over both
    # No endpoint on this node: NodePort traffic is dropped, the ClusterIP still works.
    r = build([svc], [slice_("web", [endpoint("10.244.1.5", "node-b")])])
    assert r.nat["KUBE-NODEPORTS"] == () and svl not in r.nat
    assert r.filter["KUBE-EXTERNAL-SERVICES"][0].endswith("--dport 30080 -j DROP")
    assert '"default/web has no local endpoints"' in r.filter["KUBE-EXTERNAL-SERVICES"][0]


def test_internal_traffic_policy_local():
    svc = service(internal_traffic_policy="Local")
    eps = [endpoint("10.244.0.5"), endpoint("10.244.1.5", "node-b")]
    r = build([svc], [slice_("web", eps)])
    svl = svc_chain(prefix="KUBE-SVL-")
    assert r.nat["KUBE-SERVICES"][0].endswith(f"-j {svl}") and svc_chain() not in r.nat
    assert r.nat[svl][0].endswith("-j KUBE-MARK-MASQ")
    assert r.nat[svl][1].endswith(sep_chain("10.244.0.5:8080"))
    r = build([svc], [slice_("web", eps)], node="node-c")
    assert r.filter["KUBE-SERVICES"][0].endswith("--dport 80 -j DROP")


def test_client_ip_affinity_uses_recent():
    svc = service(session_affinity="ClientIP")
    svc.spec.session_affinity_config.client_ip.timeout_seconds = 60
    r = build([svc], [slice_("web", [endpoint("10.244.0.5"), endpoint("10.244.0.6")])])
    sep5, sep6 = sep_chain("10.244.0.5:8080"), sep_chain("10.244.0.6:8080")
    chain = r.nat[svc_chain()]
    assert f"-m recent --name {sep5} --rcheck --seconds 60 --reap -j {sep5}" in chain[1]
    assert f"-m recent --name {sep6} --rcheck --seconds 60 --reap -j {sep6}" in chain[2]
    assert "statistic" in chain[3]
    assert f"-m recent --name {sep5} --set -m tcp -p tcp -j DNAT" in r.nat[sep5][1]
    default = build([service(session_affinity="ClientIP")], [slice_("web", [endpoint("10.244.0.5")])])
    assert "--seconds 10800" in default.nat[svc_chain()][1]


def test_udp_and_named_ports_resolved_by_slice_port_name():
    svc = service(ports=[dict(name="dns", port=53, protocol="UDP"), dict(name="dns-tcp", port=53)])
    s = slice_("web", [endpoint("10.244.0.5")], ports=[dict(name="dns", port=5353, protocol="UDP"),
                                                       dict(name="dns-tcp", port=5354)])
    r = build([svc], [s])
    udp = svc_chain("default/web:dns", "udp")
    assert any(line.endswith(f"-m udp -p udp -d 10.96.0.10/32 --dport 53 -j {udp}")
               for line in r.nat["KUBE-SERVICES"])
    assert r.nat[sep_chain("10.244.0.5:5353", "default/web:dns", "udp")][1].endswith(
        "-m udp -p udp -j DNAT --to-destination 10.244.0.5:5353")
    assert sep_chain("10.244.0.5:5354", "default/web:dns-tcp") in r.nat


def test_slices_of_other_services_ports_and_namespaces_ignored():
    r = build([service(ports=[dict(name="http", port=80)])], [
        slice_("web", [endpoint("10.244.0.1")], ports=[dict(name="other", port=1)]),
        slice_("api", [endpoint("10.244.0.2")], ports=[dict(name="http", port=2)]),
        slice_("web", [endpoint("10.244.0.3")], ports=[dict(name="http", port=3)], ns="prod"),
        slice_("web", [endpoint("10.244.0.4"), endpoint("10.244.0.4")], ports=[dict(name="http", port=4)],
               name="b"),
    ])
    assert [c for c in r.nat if c.startswith("KUBE-SEP-")] == [sep_chain("10.244.0.4:4", "default/web:http")]


def test_restore_text_declares_writes_and_deletes():
    chains = {"KUBE-SERVICES": ("-A KUBE-SERVICES -j RETURN",), "KUBE-SVC-X": ()}
    text = rules.restore_text("nat", chains, ["KUBE-SERVICES", "KUBE-SVC-X"], ["KUBE-SEP-OLD"])
    assert text == ("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n:KUBE-SEP-OLD - [0:0]\n"
                    "-A KUBE-SERVICES -j RETURN\n-X KUBE-SEP-OLD\nCOMMIT\n")


def test_incremental_plan_writes_only_changed_chains():
    before = build([service(), service("api", cluster_ip="10.96.0.11")],
                   [slice_("web", [endpoint("10.244.0.5")]), slice_("api", [endpoint("10.244.0.8")])])
    after = build([service(), service("api", cluster_ip="10.96.0.11")],
                  [slice_("web", [endpoint("10.244.0.6")]), slice_("api", [endpoint("10.244.0.8")])])
    write, delete = rules.plan_nat(after.nat, before.nat)
    assert write == ["KUBE-SERVICES", "KUBE-NODEPORTS", svc_chain(), sep_chain("10.244.0.6:8080")]
    assert delete == [sep_chain("10.244.0.5:8080")]
    assert rules.plan_nat(after.nat, after.nat) == (["KUBE-SERVICES", "KUBE-NODEPORTS"], [])


def test_full_plan_deletes_stale_service_chains_only():
    r = build([service()], [slice_("web", [endpoint("10.244.0.5")])])
    write, delete = rules.plan_nat(r.nat, None, ["PREROUTING", "DOCKER", "KUBE-SVC-STALE", "KUBE-SEP-STALE",
                                                 svc_chain(), "KUBE-SERVICES", "PYKUBE-POSTROUTING"])
    assert write == list(r.nat) and delete == ["KUBE-SVC-STALE", "KUBE-SEP-STALE"]


def test_cache_reuses_unchanged_services_and_recomputes_changed_ones():
    web, api = service(), service("api", cluster_ip="10.96.0.11")
    web_slice, api_slice = slice_("web", [endpoint("10.244.0.5")]), slice_("api", [endpoint("10.244.0.8")])
    cache: rules.BuildCache = {}
    first = rules.build_rules([web, api], [web_slice, api_slice], NODE, NET, cache)
    api_part = cache[("default", "api")][2]
    changed = slice_("web", [endpoint("10.244.0.6")])
    second = rules.build_rules([web, api], [changed, api_slice], NODE, NET, cache)
    assert cache[("default", "api")][2] is api_part  # not recomputed
    assert second == build([web, api], [changed, api_slice]) and second != first
    rules.build_rules([web], [changed], NODE, NET, cache)
    assert list(cache) == [("default", "web")]  # gone services leave the cache
