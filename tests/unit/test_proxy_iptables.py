"""The node proxy against real iptables, in a throwaway network namespace (the host's tables are
never touched): the restore text parses, full and incremental syncs leave exactly the wanted
chains, stale chains of an earlier agent go, the base jumps are ensured once and before the first
rules are written, the host lock lets one proxier program at a time, and cleanup removes
everything the proxy owns."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid

import pytest

from pykubelet.cluster_view import ClusterView
from pykubelet.proxy import rules
from pykubelet.proxy.cleanup import cleanup_proxy_rules
from pykubelet.proxy.iptables import Iptables
from pykubelet.proxy.proxier import Proxier
from tests.unit.test_proxy_rules import NET, endpoint, sep_chain, service, slice_, svc_chain

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables-restore"),
                                reason="needs root and iptables")


@pytest.fixture
def netns():
    name = f"pykube-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield Iptables(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def view_of(services, slices) -> ClusterView:
    view = ClusterView(None)  # type: ignore[arg-type]  # never run: objects set by the test
    view.services.objects = {(s.metadata.namespace, s.metadata.name): s for s in services}
    view.endpoint_slices.objects = {(s.metadata.namespace, s.metadata.name): s for s in slices}
    for kind in view.kinds.values():
        kind.synced.set()
    return view


def sample():
    np_ports = [dict(port=80, node_port=30080), dict(name="dns", port=53, protocol="UDP", node_port=30053)]
    svcs = [service(), service("np", cluster_ip="10.96.0.12", type_="NodePort", session_affinity="ClientIP",
                               external_traffic_policy="Local", ports=np_ports),
            service("empty", cluster_ip="10.96.0.13"), service("local", cluster_ip="10.96.0.14",
                                                               internal_traffic_policy="Local")]
    slices = [slice_("web", [endpoint("10.244.0.5"), endpoint("10.244.1.5", "node-b")]),
              slice_("np", [endpoint("10.244.0.6"), endpoint("10.244.1.6", "node-b")],
                     ports=[dict(port=8080), dict(name="dns", port=5353, protocol="UDP")]),
              slice_("local", [endpoint("10.244.1.7", "node-b")])]
    return svcs, slices


def saved(ipt: Iptables, table: str) -> str:
    return asyncio.run(ipt.save(table))


def test_full_restore_text_of_every_kind_parses(netns):
    svcs, slices = sample()
    r = rules.build_rules(svcs, slices, "node-a", NET)
    text = rules.restore_text("nat", r.nat, r.nat) + rules.restore_text("filter", r.filter, r.filter)
    asyncio.run(netns.restore(text, test=True))


def test_sync_full_then_incremental_then_cleanup(netns):
    svcs, slices = sample()
    view = view_of(svcs, slices)
    proxier = Proxier(view, "node-a", NET, iptables=netns, lock_path=None)

    async def scenario():
        await proxier.sync()
        nat = await netns.save("nat")
        assert f":{svc_chain()} " in nat and f"-j {sep_chain('10.244.1.5:8080')}" in nat
        assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
        assert "--dport 80 -j REJECT" in await netns.save("filter")  # "empty" has no endpoints
        # One endpoint of web replaced: an incremental sync writes the changed chains only.
        view.endpoint_slices.objects[("default", "web-abc")] = slice_("web", [endpoint("10.244.0.9")])
        await proxier.sync()
        nat = await netns.save("nat")
        assert f":{sep_chain('10.244.0.9:8080')} " in nat
        assert f":{sep_chain('10.244.0.5:8080')} " not in nat
        assert f":{sep_chain('10.244.1.5:8080')} " not in nat
        assert nat.count("-j KUBE-SERVICES") == 2  # the jumps were not added twice
        # A new proxier (agent restart) starts with a full sync, deleting chains nobody wants.
        del view.services.objects[("default", "web")]
        restarted = Proxier(view, "node-a", NET, iptables=netns, lock_path=None)
        await restarted.sync()
        nat = await netns.save("nat")
        assert svc_chain() not in nat and sep_chain("10.244.0.9:8080") not in nat
        assert nat.count("-j KUBE-SERVICES") == 2
        assert await cleanup_proxy_rules(netns) > 0
        for table in ("nat", "filter"):
            assert "KUBE-" not in await netns.save(table)
        assert await cleanup_proxy_rules(netns) == 0  # nothing left: still fine

    asyncio.run(scenario())


def test_the_jumps_are_in_place_when_the_first_rules_are_written(netns):
    """A full sync ensures the jumps (into chains made empty if new) before its restore, so the
    rules take effect the moment they are written: a ClusterIP packet never passes between."""
    seen: list[str] = []
    restore = netns.restore

    async def restore_and_look(text: str, test: bool = False) -> None:
        seen.append(await netns.save("nat"))
        await restore(text, test)

    netns.restore = restore_and_look
    proxier = Proxier(view_of(*sample()), "node-a", NET, iptables=netns, lock_path=None)
    asyncio.run(proxier.sync())
    before = seen[0]  # the table as the restore found it
    assert "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in before
    assert ":KUBE-SERVICES - [0:0]" in before and f":{svc_chain()} " not in before
    assert f":{svc_chain()} " in asyncio.run(netns.save("nat"))


def test_one_proxier_per_host_lock(netns, tmp_path):
    view = view_of(*sample())
    lock = str(tmp_path / "proxy.lock")
    first = Proxier(view, "node-a", NET, iptables=netns, lock_path=lock, min_sync_period=0.05)
    second = Proxier(view, "node-b", NET, iptables=netns, lock_path=lock, min_sync_period=0.05)

    async def scenario():
        one = asyncio.create_task(first.run())
        while first.syncs == 0:
            await asyncio.sleep(0.02)
        two = asyncio.create_task(second.run())
        first.mark_dirty()
        while first.syncs < 2:
            await asyncio.sleep(0.02)
        assert second.syncs == 0  # standing by
        one.cancel()
        while second.syncs == 0:  # takes over once the lock is free
            await asyncio.sleep(0.05)
        two.cancel()
        await asyncio.gather(one, two, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_burst_of_changes_costs_one_sync(netns):
    view = view_of(*sample())
    proxier = Proxier(view, "node-a", NET, iptables=netns, lock_path=None, min_sync_period=0.5)

    async def scenario():
        task = asyncio.create_task(proxier.run())
        while proxier.syncs == 0:
            await asyncio.sleep(0.02)
        for i in range(20):
            changed = slice_("web", [endpoint(f"10.244.0.{i + 10}")])
            view.endpoint_slices.objects[("default", "web-abc")] = changed
            proxier.mark_dirty("endpointslices")
            await asyncio.sleep(0.01)
        while "10.244.0.29:8080" not in await netns.save("nat"):
            await asyncio.sleep(0.05)
        assert proxier.syncs <= 3  # the first, maybe one mid-burst, the last
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 20))
