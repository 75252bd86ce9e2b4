"""The node disk a pod's containers take on the Docker Engine: each container's writable layer
(Docker's ``SizeRw``, computed by the engine when containers are listed with ``size=true``) and
its log files (the json-file driver's ``<docker root>/containers/<id>/<id>-json.log`` and its
rotated siblings ``...-json.log.1`` ..., measured on the host like ``du``).

One list call per pod, filtered by its labels, so the engine walks only that pod's layers. The
log files are read on the host: the agent must share the engine's file system (a local engine,
as the volumes already require); a file it cannot read counts as 0 and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pykubelet.runtime import labels
from pykubelet.runtime.base import ContainerDiskUsage
from pykubelet.runtime.docker.engine import Engine

log = logging.getLogger(__name__)

_BLOCK = 512  # st_blocks unit
_JSON_LOG_SUFFIX = "-json.log"


class DiskUsageReader:
    """Reads the disk usage of a pod's containers; remembers the engine's root dir (asked once).

    Args:
        engine: the engine's client and pool.
    """

    def __init__(self, engine: Engine):
        self._engine = engine
        self._root_dir: str | None = None

    async def pod_usage(self, node_name: str, pod_uid: str) -> list[ContainerDiskUsage]:
        """Every container of pod ``pod_uid`` on ``node_name`` with its writable layer and logs.

        Raises:
            RuntimeUnavailable: the engine did not answer.
            ContainerRuntimeError: the engine refused.
        """
        filters = {"label": [f"{labels.NODE_NAME}={node_name}", f"{labels.POD_UID}={pod_uid}"]}
        summaries = await self._engine.run(
            "list_container_stats", lambda api: api.containers(all=True, size=True, filters=filters)
        )
        if not summaries:
            return []
        root_dir = await self._docker_root_dir()
        ids = [s["Id"] for s in summaries]
        logs = await asyncio.to_thread(lambda: [log_bytes(root_dir, cid) for cid in ids])
        return [usage(summary, logs_bytes) for summary, logs_bytes in zip(summaries, logs, strict=True)]

    async def _docker_root_dir(self) -> str:
        if self._root_dir is None:
            info = await self._engine.run("info", lambda api: api.info())
            self._root_dir = str(info.get("DockerRootDir") or "/var/lib/docker")
        return self._root_dir


def usage(summary: dict[str, Any], logs_bytes: int) -> ContainerDiskUsage:
    """The ContainerDiskUsage of one listed container (``size=true``) whose logs take
    ``logs_bytes``."""
    container_labels = summary.get("Labels") or {}
    try:
        restart_count = int(container_labels.get(labels.RESTART_COUNT, "0"))
    except ValueError:
        restart_count = 0
    return ContainerDiskUsage(
        id=summary["Id"],
        name=container_labels.get(labels.CONTAINER_NAME, ""),
        restart_count=restart_count,
        rootfs_bytes=max(int(summary.get("SizeRw") or 0), 0),
        logs_bytes=logs_bytes,
    )


def log_bytes(docker_root_dir: str, container_id: str) -> int:
    """The disk the json-file logs of one container take: its current file and the rotated ones
    (compressed or not); 0 when there are none or they cannot be read."""
    directory = os.path.join(docker_root_dir, "containers", container_id)
    prefix = container_id + _JSON_LOG_SUFFIX
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:  # removed meanwhile, or never logged
        return 0
    except OSError as err:
        log.warning("container logs unreadable, counted as 0 container=%s error=%s", container_id[:12], err)
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            total += entry.stat(follow_symlinks=False).st_blocks * _BLOCK
        except OSError:  # rotated away meanwhile
            continue
    return total

