"""The status manager (the kubelet's ``status_manager``): pod workers hand it every status they
compute; it keeps the last one per pod uid and pushes a status to the master only when it
changed, from its own task, retrying with back-off. It also tells the master when a pod marked
for deletion has stopped (``terminated``), after that pod's last status. Sync code never talks to
the master.

The cache starts empty, so after an agent restart every pod's status is pushed once, which is
how statuses converge after adoption.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pykubelet.backoff import Backoff
from pymaster.api import errors, objects_pb2
from pymaster.client import Client

log = logging.getLogger(__name__)


def normalized(status: objects_pb2.PodStatus) -> objects_pb2.PodStatus:
    """A copy without the fields that change on every sync but mean nothing (lastProbeTime)."""
    copy = objects_pb2.PodStatus()
    copy.CopyFrom(status)
    for condition in copy.conditions:
        condition.ClearField("last_probe_time")
    return copy


def status_differs(old: objects_pb2.PodStatus | None, new: objects_pb2.PodStatus) -> bool:
    """Whether ``new`` is worth pushing after ``old`` (None: nothing pushed yet)."""
    return old is None or normalized(old) != normalized(new)


@dataclass
class _Pending:
    namespace: str
    name: str
    status: objects_pb2.PodStatus


class StatusManager:
    """Caches pod statuses and pushes the changed ones.

    Args:
        client: the master's client; ``update_pod_status`` is the only call made.
    """

    def __init__(self, client: Client):
        self._client = client
        self._cache: dict[str, objects_pb2.PodStatus] = {}
        self._pending: dict[str, _Pending] = {}
        # uid -> (namespace, name) of pods whose containers are all gone, to confirm to the master.
        self._terminated: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()

    def get(self, uid: str) -> objects_pb2.PodStatus | None:
        """The last status set for the pod (pushed or about to be), or None."""
        return self._cache.get(uid)

    def set_status(self, pod: objects_pb2.Pod, status: objects_pb2.PodStatus) -> bool:
        """Queues ``status`` for the pod if it differs from the last one; returns whether it did."""
        uid = pod.metadata.uid
        if not status_differs(self._cache.get(uid), status):
            return False
        self._cache[uid] = status
        self._pending[uid] = _Pending(pod.metadata.namespace, pod.metadata.name, status)
        self._wake.set()
        return True

    def terminated(self, pod: objects_pb2.Pod) -> None:
        """Queues the confirmation that every container of ``pod`` (marked for deletion) is gone;
        the master then removes it. Sent after any status still pending for it."""
        self._terminated[pod.metadata.uid] = (pod.metadata.namespace, pod.metadata.name)
        self._wake.set()

    def forget(self, uid: str) -> None:
        """Drops a pod that left the node; a status not pushed yet is not pushed (a queued
        termination still is)."""
        self._cache.pop(uid, None)
        self._pending.pop(uid, None)

    def pending(self) -> int:
        """How many statuses and confirmations wait to be pushed."""
        return len(self._pending) + len(self._terminated)

    async def run(self) -> None:
        """Pushes queued statuses, then queued termination confirmations, until cancelled."""
        backoff = Backoff()
        while True:
            await self._wake.wait()
            self._wake.clear()
            failed = False
            for uid in list(self._pending):
                item = self._pending.get(uid)
                if item is None:
                    continue
                if not await self._push(uid, item):
                    failed = True
                    break
            for uid in list(self._terminated):
                if failed:
                    break
                if uid in self._pending:
                    continue  # a status queued meanwhile goes first, at the next round
                if not await self._confirm(uid, *self._terminated[uid]):
                    failed = True
            if failed:
                self._wake.set()
                await backoff.sleep()
            else:
                backoff.reset()

    async def _confirm(self, uid: str, namespace: str, name: str) -> bool:
        """Confirms one terminated pod; False when the master could not take it (retry later)."""
        try:
            await self._client.confirm_pod_terminated(namespace, name, uid)
        except errors.NotFound:
            pass  # already gone from the master
        except errors.ApiError as err:
            log.warning("termination confirmation failed pod=%s/%s uid=%s code=%s error=%s", namespace, name,
                        uid, err.code.name, err.message)
            return False
        log.debug("termination confirmed pod=%s/%s uid=%s", namespace, name, uid)
        self._terminated.pop(uid, None)
        return True

    async def _push(self, uid: str, item: _Pending) -> bool:
        """Pushes one status; False when the master could not take it (retry later)."""
        try:
            await self._client.update_pod_status(item.namespace, item.name, uid, item.status)
        except errors.NotFound:
            # The pod (or this uid of it) is gone from the master: nothing to report to.
            log.info("pod gone, status dropped pod=%s/%s uid=%s", item.namespace, item.name, uid)
        except errors.ValidationError as err:
            # Retrying the same status cannot succeed; the next different status will be tried.
            log.error("status rejected pod=%s/%s uid=%s error=%s", item.namespace, item.name, uid, err)
        except errors.ApiError as err:
            log.warning(
                "status push failed pod=%s/%s uid=%s code=%s error=%s",
                item.namespace, item.name, uid, err.code.name, err.message,
            )
            return False
        else:
            log.debug("status pushed pod=%s/%s uid=%s phase=%s", item.namespace, item.name, uid,
                      item.status.phase)
        # A newer status may have been queued while this push was in flight: keep that one.
        if self._pending.get(uid) is item:
            del self._pending[uid]
        return True
