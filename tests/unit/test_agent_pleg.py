"""The PLEG's relist: which pods changed between two relists, counts, health."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from pykubelet.metrics import AgentMetrics
from pykubelet.pleg import Pleg, changed_pods, count_containers, fingerprint
from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from tests.fakes import FakeRuntime


def container(
    cid: str, name: str = "app", state: str = "running", exit_code: int | None = None
) -> ContainerInfo:
    return ContainerInfo(id=cid, name=name, pod_uid="u", pod_name="p", pod_namespace="default", state=state,
                         exit_code=exit_code)


def pod_runtime(uid: str, *containers: ContainerInfo) -> PodRuntime:
    return PodRuntime(uid=uid, name=f"pod-{uid}", namespace="default", containers=list(containers))


RUNNING = pod_runtime("a", container("c1"), container("i1", INFRA_CONTAINER_NAME))
EXITED = pod_runtime("a", container("c1", state="exited", exit_code=0), container("i1", INFRA_CONTAINER_NAME))
RESTARTED = pod_runtime("a", container("c2"), container("c1", state="exited", exit_code=0),
                        container("i1", INFRA_CONTAINER_NAME))


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ({}, {}, set()),
        ({"a": RUNNING}, {"a": RUNNING}, set()),
        ({}, {"a": RUNNING}, {"a"}),
        ({"a": RUNNING}, {}, {"a"}),
        ({"a": RUNNING}, {"a": EXITED}, {"a"}),
        ({"a": EXITED}, {"a": RESTARTED}, {"a"}),
        ({"a": RUNNING, "b": pod_runtime("b", container("x"))}, {"a": RUNNING, "b": pod_runtime("b")}, {"b"}),
    ],
)
def test_changed_pods(old: dict[str, PodRuntime], new: dict[str, PodRuntime], changed: set[str]) -> None:
    to_fp = lambda pods: {uid: fingerprint(p) for uid, p in pods.items()}  # noqa: E731
    assert changed_pods(to_fp(old), to_fp(new)) == changed


def test_count_containers() -> None:
    pods = {
        "a": RESTARTED,
        "b": pod_runtime(
            "b", container("x", state="created"), container("i2", INFRA_CONTAINER_NAME, "exited")
        ),
    }
    counts, by_state = count_containers(pods)
    assert (counts.running_pods, counts.running_containers) == (1, 1)
    assert by_state == {"running": 1, "exited": 1, "created": 1}


async def test_relist_notifies_changes_and_tracks_health() -> None:
    runtime = FakeRuntime()
    events: list[str] = []
    relists: list[set[str]] = []
    registry = CollectorRegistry()
    pleg = Pleg(runtime, "n1", events.append, AgentMetrics(registry, "n1"),  # type: ignore[arg-type]
                on_relist=lambda pods: relists.append(set(pods)), period=0.05)
    runtime.pods = {"a": RUNNING}
    await pleg.relist()
    await pleg.relist()
    runtime.pods = {"a": EXITED}
    await pleg.relist()
    assert events == ["a", "a"]
    assert relists == [{"a"}] * 3
    assert registry.get_sample_value("kubelet_running_pods") == 1
    assert registry.get_sample_value("kubelet_running_containers", {"container_state": "exited"}) == 1
    assert registry.get_sample_value("kubelet_pleg_relist_duration_seconds_count") == 3
    assert pleg.healthy()
    deadline = time.monotonic() + 5
    while pleg.healthy() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not pleg.healthy()  # no relist for three periods
    message = pleg.unhealthy_message()
    assert message is not None and message.startswith("PLEG is not healthy: pleg was last seen active ")
