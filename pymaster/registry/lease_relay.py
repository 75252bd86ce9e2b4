"""Node lease renewals shared by the masters of one etcd (several masters, ``--store etcd://``).

Node leases live in each master's memory (``pymaster.registry.leases``: no store write per
renewal); with several masters an agent renews on whichever it reaches, while only the leader's
node lifecycle controller judges leases. So every master publishes the renewals it takes to etcd,
one key per node under ``/pykube/nodeleases/<node>`` (value: the publishing master's identity),
at most once per ``min_interval`` per node and in the background; every master watches that
prefix and counts a key written by another master as a renewal of that node (bringing it back
from Ready=Unknown when it was so). The keys are not objects of the API: no resourceVersion, not
in the store's cache, not served. A master that cannot reach etcd keeps renewing locally and
publishes again once it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aetcd
import aetcd.exceptions

log = logging.getLogger(__name__)

PREFIX = b"/pykube/nodeleases/"
RETRY_SECONDS = 1.0


class LeaseRelay:
    """Publishes this master's node lease renewals and applies the other masters'.

    Args:
        client: An etcd client (connected by ``run``).
        identity: This master's identity (its own keys are not applied twice).
        on_peer_renewal: Awaited with a node name when another master took its renewal.
        min_interval: Seconds between two publications of one node's renewals (a fraction of the
            node monitor grace period, so the leader hears of a renewal well within it).
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        client: aetcd.Client,
        identity: str,
        on_peer_renewal: Callable[[str], Awaitable[None]],
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self._identity = identity.encode()
        self._on_peer = on_peer_renewal
        self._min_interval = min_interval
        self._clock = clock
        self._published: dict[str, float] = {}
        self._pending: set[str] = set()
        self._forgotten: set[str] = set()
        self._wake = asyncio.Event()

    def renewed(self, name: str) -> None:
        """A renewal of ``name`` taken here (registration, lease, status report): published soon
        unless published within ``min_interval``."""
        last = self._published.get(name)
        if last is not None and self._clock() - last < self._min_interval:
            return
        self._pending.add(name)
        self._wake.set()

    def forget(self, name: str) -> None:
        """The node was deleted: its key goes."""
        self._published.pop(name, None)
        self._pending.discard(name)
        self._forgotten.add(name)
        self._wake.set()

    async def run(self) -> None:
        """Publishes and follows until cancelled."""
        await self._client.connect()
        try:
            await asyncio.gather(self._publish(), self._follow())
        finally:
            with contextlib.suppress(Exception):
                await self._client.close()

    async def _publish(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            names, self._pending = self._pending, set()
            forgotten, self._forgotten = self._forgotten, set()
            try:
                for name in names:
                    await self._client.put(PREFIX + name.encode(), self._identity)
                    self._published[name] = self._clock()
                    names = names - {name}
                for name in forgotten:
                    await self._client.delete(PREFIX + name.encode())
                    forgotten = forgotten - {name}
            except aetcd.exceptions.ClientError as err:
                log.warning("node lease relay cannot publish error=%s retry_in=%.1fs", err, RETRY_SECONDS)
                self._pending |= names
                self._forgotten |= forgotten
                self._wake.set()
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        while True:
            try:
                watch = await self._client.watch_prefix(PREFIX)
                async for event in watch:
                    if event.kind != "PUT" or event.kv.value == self._identity:
                        continue
                    name = event.kv.key[len(PREFIX):].decode()
                    try:
                        await self._on_peer(name)
                    except Exception:
                        log.exception("node lease relay: applying a renewal failed node=%s", name)
            except aetcd.exceptions.ClientError as err:
                log.warning("node lease relay watch broke error=%s retry_in=%.1fs", err, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
