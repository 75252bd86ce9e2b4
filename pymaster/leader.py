"""Leader election of several pymaster replicas on an etcd lease (``pymaster --leader-elect``).

Every replica serves the API and watches; the scheduler and the controllers run on the one that
holds the lease key ``/registry/leases/kube-system/pymaster``, like client-go's leaderelection
(kube-scheduler, kube-controller-manager) with its three durations:

- lease duration (15 s): the TTL of the etcd lease the key is bound to. A candidate acquires in
  one transaction (the key's create_revision is 0, i.e. nobody holds it: put the identity bound
  to a fresh lease), so two candidates can never both win.
- retry period (2 s): the holder sends a keep-alive every retry period; a candidate that lost
  watches the key and tries again when it is deleted (the holder's lease expired or was revoked),
  and at least every retry period in case the watch itself broke.
- renew deadline (10 s): a holder whose keep-alives all failed for that long (counted from the
  moment the last successful keep-alive was SENT, so never later than etcd's own clock) stops
  leading at once. The renew deadline is shorter than the lease duration, so the old leader has
  stopped its scheduler before the lease can expire and anyone else can acquire it: never two
  schedulers binding at once.

The identity is the host name, "_" and a random suffix (client-go's style), so a restarted master
never mistakes the previous incarnation's lease for its own. On ``stop`` a leader stops leading,
then revokes its lease so another replica takes over at once (client-go's ReleaseOnCancel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aetcd
import aetcd.exceptions

log = logging.getLogger(__name__)

LEASE_NAME = "pymaster"
LEASE_KEY = b"/registry/leases/kube-system/" + LEASE_NAME.encode()
# client-go's JitterFactor: the renew deadline must leave room for a jittered retry.
JITTER_FACTOR = 1.2
# A failing etcd call never blocks the loop longer than this (a candidate's view; the leader's
# renewals are bounded by what is left of its renew deadline).
CALL_TIMEOUT_SECONDS = 5.0

Callback = Callable[[], Awaitable[None]]
ClientFactory = Callable[[str, int], aetcd.Client]


@dataclass(frozen=True)
class LeaderElectionConfig:
    """client-go's durations, in seconds (kube-controller-manager's defaults)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> None:
        """Raises ValueError with client-go's wording when the durations cannot be safe."""
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(
                "--leader-elect-renew-deadline must be greater than "
                f"--leader-elect-retry-period*{JITTER_FACTOR}"
            )
        if self.retry_period <= 0:
            raise ValueError("--leader-elect-retry-period must be greater than zero")


def default_identity() -> str:
    """The host name, "_" and a random UUID (client-go's identity for a leader elector)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Campaigns for the lease until stopped; runs ``on_started_leading`` when it wins and
    ``on_stopped_leading`` when it loses (or is stopped while leading).

    Args:
        endpoints: etcd members, tried in turn when one fails.
        config: The three durations.
        on_started_leading: Starts what only the leader runs.
        on_stopped_leading: Stops it; called at once when renewals failed for the renew deadline.
        identity: This candidate's name in the lease key (``default_identity()`` when empty).
        on_change: Called with (identity, leading) whenever leadership changes (metrics).
        client_factory: Makes an etcd client for (host, port) (TLS to etcd lives there);
            default: a plaintext ``aetcd.Client``.
    """

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        config: LeaderElectionConfig,
        on_started_leading: Callback,
        on_stopped_leading: Callback,
        *,
        identity: str = "",
        on_change: Callable[[str, bool], None] | None = None,
        client_factory: ClientFactory | None = None,
    ):
        config.check()
        self.endpoints = list(endpoints)
        self.config = config
        self.identity = identity or default_identity()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_change = on_change
        self._factory = client_factory or (lambda host, port: aetcd.Client(host, port))
        self._endpoint = 0
        self._client: aetcd.Client | None = None
        self._lease_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    @property
    def ttl(self) -> int:
        """The etcd lease TTL: the lease duration, whole seconds (etcd's unit) rounded up."""
        return math.ceil(self.config.lease_duration)

    def start(self) -> None:
        """Starts campaigning in a task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stops campaigning; a leader stops leading first, then releases the lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._step_down("stopped")
        await self._release()
        await self._close_client()

    async def leader(self) -> str:
        """The identity in the lease key now ("" when nobody leads)."""
        found = await asyncio.wait_for((await self._connected()).get(LEASE_KEY), CALL_TIMEOUT_SECONDS)
        return found.value.decode() if found is not None else ""

    # ---- the campaign ----

    async def _run(self) -> None:
        while True:
            try:
                revision = await self._try_acquire()
                if revision is None:
                    await self._lead()
                    continue
                await self._wait_for_release(revision)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("leader election: etcd call failed endpoint=%s error=%r",
                            self._current_endpoint(), str(err) or type(err).__name__)
                await self._next_endpoint()
                await asyncio.sleep(self.config.retry_period)

    async def _try_acquire(self) -> int | None:
        """One attempt: None when this candidate now holds the key, else the revision it saw."""
        client = await self._connected()
        lease = await asyncio.wait_for(client.lease(self.ttl), CALL_TIMEOUT_SECONDS)
        txn = client.transactions
        try:
            won, responses = await asyncio.wait_for(
                client.transaction(
                    compare=[txn.create(LEASE_KEY) == 0],
                    success=[txn.put(LEASE_KEY, self.identity.encode(), lease=lease.id)],
                    failure=[txn.get(LEASE_KEY)],
                ),
                CALL_TIMEOUT_SECONDS,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.revoke_lease(lease.id), CALL_TIMEOUT_SECONDS)
            raise
        if won:
            self._lease_id = lease.id
            return None
        await asyncio.wait_for(client.revoke_lease(lease.id), CALL_TIMEOUT_SECONDS)
        holder = responses[0][0][0].decode() if responses and responses[0] else ""
        revision = responses[0][0][1].mod_revision if responses and responses[0] else 0
        log.debug("leader election: lease held identity=%s holder=%s", self.identity, holder)
        return revision

    async def _wait_for_release(self, revision: int) -> None:
        """Returns when the key is deleted after ``revision``, or after a retry period anyway."""
        client = await self._connected()
        watch = await asyncio.wait_for(client.watch(LEASE_KEY, start_revision=revision + 1),
                                       CALL_TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(self.config.retry_period):
                async for event in watch:
                    if event.kind == "DELETE":
                        return
        except TimeoutError:
            return
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), CALL_TIMEOUT_SECONDS)

    async def _lead(self) -> None:
        """Leads until renewals fail for the renew deadline (or the task is cancelled)."""
        log.info("leader election: became leader identity=%s lease=%s", self.identity, LEASE_NAME)
        self.leading = True
        self._changed()
        last_renewed = time.monotonic()
        reason = "stopped"
        try:
            await self._on_started()
            while True:
                # Never sleep past the renew deadline: stepping down then is what makes it safe.
                until_deadline = self.config.renew_deadline - (time.monotonic() - last_renewed)
                await asyncio.sleep(max(0.0, min(self.config.retry_period, until_deadline)))
                sent = time.monotonic()
                left = self.config.renew_deadline - (sent - last_renewed)
                if left > 0 and await self._renew(left):
                    last_renewed = sent
                elif self._lease_id is None:
                    reason = "lease lost"
                    break
                elif time.monotonic() - last_renewed >= self.config.renew_deadline:
                    reason = "not renewed within the renew deadline"
                    break
        finally:
            await self._step_down(reason)
        # Not renewed in time: give the lease back if etcd can still be reached, so nobody waits
        # for its TTL.
        await self._release()

    async def _release(self) -> None:
        """Revokes the lease this candidate held, if any (best effort: it expires anyway)."""
        lease_id, self._lease_id = self._lease_id, None
        if lease_id is not None and self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.revoke_lease(lease_id), CALL_TIMEOUT_SECONDS)

    async def _renew(self, timeout: float) -> bool:
        """One keep-alive, bounded by ``timeout``; True when etcd extended the lease."""
        if self._lease_id is None:
            return False
        try:
            reply = await asyncio.wait_for((await self._connected()).refresh_lease(self._lease_id), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("leader election: renewal failed identity=%s error=%r", self.identity,
                        str(err) or type(err).__name__)
            await self._next_endpoint()
            return False
        if reply is None or reply.TTL <= 0:
            # The lease is gone (expired or revoked): the key went with it; renewing is pointless.
            self._lease_id = None
            return False
        return True

    async def _step_down(self, reason: str) -> None:
        if not self.leading:
            return
        self.leading = False
        log.warning("leader election: stopped leading identity=%s reason=%s", self.identity, reason)
        try:
            await self._on_stopped()
        finally:
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.identity, self.leading)

    # ---- etcd connection ----

    def _current_endpoint(self) -> str:
        host, port = self.endpoints[self._endpoint]
        return f"{host}:{port}"

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, port = self.endpoints[self._endpoint]
            client = self._factory(host, port)
            await asyncio.wait_for(client.connect(), CALL_TIMEOUT_SECONDS)
            self._client = client
        return self._client

    async def _next_endpoint(self) -> None:
        """Drops the connection and moves to the next member (the same one when there is one)."""
        await self._close_client()
        self._endpoint = (self._endpoint + 1) % len(self.endpoints)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), CALL_TIMEOUT_SECONDS)
