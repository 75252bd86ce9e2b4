"""Hand-built pods and observations for the agent's plan and executor tests: a pod named web with
containers of one image, and the Docker containers ("infra", "app") an agent would observe."""

from __future__ import annotations

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.runtime.labels import container_spec_hash
from pymaster.api import objects_pb2

IMAGE = "pykube/busybox:1.35"
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


def make_pod(
    *names: str,
    policy: str = "Always",
    deleting: bool = False,
    phase: str = "",
    grace: int | None = None,
    deletion_grace: int | None = None,
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web", namespace="default", uid=UID))
    for name in names or ("app",):
        pod.spec.containers.add(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
    pod.spec.restart_policy = policy
    if grace is not None:
        pod.spec.termination_grace_period_seconds = grace
    if deleting:
        pod.metadata.deletion_timestamp.GetCurrentTime()
    if deletion_grace is not None:
        pod.metadata.deletion_grace_period_seconds = deletion_grace
    pod.status.phase = phase
    return pod


def spec_hash(name: str) -> str:
    container = objects_pb2.Container(name=name, image=IMAGE, image_pull_policy="IfNotPresent")
    return container_spec_hash(container)


def infra(state: str = "running", n: int = 0) -> ContainerInfo:
    return ContainerInfo(
        id=f"POD-{n}", name=INFRA_CONTAINER_NAME, pod_uid=UID, pod_name="web", pod_namespace="default",
        state=state, restart_count=n, ip="172.17.0.9" if state == "running" else "",
    )


def app(
    name: str = "app", state: str = "running", code: int | None = None, n: int = 0, stale: bool = False
) -> ContainerInfo:
    return ContainerInfo(
        id=f"{name}-{n}", name=name, pod_uid=UID, pod_name="web", pod_namespace="default", state=state,
        exit_code=code, restart_count=n, spec_hash="0ld" if stale else spec_hash(name),
    )


def observed(*containers: ContainerInfo) -> PodRuntime:
    return PodRuntime(uid=UID, name="web", namespace="default", containers=list(containers))
