"""The agent's view of the cluster objects its node-level networking follows: every Service,
EndpointSlice and Node, kept by a list then a watch of each kind from the master (the node
authorizer lets a node read these three, as kube-proxy and the kubelet read them).

``ClusterView.kinds[resource]`` is a ``WatchedKind``: the objects by (namespace, name), a
``synced`` event set after the first list, and listeners called with the resource name after
every change (the proxy, the DNS server and the pod network's routes only mark themselves dirty
there and resync on their own schedule). A watch that ends or fails (master restart, TooOld) is
followed by a fresh list, with capped jittered back-off; the listeners then see one change for
the whole relist. Objects are the client's messages: read-only for everyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf.message import Message

from pykubelet.backoff import Backoff
from pymaster.api import errors, services_pb2
from pymaster.api.kinds import ENDPOINT_SLICES, NODES, SERVICES
from pymaster.client import Client

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Listener = Callable[[str], None]


class WatchedKind:
    """The objects of one kind, kept from the master.

    Args:
        client: The agent's client.
        resource: "services", "endpointslices" or "nodes".
    """

    def __init__(self, client: Client, resource: str):
        self._client = client
        self.resource = resource
        self.objects: dict[Key, Message] = {}
        self.synced = asyncio.Event()
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """``listener(resource)`` after every change (must be cheap: mark dirty, wake a task)."""
        self._listeners.append(listener)

    def get(self, namespace: str, name: str) -> Message | None:
        return self.objects.get((namespace, name))

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener(self.resource)
            except Exception:
                log.exception("cluster view listener failed resource=%s", self.resource)

    async def run(self) -> None:
        """Lists, then watches, forever (until cancelled)."""
        backoff = Backoff()
        while True:
            try:
                listed = await self._client.list(self.resource)
                self.objects = {(o.metadata.namespace, o.metadata.name): o for o in listed.items}
                self.synced.set()
                self._changed()
                backoff.reset()
                rv = listed.resource_version
                async for event in self._client.watch(self.resource, resource_version=rv):
                    key = (event.object.metadata.namespace, event.object.metadata.name)
                    if event.type == services_pb2.DELETED:
                        self.objects.pop(key, None)
                    elif event.type in (services_pb2.ADDED, services_pb2.MODIFIED):
                        self.objects[key] = event.object
                    else:
                        continue
                    self._changed()
            except errors.ApiError as err:
                reason = err.code.name
            else:
                reason = "watch ended"
            delay = backoff.next_delay()
            log.info("cluster view relists resource=%s reason=%s retry_in=%.2fs", self.resource, reason,
                     delay)
            await asyncio.sleep(delay)


class ClusterView:
    """Services, EndpointSlices and Nodes as the master has them."""

    def __init__(self, client: Client):
        self.kinds = {r: WatchedKind(client, r) for r in (SERVICES.resource, ENDPOINT_SLICES.resource,
                                                          NODES.resource)}

    @property
    def services(self) -> WatchedKind:
        return self.kinds[SERVICES.resource]

    @property
    def endpoint_slices(self) -> WatchedKind:
        return self.kinds[ENDPOINT_SLICES.resource]

    @property
    def nodes(self) -> WatchedKind:
        return self.kinds[NODES.resource]

    def add_listener(self, listener: Listener) -> None:
        for kind in self.kinds.values():
            kind.add_listener(listener)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(kind.synced.wait() for kind in self.kinds.values()))

    async def run(self) -> None:
        """Follows the three kinds until cancelled."""
        await asyncio.gather(*(kind.run() for kind in self.kinds.values()))
