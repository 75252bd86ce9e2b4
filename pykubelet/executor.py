"""Carrying out a pod's sync plan (``pykubelet.sync.PodActions``) on the runtime: kill, create the
sandbox, start containers in spec order (each with its volumes prepared first), remove old dead
containers; and stopping a whole pod.

Failures to start one container (image pull, create, start) do not raise: they come back as
``ContainerFailure`` for the pod status (waiting reason ``ErrImagePull``,
``CreateContainerError`` ...), while an unreachable engine (RuntimeUnavailable) propagates so
the worker retries the whole sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerRuntimeError,
    PodRuntime,
    Runtime,
    RuntimeUnavailable,
)
from pykubelet.sync import LIVE_STATES, ContainerFailure, PodActions
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2
from pymaster.api.pods import grace_period_seconds, pod_key

log = logging.getLogger(__name__)


async def execute(
    runtime: Runtime,
    volumes: PodVolumes,
    pod: objects_pb2.Pod,
    actions: PodActions,
    node_name: str,
    infra_image: str,
    observed: PodRuntime | None,
    grace_seconds: float | None = None,
) -> list[ContainerFailure]:
    """Carries out ``actions`` for ``pod``: kill, create the sandbox, start containers in spec
    order (each with its volumes prepared first), remove old dead containers.

    Args:
        runtime: the container runtime.
        volumes: the volume manager.
        pod: the desired pod.
        actions: ``compute_pod_actions(pod, observed)``.
        node_name: this node (labels).
        infra_image: the infra container's image.
        observed: what ``actions`` was computed from.
        grace_seconds: overrides the pod's grace period (``grace_period_seconds``) for the kills.

    Returns:
        The containers that could not be started and why (a failed sandbox fails them all).

    Raises:
        RuntimeUnavailable: the engine did not answer; nothing more was attempted.
        ContainerRuntimeError: stopping a container failed (starting a second copy beside it
            would be worse than retrying the sync).
    """
    key = pod_key(pod)
    grace = grace_seconds if grace_seconds is not None else grace_period_seconds(pod)
    if actions.kill_pod and observed is not None:
        log.info("killing pod pod=%s uid=%s grace=%s", key, pod.metadata.uid, grace)
        await kill_pod(runtime, volumes, observed, grace, remove=False)
    elif actions.containers_to_kill:
        for container_id, reason in actions.containers_to_kill.items():
            log.info("killing container pod=%s id=%s reason=%s", key, container_id[:12], reason)
        await _all(runtime.stop_container(cid, grace) for cid in actions.containers_to_kill)

    failures: list[ContainerFailure] = []
    infra = observed.infra if observed is not None else None
    if actions.create_sandbox:
        try:
            infra = await runtime.start_infra(pod, node_name, infra_image, actions.sandbox_restart_count)
            log.info("sandbox started pod=%s id=%s ip=%s", key, infra.id[:12], infra.ip)
        except RuntimeUnavailable:
            raise
        except ContainerRuntimeError as err:
            log.warning("sandbox failed pod=%s reason=%s message=%s", key, err.reason, err.message)
            failures = [ContainerFailure(n, err.reason, err.message) for n in actions.containers_to_start]

    if infra is not None and not failures:
        for container in pod.spec.containers:  # spec order, like kubelet
            if container.name in actions.containers_to_start:
                restart_count = actions.containers_to_start[container.name]
                failure = await _start(runtime, volumes, pod, container, node_name, infra, restart_count)
                if failure is not None:
                    failures.append(failure)

    await _remove_garbage(runtime, actions.containers_to_remove, key)
    return failures


async def _start(
    runtime: Runtime,
    volumes: PodVolumes,
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    node_name: str,
    infra: ContainerInfo,
    restart_count: int,
) -> ContainerFailure | None:
    key = pod_key(pod)
    try:
        await runtime.ensure_image(container.image, container.image_pull_policy)
        mounts = await volumes.mounts(pod, container)
        started = await runtime.start_container(pod, container, node_name, infra, restart_count, mounts)
    except RuntimeUnavailable:
        raise
    except ContainerRuntimeError as err:
        log.warning("container start failed pod=%s container=%s reason=%s message=%s", key, container.name,
                    err.reason, err.message)
        return ContainerFailure(container.name, err.reason, err.message)
    log.info("container started pod=%s container=%s id=%s restart_count=%d", key, container.name,
             started.id[:12], restart_count)
    return None


async def _remove_garbage(runtime: Runtime, container_ids: list[str], key: str) -> None:
    """Best effort: a container that could not be removed now is removed at a later sync."""
    results = await asyncio.gather(
        *(runtime.remove_container(cid) for cid in container_ids), return_exceptions=True
    )
    for container_id, result in zip(container_ids, results, strict=True):
        if isinstance(result, RuntimeUnavailable):
            raise result
        if isinstance(result, ContainerRuntimeError):
            log.warning("removing dead container failed pod=%s id=%s error=%s", key, container_id[:12],
                        result)
        elif isinstance(result, BaseException):
            raise result


async def kill_pod(
    runtime: Runtime, volumes: PodVolumes, observed: PodRuntime, grace_seconds: float, remove: bool
) -> None:
    """Stops every live container of a pod, app containers in parallel first, then the infra
    container(s); with ``remove``, then removes all of its containers and, once they are gone,
    has the volume manager clean up its volumes (emptyDir contents, on disk or in memory).

    Without ``remove`` the volumes stay: a pod whose sandbox is re-created keeps its emptyDir
    data, as in Kubernetes.

    Args:
        runtime: the container runtime.
        volumes: the volume manager.
        observed: the pod's containers.
        grace_seconds: SIGTERM to SIGKILL delay for each container.
        remove: also remove the containers and the pod's volumes (deleted pods, orphans).

    Raises:
        ContainerRuntimeError: a stop or removal failed (after the others were attempted); the
            volumes are then left for the next attempt, never removed under a live container.
    """
    apps = [c for c in observed.containers if c.name != INFRA_CONTAINER_NAME and c.state in LIVE_STATES]
    infras = [c for c in observed.containers if c.name == INFRA_CONTAINER_NAME and c.state in LIVE_STATES]
    await _all(runtime.stop_container(c.id, grace_seconds) for c in apps)
    await _all(runtime.stop_container(c.id, grace_seconds) for c in infras)
    if remove:
        await _all(runtime.remove_container(c.id) for c in observed.containers)
        await volumes.cleanup(observed.uid)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Awaits every call concurrently; raises the first error once all are done."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
