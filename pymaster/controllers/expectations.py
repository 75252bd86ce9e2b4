"""Expectations: what a controller has asked for and not seen in its informer yet (client-go's
``ControllerExpectations`` and ``UIDTrackingControllerExpectations``, pkg/controller).

A ReplicaSet controller that creates 3 pods would, on its next sync, still count the old pods
(the informer has not seen the creations yet) and create 3 more. So before writing it records
``expect(key, adds=3)``; the pod informer's handler calls ``creation_observed(key)`` per new pod
it sees, and the sync does nothing but wait while ``satisfied(key)`` is false. A create that
failed never shows in the informer: ``lower(key, adds=1)`` takes it back.

A record older than ``ttl`` (5 minutes, client-go's ExpectationsTimeout) counts as satisfied, so
a lost event delays a controller by at most that long instead of blocking it forever.

Deletions can be tracked by uid (``expect_deletions(key, uids)``): a pod seen deleted twice (a
watch event, then the relist's diff) or a deletion the controller did not ask for counts once or
not at all, never twice.

Must be used from one asyncio event loop thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Record:
    adds: int
    deletes: int
    timestamp: float
    uids: set[str] | None = field(default=None)  # deletions tracked by uid, if expect_deletions set them


class Expectations:
    """Expected creations and deletions per controller key ("namespace/name" of the owner).

    Args:
        ttl: Seconds after which a record counts as satisfied whatever its counts.
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(self, ttl: float = EXPECTATIONS_TIMEOUT, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def expect(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        """Sets (replaces) the expectations of ``key``: ``adds`` creations and ``deletes``
        deletions from now on, with a fresh timestamp."""
        self._records[key] = _Record(adds, deletes, self._clock())

    def expect_deletions(self, key: str, uids: Iterable[str]) -> None:
        """Sets the expectations of ``key`` to the deletion of exactly these objects (by uid) and no
        creations; ``deletion_observed(key, uid)`` then counts each of them once."""
        tracked = set(uids)
        self._records[key] = _Record(0, len(tracked), self._clock(), tracked)

    def creation_observed(self, key: str) -> None:
        """One expected creation was seen."""
        self.lower(key, adds=1)

    def deletion_observed(self, key: str, uid: str | None = None) -> None:
        """One expected deletion was seen. With ``uid``, when the record tracks uids
        (``expect_deletions``), only the first sighting of a tracked uid counts."""
        record = self._records.get(key)
        if record is None:
            return
        if uid is not None and record.uids is not None:
            if uid not in record.uids:
                return
            record.uids.discard(uid)
        record.deletes -= 1

    def lower(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        """Takes back expectations (a create or delete that failed and so will never be seen)."""
        record = self._records.get(key)
        if record is None:
            return
        record.adds -= adds
        record.deletes -= deletes

    def satisfied(self, key: str) -> bool:
        """Whether the controller may act on ``key``: no record (never expected anything, or
        deleted), every expectation seen (counts <= 0), or the record outlived the ttl."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.adds <= 0 and record.deletes <= 0:
            return True
        age = self._clock() - record.timestamp
        if age > self.ttl:
            log.info("expectations expired key=%s adds=%d deletes=%d age=%.0fs", key, record.adds,
                     record.deletes, age)
            return True
        return False

    def pending(self, key: str) -> tuple[int, int] | None:
        """The (adds, deletes) still expected for ``key``, or None without a record (for logs)."""
        record = self._records.get(key)
        return None if record is None else (record.adds, record.deletes)

    def delete(self, key: str) -> None:
        """Forgets ``key`` (its owner is gone)."""
        self._records.pop(key, None)
