"""The ConfigMaps and Secrets the node's pods use (volumes, env), read from the master and kept
for a few seconds, so every pod sync may ask for them cheaply and a change reaches the running
pods within a sync period (the kubelet's TTL-based configMap/secret managers).

The master lets a node read only the objects that a pod bound to it references (its node
authorizer rule). Secrets stay in this process' memory (and, once projected, in tmpfs): never on
the agent's disk. An immutable object is never read again once seen. Concurrent asks for one
object share one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import errors, objects_pb2
from pymaster.client import Client

CACHE_SECONDS = 5.0  # below the pod workers' resync period (10 s)


@dataclass
class _Entry:
    fetched: float
    obj: Message | None  # None: it does not exist


class ConfigObjects:
    """Reads ConfigMaps and Secrets for the node's pods.

    Args:
        client: the master's client (the node's identity).
        ttl: seconds an answer (also "it does not exist") is reused.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self, client: Client, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._reading: dict[tuple[str, str, str], asyncio.Future[Message | None]] = {}

    async def config_map(self, namespace: str, name: str) -> objects_pb2.ConfigMap | None:
        """The ConfigMap, or None when it does not exist.

        Raises:
            ApiError: the master could not be asked (Unavailable ...) or refused (Forbidden).
        """
        return await self._get("configmaps", namespace, name)  # type: ignore[return-value]

    async def secret(self, namespace: str, name: str) -> objects_pb2.Secret | None:
        """The Secret, or None when it does not exist.

        Raises:
            ApiError: the master could not be asked (Unavailable ...) or refused (Forbidden).
        """
        return await self._get("secrets", namespace, name)  # type: ignore[return-value]

    def forget_namespace(self, namespace: str) -> None:
        """Drops what is kept of one namespace (its last pod left the node)."""
        for key in [k for k in self._entries if k[1] == namespace]:
            del self._entries[key]

    async def _get(self, resource: str, namespace: str, name: str) -> Message | None:
        key = (resource, namespace, name)
        entry = self._entries.get(key)
        if entry is not None and (_immutable(entry.obj) or self._clock() - entry.fetched < self._ttl):
            return entry.obj
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.get_running_loop().create_future()
            self._reading[key] = reading
            try:
                obj = await self._read(resource, namespace, name)
            except BaseException as err:
                reading.set_exception(err)
                reading.exception()  # retrieved: no "never retrieved" warning when nobody else waits
                raise
            finally:
                del self._reading[key]
            self._entries[key] = _Entry(self._clock(), obj)
            reading.set_result(obj)
            return obj
        return await asyncio.shield(reading)

    async def _read(self, resource: str, namespace: str, name: str) -> Message | None:
        try:
            return await self._client.get(resource, name, namespace)
        except errors.NotFound:
            return None


def _immutable(obj: Message | None) -> bool:
    return obj is not None and obj.HasField("immutable") and obj.immutable  # type: ignore[attr-defined]
