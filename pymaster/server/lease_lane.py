"""The lease lane: node lease renewals (the NodeLease service) served on a port of their own
(``--lease-listen``) by a process of their own (``pymaster.server.lease_lane_child``), so that
load on the API (thousands of creates, watch fan-out, scheduling) never queues a node's heartbeat
behind it, and the renewals of thousands of nodes take the machine's other CPU instead of the
master's: the role of Kubernetes' API Priority and Fairness, whose ``system-node-high`` level
keeps node leases ahead of workload traffic. (On a thread of the master's the renewals held the
GIL the master needs: measured with ``bench/scheduler.py``, 5,000 nodes' renewals took a third of
the master's throughput.)

The lane only answers. It checks renewals against a copy of the registered nodes and the node
identity bindings, which this side keeps current from the store's watches, and this side takes
the renewals it answered on the master's event loop, in batches (``NodeRegistry.take_renewals``),
where the leases, the Ready marks and the lease relay live; with them come the lane's call
metrics. The serving certificate goes to the lane whenever it is renewed. A lane process that
dies is started again on its port; meanwhile its clients renew on the API port.

The API port's RenewLease answers with the lane's port (``lease_port``) and clients move there by
themselves (``pymaster.client``); a client that cannot reach it keeps renewing on the API port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable

from pymaster.api.kinds import IDENTITIES, NODES
from pymaster.metrics import MasterMetrics
from pymaster.registry.nodes import NodeRegistry
from pymaster.server import lease_lane_wire as wire
from pymaster.server.tls import MasterPKI
from pymaster.store.base import DELETED, MODIFIED
from pymaster.store.follow import follow

log = logging.getLogger(__name__)

# How often the serving certificate is checked for renewal (it is renewed at two thirds of its
# lifetime, which is hours at the least).
CREDENTIALS_CHECK_SECONDS = 60.0
# How long the lane process may take to start serving, and to end after STOP (then killed).
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# How long a start keeps trying a port still held (by the lane of this master's previous run).
BIND_RETRY_SECONDS = 5.0
# How long a dead lane process waits to be started again (doubling while it fails to start).
RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
# A lane that served this long before dying starts again after the shortest wait; one that dies
# sooner (a crash loop) keeps the doubled wait instead of restarting every second.
RESTART_RESET_SECONDS = 60.0
# A change that is the whole list again (after the watch fell behind), beside the store's types.
REPLACE = "REPLACE"


class LeaseLane:
    """The lane's process: ``await start()`` starts it and returns the bound port, ``await
    stop()``.

    Args:
        listen: "HOST:PORT" to serve on (port 0 picks one).
        pki: The master's PKI: the serving certificate and the CA.
        nodes: Takes the renewals; its lease grace period caps the periods the lane hands out.
        metrics: Where the lane's calls are counted (``grpc_server_handling_seconds`` of
            RenewLease).
        store: The master's store (``list`` and ``watch`` of nodes and identity bindings).
        options: gRPC server options (the API port's keepalive and size limits).
    """

    def __init__(self, listen: str, pki: MasterPKI, nodes: NodeRegistry, metrics: MasterMetrics, store,
                 options: list[tuple[str, int]]):
        self.listen = listen
        self.port = 0
        self._pki = pki
        self._nodes = nodes
        self._metrics = metrics
        self._store = store
        self._options = options
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> int:
        """Starts the process; returns the port it serves.

        Raises:
            OSError: the address cannot be bound, or the process did not start.
        """
        deadline = time.monotonic() + BIND_RETRY_SECONDS
        while True:
            try:
                nodes_rv, identities_rv, credentials = await self._spawn(self.listen)
                break
            except OSError:
                # The lane of this master's previous run may still be letting go of the port (it
                # ends when it sees its stdin close); a port another program holds stays refused.
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)
        self._tasks = [
            asyncio.create_task(self._supervise(), name="lease-lane"),
            asyncio.create_task(self._follow(NODES.resource, nodes_rv, self._send_nodes),
                                name="lease-lane-nodes"),
            asyncio.create_task(self._follow(IDENTITIES.resource, identities_rv, self._send_identities),
                                name="lease-lane-identities"),
            asyncio.create_task(self._renew_credentials(credentials), name="lease-lane-credentials"),
        ]
        return self.port

    async def _spawn(self, listen: str) -> tuple[int, int, wire.Credentials]:
        """Starts a lane process with what the master knows now; returns the resourceVersions
        of that and the credentials it serves.

        Raises:
            OSError: the address cannot be bound, or the process did not start.
        """
        # Everything awaited comes before the process exists: from then until INIT is written
        # nothing may yield, or a follower's change (``_send``) would reach the new process first.
        credentials = await self._credentials()
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pymaster.server.lease_lane_child",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        nodes, nodes_rv = self._store.list(NODES.resource)
        identities, identities_rv = self._store.list(IDENTITIES.resource)
        init = wire.Init(
            listen=listen,
            options=self._options,
            grace_period=self._nodes.leases.grace_period,
            log_level=logging.getLogger().getEffectiveLevel(),
            credentials=credentials,
            nodes=[n.metadata.name for n in nodes],
            identities=[(i.metadata.name, i.SerializeToString()) for i in identities],
        )
        try:
            process.stdin.write(wire.frame((wire.INIT, init)))
            tag, answer = await asyncio.wait_for(wire.read_frame(process.stdout), START_TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as err:
            await self._end(0.0)
            raise OSError(f"the lease lane process did not start: {err!r}") from err
        if tag == wire.FAILED:
            await self._end(0.0)
            raise OSError(answer)
        self.port = answer
        log.info("lease lane serving address=%s port=%d pid=%d", listen, self.port, process.pid)
        return nodes_rv, identities_rv, init.credentials

    async def _supervise(self) -> None:
        """Takes the renewals; starts the process again (on the same port, which the API port
        names) when it dies, until it stops. Meanwhile its clients renew on the API port."""
        delay = RESTART_MIN_SECONDS
        while True:
            assert self._process is not None and self._process.stdout is not None
            started = time.monotonic()
            await self._take_renewals(self._process.stdout)
            if self._stopping:
                return
            await self._process.wait()
            log.error("lease lane process ended code=%s; renewals go to the API port until it is back",
                      self._process.returncode)
            if time.monotonic() - started >= RESTART_RESET_SECONDS:
                delay = RESTART_MIN_SECONDS
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)
                if self._stopping:
                    return
                try:
                    await self._spawn(f"{self.listen.rpartition(':')[0]}:{self.port}")
                    break
                except OSError as err:
                    log.error("lease lane restart failed error=%s", err)

    async def stop(self, grace: float) -> None:
        """Stops the process (renewals in flight get ``grace`` seconds)."""
        if not self._tasks:  # never started (or stopped already)
            return
        self._stopping = True
        supervisor, *followers = self._tasks
        for task in followers:
            task.cancel()
        await self._end(grace)
        # The supervisor ends with the process's stdout, after the last batch (buffered in the
        # pipe by now); or it was waiting to start a dead process again.
        done, _ = await asyncio.wait([supervisor], timeout=1.0)
        if not done:
            supervisor.cancel()
        await asyncio.gather(supervisor, *followers, return_exceptions=True)
        if self._process.returncode is None:
            await self._end(0.0)  # one the supervisor was starting again when asked to stop
        self._tasks = []
        self._process = None
        self._stopping = False

    async def _end(self, grace: float) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        if not process.stdin.is_closing():
            with contextlib.suppress(OSError):  # already gone
                process.stdin.write(wire.frame((wire.STOP, grace)))
                process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), grace + STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("lease lane process did not stop; killing it pid=%d", process.pid)
            process.kill()
            await process.wait()

    async def _take_renewals(self, stdout: asyncio.StreamReader) -> None:
        """Applies the lane's batches until its stdout ends."""
        while True:
            try:
                _, names, calls, refusals = await wire.read_frame(stdout)
            except asyncio.IncompleteReadError:
                return
            self._nodes.take_renewals(names)
            for call in calls:
                self._metrics.observe_rpc(*call)
            for refusal in refusals:
                self._metrics.observe_refused(*refusal)

    async def _follow(self, kind: str, rv: int, send: Callable[[list, str], None]) -> None:
        """Sends the lane every change of ``kind`` after ``rv``, the whole list again after a gap."""

        def relist() -> int:
            items, relisted_rv = self._store.list(kind)
            send(items, REPLACE)
            return relisted_rv

        await follow(self._store, kind, rv, lambda event: send([event.object], event.type), relist)

    def _send_nodes(self, nodes: list, change: str) -> None:
        if change == MODIFIED:
            return  # a status report or a label: the lane knows only which nodes exist
        names = [n.metadata.name for n in nodes]
        deleted = change == DELETED
        self._send((wire.NODES, [] if deleted else names, names if deleted else [], change == REPLACE))

    def _send_identities(self, identities: list, change: str) -> None:
        deleted = change == DELETED
        changes = [(i.metadata.name, None if deleted else i.SerializeToString()) for i in identities]
        self._send((wire.IDENTITIES, changes, change == REPLACE))

    async def _credentials(self) -> wire.Credentials:
        key_pem, cert_pem = await asyncio.to_thread(self._pki.serving_pair)
        return wire.Credentials(key_pem, cert_pem, self._pki.ca.cert_pem)

    async def _renew_credentials(self, sent: wire.Credentials) -> None:
        while True:
            await asyncio.sleep(CREDENTIALS_CHECK_SECONDS)
            current = await self._credentials()
            if current != sent:
                self._send((wire.CREDENTIALS, current))
                sent = current

    def _send(self, message: tuple) -> None:
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(wire.frame(message))

