"""The base of the workload controllers (ReplicaSet, Deployment, DaemonSet, Job, garbage
collector): informers feed a work queue of keys, workers call ``sync(key)``.

A subclass sets ``name``, makes its informers with ``self.informer(resource, indexers)`` in its
``__init__``, adds handlers that only ``enqueue`` keys, and implements ``async sync(key)``:
level-triggered, it reads the informers and makes the world match, whatever event woke it.

    class ReplicaSetController(Controller):
        name = "replicaset"

        def __init__(self, registry, informers=None, metrics=None):
            super().__init__(informers=informers, metrics=metrics)
            self.sets = self.informer("replicasets")
            self.pods = self.informer("pods", {"controller": by_controller_uid})
            self.sets.add_handler(lambda old, new: self.enqueue(new or old))
            ...

        async def sync(self, key): ...

Errors never kill a worker: a sync that raises is retried with the queue's per-key back-off
(5 ms doubling up to 1000 s) and logged with its key; Conflict, NotFound and AlreadyExists are
the normal races of a controller against other writers (its cache was a step behind), so they are
logged at info, not as errors. A sync that returns resets the key's back-off.

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import Message

from pymaster.api.errors import AlreadyExists, Conflict, NotFound
from pymaster.controllers.informer import IndexFunc, Informer, InformerFactory, object_key
from pymaster.controllers.workqueue import ShutDown, WorkQueue, WorkQueueMetrics
from pymaster.store.base import Store

log = logging.getLogger(__name__)

# Errors that mean "the cache was behind another writer": retried quietly.
RACES = (Conflict, NotFound, AlreadyExists)


class Controller:
    """Informers + a rate-limited work queue + ``workers`` tasks calling ``sync``.

    Args:
        store: The store private informers follow (unused when ``informers`` is given).
        informers: A shared InformerFactory; its informers are started here if not running, and
            stopped by its owner, not by this controller.
        metrics: The master's workqueue metrics (the queue is labelled with ``name``).
        workers: How many keys are synced concurrently (never the same key twice at once).
    """

    name = "controller"
    workers = 1

    def __init__(
        self,
        store: Store | None = None,
        informers: InformerFactory | None = None,
        metrics: WorkQueueMetrics | None = None,
        workers: int | None = None,
    ):
        self._store = store
        self._factory = informers
        if workers is not None:
            self.workers = workers
        self.queue = WorkQueue(self.name, metrics)
        self._informers: list[Informer] = []
        self._owned: list[Informer] = []  # private informers, stopped with the controller
        self._tasks: list[asyncio.Task] = []

    def informer(self, resource: str, indexers: dict[str, IndexFunc] | None = None) -> Informer:
        """The informer of ``resource`` this controller reads (the shared one when the controller
        has a factory, else a private one), with ``indexers`` added."""
        if self._factory is not None:
            informer = self._factory.informer(resource, indexers)
        elif self._store is None:
            raise ValueError(f"{self.name} controller: an informer needs a store or an informer factory")
        else:
            informer = Informer(self._store, resource, indexers)
            self._owned.append(informer)
        if informer not in self._informers:
            self._informers.append(informer)
        return informer

    def enqueue(self, obj_or_key: Message | str) -> None:
        """Queues an object's key (or a key) for ``sync``."""
        self.queue.add(obj_or_key if isinstance(obj_or_key, str) else object_key(obj_or_key))

    def run_after(self, obj_or_key: Message | str, seconds: float) -> None:
        """Queues an object's key (or a key) for ``sync`` in ``seconds`` (a deadline to check)."""
        key = obj_or_key if isinstance(obj_or_key, str) else object_key(obj_or_key)
        self.queue.add_after(key, seconds)

    async def sync(self, key: str) -> None:
        """Makes the object of ``key`` ("namespace/name") and the world match. Raise to be retried
        with back-off; return when done (the key's back-off is reset)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Starts the informers, waits until all have listed, then starts the workers."""
        for informer in self._informers:
            informer.start()
        await asyncio.gather(*(informer.has_synced.wait() for informer in self._informers))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self.workers)
        ]
        log.info("controller started name=%s workers=%d informers=%s", self.name, self.workers,
                 ",".join(informer.resource for informer in self._informers))

    async def stop(self) -> None:
        """Shuts the queue down, cancels the workers and stops the private informers."""
        self.queue.shut_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await asyncio.gather(*(informer.stop() for informer in self._owned))

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except RACES as err:
                log.info("controller sync raced, retrying name=%s key=%s error=%s: %s", self.name, key,
                         type(err).__name__, err)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("controller sync failed, retrying name=%s key=%s requeues=%d", self.name,
                              key, self.queue.num_requeues(key))
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)
