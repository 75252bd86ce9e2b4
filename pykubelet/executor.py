"""Carrying out a pod's sync plan (``pykubelet.sync.PodActions``) on the runtime: kill, create the
sandbox, start containers in spec order (image, volumes and termination log first, the postStart
hook after), remove old dead containers; and stopping a whole pod (preStop hooks, then SIGTERM
with what is left of the grace period; app containers first, then sidecars in reverse order,
then the sandbox).

Before each start the container's environment is resolved (``pykubelet.env``: envFrom, valueFrom,
$(VAR) in env, command and args) into a copy of its spec, which is what runs and what the volume
manager mounts for (subPathExpr expands against its env); the original gives the name, labels and
spec hash, so a changed ConfigMap never restarts a running container, as in Kubernetes.

Failures to start one container (image pull, environment, create, start, postStart hook) do not
raise: they come back as ``ContainerFailure`` for the pod status (waiting reason
``ErrImagePull``, ``CreateContainerConfigError``, ``CreateContainerError``, ``PostStartHookError``
...), and the next sync tries again, while an unreachable engine (RuntimeUnavailable) propagates
so the worker retries the whole sync.

Every step a user would want to see is an event about the pod (kubelet's wording): Pulling,
Pulled, Created, Started, Killing, Failed, FailedPostStartHook, InvalidEnvironmentVariableNames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from pykubelet.config_objects import ConfigObjects
from pykubelet.env import EnvError, resolve_container
from pykubelet.events import EventRecorder
from pykubelet.lifecycle import run_hook
from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    ContainerInfo,
    ContainerRuntimeError,
    ImagePullError,
    PodRuntime,
    Runtime,
    RuntimeUnavailable,
    SandboxConfig,
)
from pykubelet.service_env import ServicesFor
from pykubelet.sync import LIVE_STATES, ContainerFailure, PodActions, is_sidecar
from pykubelet.volume_projection import VolumeMountError
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2
from pymaster.api.pods import grace_period_seconds, pod_key

log = logging.getLogger(__name__)

# After a preStop hook, a container still gets this long between SIGTERM and SIGKILL (kubelet's
# minimumGracePeriodInSeconds), however much of the grace period the hook used.
MIN_GRACE_AFTER_PRE_STOP = 2.0


class _NoEvents:
    """The recorder of an executor that records nothing (tests, tools)."""

    def pod_event(self, *args: object, **kwargs: object) -> None:
        pass


def pod_ip(
    pod: objects_pb2.Pod, observed: PodRuntime | None, infra: ContainerInfo | None, host_ip: str
) -> str:
    """The pod's address for hooks: the node's on the host network, else its sandbox's."""
    if pod.spec.host_network:
        return host_ip
    if infra is not None and infra.ip:
        return infra.ip
    return observed.infra.ip if observed is not None and observed.infra is not None else ""


class PodExecutor:
    """Runs plans and pod kills for the pods of one node.

    Args:
        runtime: the container runtime.
        volumes: the volume manager.
        node_name: this node (labels).
        infra_image: the infra container's image.
        host_ip: the node's address (hooks of pods on the host network, status.hostIP in env).
        recorder: where events go (none by default).
        objects: where ConfigMaps and Secrets are read (env); None: a container referring to
            one fails to start.
        sandbox_config: returns a pod's sandbox settings (its network and DNS:
            ``PodNetwork.sandbox_config``); None: the runtime's defaults. Its errors
            (NetworkNotReady) fail the sandbox like the runtime's own.
        services_for: the Services of a namespace, for the containers' service env vars
            (``pykubelet.service_env``); None: none.
    """

    def __init__(
        self,
        runtime: Runtime,
        volumes: PodVolumes,
        node_name: str,
        infra_image: str,
        host_ip: str = "",
        recorder: EventRecorder | None = None,
        objects: ConfigObjects | None = None,
        sandbox_config: Callable[[objects_pb2.Pod], Awaitable[SandboxConfig]] | None = None,
        services_for: ServicesFor | None = None,
    ):
        self.runtime = runtime
        self.volumes = volumes
        self._node_name = node_name
        self._infra_image = infra_image
        self._host_ip = host_ip
        self._events: EventRecorder | _NoEvents = recorder or _NoEvents()
        self._objects = objects
        self._sandbox_config = sandbox_config
        self._services_for = services_for

    async def execute(
        self,
        pod: objects_pb2.Pod,
        actions: PodActions,
        observed: PodRuntime | None,
        grace_overrides: Mapping[str, float] | None = None,
    ) -> list[ContainerFailure]:
        """Carries out ``actions`` for ``pod``: kill, create the sandbox, start containers in spec
        order (init containers first), remove old dead containers.

        Args:
            pod: the desired pod.
            actions: ``compute_pod_actions(pod, observed)``.
            observed: what ``actions`` was computed from.
            grace_overrides: container name -> grace period replacing the pod's for that
                container's kill (a liveness or startup probe's own terminationGracePeriodSeconds).

        Returns:
            The containers that could not be started and why (a failed sandbox fails them all).

        Raises:
            RuntimeUnavailable: the engine did not answer; nothing more was attempted.
            ContainerRuntimeError: stopping a container failed (starting a second copy beside it
                would be worse than retrying the sync).
        """
        key = pod_key(pod)
        grace = float(grace_period_seconds(pod))
        overrides = grace_overrides or {}
        if actions.kill_pod and observed is not None:
            log.info("killing pod pod=%s uid=%s grace=%s", key, pod.metadata.uid, grace)
            await self.kill_pod(observed, grace, remove=False, pod=pod)
        elif actions.containers_to_kill and observed is not None:
            by_id = {c.id: c for c in observed.containers}
            for container_id, reason in actions.containers_to_kill.items():
                log.info("killing container pod=%s id=%s reason=%s", key, container_id[:12], reason)
            await _all(
                self._stop(pod, by_id[cid], overrides.get(by_id[cid].name, grace), reason, observed)
                for cid in actions.containers_to_kill
                if cid in by_id
            )

        failures: list[ContainerFailure] = []
        infra = observed.infra if observed is not None else None
        if actions.create_sandbox:
            try:
                infra = await self._start_infra(pod, actions.sandbox_restart_count)
                log.info("sandbox started pod=%s id=%s ip=%s", key, infra.id[:12], infra.ip)
            except RuntimeUnavailable:
                raise
            except ContainerRuntimeError as err:
                log.warning("sandbox failed pod=%s reason=%s message=%s", key, err.reason, err.message)
                self._events.pod_event(pod, "Warning", "FailedCreatePodSandBox",
                                       f"Failed to create pod sandbox: {err.message}")
                failures = [ContainerFailure(n, err.reason, err.message) for n in actions.containers_to_start]

        if infra is not None and not failures:
            for container in [*pod.spec.init_containers, *pod.spec.containers]:  # spec order, like kubelet
                if container.name in actions.containers_to_start:
                    restart_count = actions.containers_to_start[container.name]
                    failure = await self._start(pod, container, infra, restart_count, observed)
                    if failure is not None:
                        failures.append(failure)

        await self._remove_garbage(actions.containers_to_remove, key)
        return failures

    async def _start_infra(self, pod: objects_pb2.Pod, restart_count: int) -> ContainerInfo:
        if self._sandbox_config is None:
            return await self.runtime.start_infra(pod, self._node_name, self._infra_image, restart_count)
        sandbox = await self._sandbox_config(pod)
        return await self.runtime.start_infra(
            pod, self._node_name, self._infra_image, restart_count, sandbox=sandbox
        )

    async def _start(
        self,
        pod: objects_pb2.Pod,
        container: objects_pb2.Container,
        infra: ContainerInfo,
        restart_count: int,
        observed: PodRuntime | None,
    ) -> ContainerFailure | None:
        key, name = pod_key(pod), container.name
        try:
            await self._ensure_image(pod, container)  # before the environment, as in the kubelet
            resolved = await resolve_container(
                pod, container, self._objects, pod_ip(pod, observed, infra, self._host_ip), self._host_ip,
                warn=lambda reason, message: self._events.pod_event(pod, "Warning", reason, message),
                services_for=self._services_for,
            )
            mounts = await self.volumes.mounts(pod, resolved)
            mounts.append(await self.volumes.termination_log(pod, container, restart_count))
            started = await self.runtime.start_container(
                pod, container, self._node_name, infra, restart_count, mounts, resolved=resolved
            )
        except RuntimeUnavailable:
            raise
        except EnvError as err:
            log.warning("container config failed pod=%s container=%s message=%s", key, name, err.message)
            self._events.pod_event(pod, "Warning", "Failed", f"Error: {err.message}", name)
            return ContainerFailure(name, "CreateContainerConfigError", err.message)
        except VolumeMountError as err:  # the pod waits in ContainerCreating, as with the kubelet
            log.warning("volume setup failed pod=%s container=%s message=%s", key, name, err.message)
            self._events.pod_event(pod, "Warning", VolumeMountError.event_reason, err.message, name)
            return ContainerFailure(name, err.reason, err.message)
        except ContainerRuntimeError as err:
            log.warning("container start failed pod=%s container=%s reason=%s message=%s", key, name,
                        err.reason, err.message)
            self._events.pod_event(pod, "Warning", "Failed", f"Error: {err.message}", name)
            return ContainerFailure(name, err.reason, err.message)
        self._events.pod_event(pod, "Normal", "Created", f"Created container {name}", name)
        self._events.pod_event(pod, "Normal", "Started", f"Started container {name}", name)
        log.info("container started pod=%s container=%s id=%s restart_count=%d", key, name,
                 started.id[:12], restart_count)
        if container.lifecycle.HasField("post_start"):
            return await self._post_start(pod, container, started, infra, observed)
        return None

    async def _ensure_image(self, pod: objects_pb2.Pod, container: objects_pb2.Container) -> None:
        image, name = container.image, container.name
        policy = container.image_pull_policy
        try:
            pulled = await self.runtime.ensure_image(image, policy, self._pulling(pod, name))
        except ImagePullError as err:
            message = f'Failed to pull image "{image}": {err.message}'
            self._events.pod_event(pod, "Warning", "Failed", message, name)
            raise
        if pulled is None:
            self._events.pod_event(pod, "Normal", "Pulled",
                                   f'Container image "{image}" already present on machine', name)
        else:
            self._events.pod_event(pod, "Normal", "Pulled",
                                   f'Successfully pulled image "{image}" in {pulled:.3f}s', name)

    def _pulling(self, pod: objects_pb2.Pod, name: str) -> Callable[[str], None]:
        """What the runtime calls when it starts a pull: the Pulling event."""
        def pulling(image: str) -> None:
            self._events.pod_event(pod, "Normal", "Pulling", f'Pulling image "{image}"', name)
        return pulling

    async def _post_start(
        self,
        pod: objects_pb2.Pod,
        container: objects_pb2.Container,
        started: ContainerInfo,
        infra: ContainerInfo,
        observed: PodRuntime | None,
    ) -> ContainerFailure | None:
        """Runs the postStart hook; a failed one kills the container (kubelet's rule). The hook
        gets the pod's grace period at most."""
        grace = float(grace_period_seconds(pod))
        address = pod_ip(pod, observed, infra, self._host_ip)
        result = await run_hook(self.runtime, container.lifecycle.post_start, container, started.id, address,
                                max(grace, 1.0))
        if result.ok:
            return None
        message = f"PostStartHook failed: {result.message}".rstrip(": ")
        log.warning("postStart hook failed pod=%s container=%s message=%s", pod_key(pod), container.name,
                    result.message)
        self._events.pod_event(pod, "Warning", "FailedPostStartHook", message, container.name)
        await self._stop(pod, started, grace, "FailedPostStartHook", observed, pre_stop=False)
        return ContainerFailure(container.name, "PostStartHookError", message)

    async def _stop(
        self,
        pod: objects_pb2.Pod | None,
        info: ContainerInfo,
        grace: float,
        reason: str,
        observed: PodRuntime | None,
        pre_stop: bool = True,
    ) -> None:
        """Stops one container: its preStop hook first (when it runs and has one), then SIGTERM
        (the image's stop signal) with what is left of ``grace``, then SIGKILL."""
        spec = _spec_of(pod, info.name)
        if pod is not None and spec is not None:
            self._events.pod_event(pod, "Normal", "Killing", f"Stopping container {info.name}", info.name)
        hook = spec.lifecycle.pre_stop if spec is not None and spec.lifecycle.HasField("pre_stop") else None
        if pre_stop and pod is not None and hook is not None and info.state == "running":
            began = time.monotonic()
            address = pod_ip(pod, observed, None, self._host_ip)
            result = await run_hook(self.runtime, hook, spec, info.id, address, max(grace, 0.1))
            if not result.ok:
                log.warning("preStop hook failed pod=%s container=%s message=%s", pod_key(pod), info.name,
                            result.message)
                self._events.pod_event(pod, "Warning", "FailedPreStopHook",
                                       f"PreStopHook failed: {result.message}", info.name)
            grace = max(grace - (time.monotonic() - began), MIN_GRACE_AFTER_PRE_STOP)
        await self.runtime.stop_container(info.id, grace)

    async def _remove_garbage(self, container_ids: list[str], key: str) -> None:
        """Best effort: a container that could not be removed now is removed at a later sync."""
        results = await asyncio.gather(
            *(self.runtime.remove_container(cid) for cid in container_ids), return_exceptions=True
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
        self, observed: PodRuntime, grace_seconds: float, remove: bool, pod: objects_pb2.Pod | None = None
    ) -> None:
        """Stops every live container of a pod: the app containers in parallel first, then the
        sidecars one by one in reverse order, then any other init container, then the infra
        container(s); with ``remove``, then removes all of its containers and, once they are gone,
        has the volume manager clean up (emptyDir contents, tmpfs, staged binds, termination logs).

        Without ``remove`` the volumes stay: a pod whose sandbox is re-created keeps its emptyDir
        data, as in Kubernetes.

        Args:
            observed: the pod's containers.
            grace_seconds: SIGTERM to SIGKILL delay for each container (preStop hooks included).
            remove: also remove the containers and the pod's volumes (deleted pods, orphans).
            pod: the pod's spec, for preStop hooks and the stop order; None (an orphan): no hooks.

        Raises:
            ContainerRuntimeError: a stop or removal failed (after the others were attempted); the
                volumes are then left for the next attempt, never removed under a live container.
        """
        live = [c for c in observed.containers if c.state in LIVE_STATES]
        sidecars = [c.name for c in pod.spec.init_containers if is_sidecar(c)] if pod is not None else []
        apps = {c.name for c in pod.spec.containers} if pod is not None else None

        def stop(containers: Sequence[ContainerInfo]) -> Awaitable[None]:
            return _all(self._stop(pod, c, grace_seconds, "killing the pod", observed) for c in containers)

        infras = [c for c in live if c.name == INFRA_CONTAINER_NAME]
        others = [c for c in live if c.name != INFRA_CONTAINER_NAME]
        await stop([c for c in others if apps is None or c.name in apps])
        for name in reversed(sidecars):
            await stop([c for c in others if c.name == name])
        await stop([c for c in others if apps is not None and c.name not in apps and c.name not in sidecars])
        await stop(infras)
        if remove:
            await _all(self.runtime.remove_container(c.id) for c in observed.containers)
            await self.volumes.cleanup(observed.uid)


def _spec_of(pod: objects_pb2.Pod | None, name: str) -> objects_pb2.Container | None:
    if pod is None:
        return None
    return next((c for c in [*pod.spec.init_containers, *pod.spec.containers] if c.name == name), None)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Awaits every call concurrently; raises the first error once all are done."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
