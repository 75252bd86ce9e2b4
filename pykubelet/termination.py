"""Termination messages (Kubernetes' ``terminationMessagePath`` / ``terminationMessagePolicy``):
what a container wrote to its termination log before it exited becomes
``state.terminated.message`` of its status; with ``FallbackToLogsOnError``, a container that
failed (exit code not 0) and wrote nothing gets the tail of its logs instead (the last 80 lines,
at most 2048 bytes, as the kubelet).

Read once per dead container (its id), kept while the pod is on the node: a terminated
container's message never changes.
"""

from __future__ import annotations

import contextlib
import logging

from pykubelet.runtime.base import ContainerRuntimeError, PodRuntime, Runtime
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2

log = logging.getLogger(__name__)

FALLBACK_LINES = 80
FALLBACK_MAX_BYTES = 2048


class TerminationMessages:
    """The termination messages of the node's dead containers.

    Args:
        runtime: the container runtime (logs, for the fallback).
        volumes: the volume manager (the termination log files).
    """

    def __init__(self, runtime: Runtime, volumes: PodVolumes):
        self._runtime = runtime
        self._volumes = volumes
        self._by_pod: dict[str, dict[str, str]] = {}  # pod uid -> container id -> message

    async def collect(self, pod: objects_pb2.Pod, observed: PodRuntime | None) -> dict[str, str]:
        """Container id -> message for every exited container of ``pod`` (read when first seen)."""
        if observed is None:
            return {}
        known = self._by_pod.setdefault(pod.metadata.uid, {})
        specs = [*pod.spec.init_containers, *pod.spec.containers]
        policies = {c.name: c.termination_message_policy for c in specs}
        for container in observed.containers:
            if container.state != "exited" or container.id in known or container.name not in policies:
                continue
            message = await self._volumes.termination_message(
                pod.metadata.uid, container.name, container.restart_count
            )
            if not message and policies[container.name] == "FallbackToLogsOnError" and container.exit_code:
                message = await self._log_tail(container.id)
            known[container.id] = message
        current = {c.id for c in observed.containers}
        for gone in set(known) - current:
            del known[gone]
        return dict(known)

    def forget(self, uid: str) -> None:
        """Drops a pod that left the node."""
        self._by_pod.pop(uid, None)

    async def _log_tail(self, container_id: str) -> str:
        chunks: list[bytes] = []
        try:
            stream = self._runtime.logs(container_id, False, FALLBACK_LINES, False)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    chunks.append(chunk)
        except ContainerRuntimeError as err:
            log.debug("no logs for the termination message id=%s error=%s", container_id[:12], err)
            return ""
        return b"".join(chunks)[-FALLBACK_MAX_BYTES:].decode("utf-8", "replace")
