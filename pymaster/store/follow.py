"""Following one kind of the store, the loop the master's in-process watchers share: every write
after a resourceVersion, in order; after a gap (TooOld: the watcher fell behind, or the event log
no longer reaches back) a relist and on from its resourceVersion; until the store closes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pymaster.api.errors import TooOld
from pymaster.store.base import Store, WatchEvent

log = logging.getLogger(__name__)


async def follow(store: Store, kind: str, rv: int, apply: Callable[[WatchEvent], None],
                 relist: Callable[[], int]) -> None:
    """Calls ``apply`` with every write of ``kind`` after ``rv``; ``relist`` takes the whole
    state again after a gap and returns its resourceVersion. Returns when the store closes."""
    while True:
        try:
            watch = store.watch(kind, rv)
            try:
                async for event in watch:
                    apply(event)
                    rv = event.resource_version
            finally:
                watch.close()
            return
        except TooOld as err:
            log.info("relisting kind=%s reason=%s", kind, err.message)
            rv = relist()
