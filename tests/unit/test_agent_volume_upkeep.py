"""The volume upkeep of a pod's sync (``pykubelet.pod_workers``): projected volumes refreshed on
every sync (a failure is a FailedMount event), and eviction of a pod that uses more local storage
than it may: an emptyDir past its sizeLimit, a container past its ephemeral-storage limit, the pod
past its containers' limits (stopped with the kubelet's minimum grace, Failed/Evicted, one Evicted
event, never started again). Plan, execution and status computation are replaced, as in
test_agent_pod_workers; the volume manager and the runtime are fakes that say what the real ones
would measure."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from pykubelet import pod_workers as pw
from pykubelet.metrics import AgentMetrics
from pykubelet.runtime.base import ContainerInfo, PodRuntime, RuntimeUnavailable
from pymaster.api import objects_pb2
from tests.fakes import FakeRuntime, FakeVolumes

UID = "u1"


class UpkeepVolumes(FakeVolumes):
    """FakeVolumes with the refresh the workers ask of the real volume manager."""

    def __init__(self, calls: list[tuple]) -> None:
        super().__init__(calls)
        self.refresh_failures: list[str] = []
        self.refreshed: list[dict[str, str]] = []  # the pod's labels at each refresh

    async def refresh(self, pod: objects_pb2.Pod) -> list[str]:
        self.refreshed.append(dict(pod.metadata.labels))
        return list(self.refresh_failures)


@dataclass
class Plan:
    def is_noop(self) -> bool:
        return True

    backoff: tuple = ()
    requeue_after: float | None = None


class Status:
    def __init__(self) -> None:
        self.statuses: dict[str, objects_pb2.PodStatus] = {}
        self.sets = 0

    def get(self, uid: str) -> objects_pb2.PodStatus | None:
        return self.statuses.get(uid)

    def set_status(self, pod: objects_pb2.Pod, status: objects_pb2.PodStatus) -> bool:
        self.sets += 1
        self.statuses[pod.metadata.uid] = status
        return True

    def forget(self, uid: str) -> None:
        pass


class Executor:
    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime, self.volumes = runtime, runtime.volumes
        self.kills: list[tuple[float, bool]] = []

    async def kill_pod(self, observed, grace_seconds, remove, pod=None):  # noqa: ANN001 (the executor's)
        self.kills.append((grace_seconds, remove))
        self.runtime.pods[observed.uid] = PodRuntime(UID, "p", "default", [running("app", "exited")])


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def pod_event(self, pod, type_, reason, message, container="") -> None:  # noqa: ANN001
        self.events.append((type_, reason, message))


def running(name: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(id=f"{name}-1", name=name, pod_uid=UID, pod_name="p", pod_namespace="default",
                         state=state)


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runtime = FakeRuntime()
        self.volumes = UpkeepVolumes(self.runtime.calls)
        self.runtime.volumes = self.volumes  # type: ignore[assignment]
        self.runtime.pods[UID] = PodRuntime(UID, "p", "default", [running("app")])
        self.executor, self.status, self.recorder = Executor(self.runtime), Status(), Recorder()
        self.desired: dict[str, objects_pb2.Pod] = {}
        synced = asyncio.Event()
        synced.set()
        self.workers = pw.PodWorkers(
            self.executor, self.desired, synced, self.status,  # type: ignore[arg-type]
            AgentMetrics(CollectorRegistry(), "n1"), "n1", "10.0.0.1", recorder=self.recorder,  # type: ignore[arg-type]
            storage_interval=0,  # measured at every sync
        )
        monkeypatch.setattr(pw.sync, "compute_pod_actions", lambda *args: Plan())
        monkeypatch.setattr(
            pw, "compute_pod_status", lambda *args: objects_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
        )

    async def sync(self, pod: objects_pb2.Pod) -> None:
        """One sync of ``pod``, waited for."""
        self.desired[UID] = pod
        before = self.status.sets
        self.workers.wake(UID)
        async with asyncio.timeout(5):
            while self.status.sets == before:
                await asyncio.sleep(0.01)


def pod_with(volume: objects_pb2.Volume, **labels: str) -> objects_pb2.Pod:
    meta = objects_pb2.ObjectMeta(name="p", namespace="default", uid=UID, labels=labels)
    pod = objects_pb2.Pod(metadata=meta)
    pod.spec.containers.add(name="app", image="pykube/busybox:1.35")
    pod.spec.volumes.append(volume)
    return pod


CONFIG = objects_pb2.Volume(name="config", config_map=objects_pb2.ConfigMapVolumeSource(name="app"))
LIMITED = objects_pb2.Volume(name="scratch", empty_dir=objects_pb2.EmptyDirVolumeSource(size_limit="1Mi"))
PLAIN = objects_pb2.Volume(name="scratch", empty_dir=objects_pb2.EmptyDirVolumeSource())


async def test_every_sync_refreshes_projected_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    await h.sync(pod_with(CONFIG, tier="web"))
    h.volumes.refresh_failures = ['MountVolume.SetUp failed for volume "config" : configmap "app" not found']
    await h.sync(pod_with(CONFIG, tier="db"))
    assert h.volumes.refreshed == [{"tier": "web"}, {"tier": "db"}]  # the pod's latest metadata
    assert h.recorder.events == [
        ("Warning", "FailedMount", 'MountVolume.SetUp failed for volume "config" : configmap "app" not found')
    ]
    assert h.volumes.measured == 0  # no emptyDir with a sizeLimit: nothing to measure
    await h.workers.stop()


async def test_no_upkeep_without_such_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    await h.sync(pod_with(PLAIN))
    assert (h.volumes.refreshed, h.volumes.measured) == ([], 0)
    await h.workers.stop()


async def test_emptydir_over_its_size_limit_evicts_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    await h.sync(pod_with(LIMITED))
    assert h.executor.kills == [] and h.status.statuses[UID].phase == "Running"
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    h.volumes.usage["scratch"] = 1024 * 1024 + 4096
    await h.sync(pod_with(LIMITED))
    status = h.status.statuses[UID]
    assert (status.phase, status.reason, status.message) == ("Failed", "Evicted", message)
    assert h.executor.kills == [(pw.EVICTION_GRACE_SECONDS, False)]
    h.volumes.usage.clear()  # whatever the usage now, an evicted pod stays evicted
    await h.sync(pod_with(LIMITED))
    assert h.status.statuses[UID].reason == "Evicted"
    assert h.recorder.events == [("Warning", "Evicted", message)]  # once
    assert h.volumes.measured == 2
    await h.workers.stop()


async def test_a_finished_pod_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    monkeypatch.setattr(
        pw, "compute_pod_status", lambda *args: objects_pb2.PodStatus(phase="Succeeded", host_ip="10.0.0.1")
    )
    h.status.statuses[UID] = objects_pb2.PodStatus(phase="Succeeded")  # it completed earlier
    h.volumes.usage["scratch"] = 2 * 1024 * 1024
    await h.sync(pod_with(LIMITED))
    assert h.volumes.measured == 0 and h.recorder.events == [] and h.executor.kills == []
    assert h.status.statuses[UID].phase == "Succeeded"
    await h.workers.stop()


def limited_pod(*containers: tuple[str, str], volume: objects_pb2.Volume | None = None) -> objects_pb2.Pod:
    """A pod whose containers (name, limits.ephemeral-storage; "" for none) are as given."""
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid=UID))
    for name, limit in containers:
        container = pod.spec.containers.add(name=name, image="pykube/busybox:1.35")
        if limit:
            container.resources.limits["ephemeral-storage"] = limit
    if volume is not None:
        pod.spec.volumes.append(volume)
    return pod


async def test_container_past_its_storage_limit_evicts_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    pod = limited_pod(("app", "1Mi"), ("big", "100Mi"))
    h.runtime.pods[UID] = PodRuntime(UID, "p", "default", [running("app"), running("big")])
    h.runtime.disk = {"app-1": (512 * 1024, 256 * 1024), "big-1": (10 * 1024 * 1024, 0)}
    await h.sync(pod)
    assert h.executor.kills == [] and h.status.statuses[UID].phase == "Running"
    h.runtime.disk["app-1"] = (800 * 1024, 300 * 1024)  # writable layer + logs: 1100Ki > 1Mi
    await h.sync(pod)
    message = 'Container app exceeded its local ephemeral storage limit "1Mi". '
    status = h.status.statuses[UID]
    assert (status.phase, status.reason, status.message) == ("Failed", "Evicted", message)
    assert h.executor.kills == [(pw.EVICTION_GRACE_SECONDS, False)]
    assert h.recorder.events == [("Warning", "Evicted", message)]
    reads = h.runtime.disk_reads
    await h.sync(pod)  # evicted for good: not measured again
    assert h.runtime.disk_reads == reads and h.status.statuses[UID].reason == "Evicted"
    await h.workers.stop()


async def test_pod_over_its_containers_total_limit_evicts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    pod = limited_pod(("app", "1Mi"), ("side", "1Mi"), volume=PLAIN)
    h.runtime.pods[UID] = PodRuntime(UID, "p", "default", [running("app"), running("side")])
    h.runtime.disk = {"app-1": (900 * 1024, 0), "side-1": (900 * 1024, 0)}  # each within its limit
    await h.sync(pod)
    assert h.status.statuses[UID].phase == "Running"
    h.volumes.usage["scratch"] = 300 * 1024  # the emptyDir (no sizeLimit of its own) tips the pod over
    await h.sync(pod)
    message = "Pod ephemeral local storage usage exceeds the total limit of containers 2Mi. "
    assert (h.status.statuses[UID].reason, h.status.statuses[UID].message) == ("Evicted", message)
    assert h.recorder.events == [("Warning", "Evicted", message)]
    await h.workers.stop()


async def test_a_failed_measurement_does_not_stop_the_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.runtime.disk_error = RuntimeUnavailable("docker engine unreachable")
    await h.sync(limited_pod(("app", "1Mi")))
    assert h.runtime.disk_reads == 1 and h.status.statuses[UID].phase == "Running"
    assert h.executor.kills == [] and h.recorder.events == []
    await h.workers.stop()


async def test_no_storage_limit_no_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(monkeypatch)
    h.runtime.disk = {"app-1": (10**9, 10**9)}
    await h.sync(limited_pod(("app", "")))
    assert (h.runtime.disk_reads, h.volumes.measured) == (0, 0)
    assert h.status.statuses[UID].phase == "Running"
    await h.workers.stop()
