"""The node proxy's cost, measured in throwaway network namespaces (the host's tables are never
touched):

- sync: 1,000 Services x 10 endpoints (synthetic Service/EndpointSlice messages, no pods) through
  the real Proxier and iptables-restore: one full sync, then incremental syncs where one endpoint
  of one service changed (median of several);
- data path: a "node" namespace holding those rules, joined by a veth pair to a "pod" namespace
  running a small TCP server; a client in the node namespace opens a connection, sends a request
  and reads the answer, alternating between the ClusterIP of one of the 1,000 services (the
  last in KUBE-SERVICES: the longest walk) and the pod IP straight; p50/p99 of both and the
  added latency at p50 (target: under 0.1 ms).

Prints JSON. Needs root, iproute2 and iptables.

Usage: python bench/proxy.py [--services 1000] [--endpoints 10] [--requests 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pod_startup import percentile  # noqa: E402
from pykubelet.cluster_view import ClusterView  # noqa: E402
from pykubelet.proxy.iptables import Iptables  # noqa: E402
from pykubelet.proxy.proxier import Proxier  # noqa: E402
from pymaster.api import objects_pb2  # noqa: E402
from pymaster.api.network import NetworkConfig  # noqa: E402

NODE_IP, POD_IP, POD_PORT = "10.244.0.1", "10.244.0.2", 8080
PROBE_SERVICE_IP = "10.111.255.254"  # the measured service's ClusterIP, in the default service CIDR

SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT)); s.listen(512)
while True:
    c, _ = s.accept()
    c.recv(1024); c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"); c.close()
""".replace("PORT", str(POD_PORT))

CLIENT = """
import json, socket, sys, time
targets, n = sys.argv[1:3], int(sys.argv[3])
def once(ip, port):
    t = time.perf_counter()
    c = socket.create_connection((ip, int(port)), timeout=5)
    c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    while c.recv(1024):
        pass
    c.close()
    return time.perf_counter() - t
for _ in range(200):  # the server may still be starting
    try:
        once(*targets[1].split(":"))
        break
    except OSError:
        time.sleep(0.05)
for target in targets:  # warm up (ARP, caches)
    for _ in range(50):
        once(*target.split(":"))
out = {t: [] for t in targets}
for _ in range(n):
    for t in targets:
        out[t].append(once(*t.split(":")))
print(json.dumps(out))
"""


def synthetic(services: int, endpoints: int) -> tuple[list, list]:
    """``services`` ClusterIP services with ``endpoints`` endpoints each (addresses in the cluster
    CIDR, never contacted), plus the measured one, whose single endpoint is the pod namespace."""
    svcs, slices = [], []
    for i in range(services):
        name = f"svc-{i:04d}"
        svc = objects_pb2.Service(api_version="v1", kind="Service")
        svc.metadata.namespace, svc.metadata.name = "bench", name
        svc.spec.cluster_ip = f"10.96.{i // 250}.{i % 250 + 1}"
        svc.spec.ports.add(name="http", protocol="TCP", port=80)
        svcs.append(svc)
        eps = objects_pb2.EndpointSlice(address_type="IPv4")
        eps.metadata.namespace, eps.metadata.name = "bench", f"{name}-x"
        eps.metadata.labels["kubernetes.io/service-name"] = name
        eps.ports.add(name="http", protocol="TCP", port=8080)
        for j in range(endpoints):
            k = i * endpoints + j
            eps.endpoints.add(addresses=[f"10.244.{1 + k // 250 % 250}.{k % 250 + 1}"], node_name="node-b")
        slices.append(eps)
    probe = objects_pb2.Service()
    probe.metadata.namespace, probe.metadata.name = "zz", "probe"  # sorted last in KUBE-SERVICES
    probe.spec.cluster_ip = PROBE_SERVICE_IP
    probe.spec.ports.add(protocol="TCP", port=80)
    eps = objects_pb2.EndpointSlice(address_type="IPv4")
    eps.metadata.namespace, eps.metadata.name = "zz", "probe-x"
    eps.metadata.labels["kubernetes.io/service-name"] = "probe"
    eps.ports.add(protocol="TCP", port=POD_PORT)
    eps.endpoints.add(addresses=[POD_IP], node_name="node-a")
    return svcs + [probe], slices + [eps]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def view_of(services: list, slices: list) -> ClusterView:
    view = ClusterView(None)  # type: ignore[arg-type]  # never run: objects set here
    view.services.objects = {(s.metadata.namespace, s.metadata.name): s for s in services}
    view.endpoint_slices.objects = {(s.metadata.namespace, s.metadata.name): s for s in slices}
    return view


async def measure_sync(node_ns: str, services: list, slices: list, rounds: int) -> tuple[dict, Proxier]:
    view = view_of(services, slices)
    proxier = Proxier(view, "node-a", NetworkConfig(), iptables=Iptables(node_ns), lock_path=None)
    t = time.perf_counter()
    await proxier.sync()
    full = time.perf_counter() - t
    incremental = []
    first = slices[0]
    for r in range(rounds):
        changed = objects_pb2.EndpointSlice()
        changed.CopyFrom(first)
        changed.endpoints[0].addresses[0] = f"10.245.0.{r + 1}"
        view.endpoint_slices.objects[("bench", first.metadata.name)] = changed
        t = time.perf_counter()
        await proxier.sync()
        incremental.append(time.perf_counter() - t)
    assert proxier.applied is not None
    return {
        "services": len(services) - 1,
        "endpoints_per_service": len(first.endpoints),
        "nat_rules": proxier.applied.rule_count("nat"),
        "full_sync_s": round(full, 3),
        "incremental_sync_s": round(statistics.median(incremental), 4),
    }, proxier


def measure_latency(node_ns: str, requests: int) -> dict:
    out = subprocess.run(
        ["ip", "netns", "exec", node_ns, sys.executable, "-c", CLIENT, f"{PROBE_SERVICE_IP}:80",
         f"{POD_IP}:{POD_PORT}", str(requests)], check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    samples = json.loads(out)
    via_service, direct = samples[f"{PROBE_SERVICE_IP}:80"], samples[f"{POD_IP}:{POD_PORT}"]

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 4)

    return {
        "requests": requests,
        "cluster_ip_p50_ms": ms(via_service, 0.5), "cluster_ip_p99_ms": ms(via_service, 0.99),
        "pod_ip_p50_ms": ms(direct, 0.5), "pod_ip_p99_ms": ms(direct, 0.99),
        "added_p50_ms": round(ms(via_service, 0.5) - ms(direct, 0.5), 4),
        "target_added_p50_ms": 0.1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="100 services, 300 requests")
    args = parser.parse_args()
    if args.quick:
        args.services, args.requests = 100, 300
    suffix = uuid.uuid4().hex[:6]
    node_ns, pod_ns = f"pykube-bench-node-{suffix}", f"pykube-bench-pod-{suffix}"
    veth_node, veth_pod = f"pbn{suffix}", f"pbp{suffix}"
    server = None
    try:
        sh("ip", "netns", "add", node_ns)
        sh("ip", "netns", "add", pod_ns)
        sh("ip", "link", "add", veth_node, "netns", node_ns, "type", "veth", "peer", "name", veth_pod,
           "netns", pod_ns)
        for ns, dev, ip in ((node_ns, veth_node, NODE_IP), (pod_ns, veth_pod, POD_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # kube-proxy relies on a route covering the service CIDR (usually the default route).
        sh("ip", "-n", node_ns, "route", "add", "default", "via", POD_IP)
        server = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-c", SERVER])
        services, slices = synthetic(args.services, args.endpoints)
        sync, _ = asyncio.run(measure_sync(node_ns, services, slices, rounds=5))
        latency = measure_latency(node_ns, args.requests)
        print(json.dumps({"sync": sync, "latency": latency}, indent=2))
    finally:
        if server:
            server.kill()
            server.wait()
        for ns in (node_ns, pod_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    main()
