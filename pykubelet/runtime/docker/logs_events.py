"""The long-lived streams of the Docker runtime: a container's logs (possibly followed for hours)
and the engine's container events of one node. Each reads in a thread of its own through the
stream pump (``streams.py``); closing the consumer's generator closes the engine stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from pykubelet.runtime import labels
from pykubelet.runtime.base import ContainerRuntimeError
from pykubelet.runtime.docker.engine import DOCKER_ERRORS, Engine, translate
from pykubelet.runtime.docker.streams import Pump, Streams

log = logging.getLogger(__name__)

# Container events that can change what a pod sync decides. "create" is left out: the agent
# creates containers itself, and a container whose start failed emits only "create", which would
# wake its own pod for nothing (its restart waits for the crash-loop back-off, sync.restart_backoff).
EVENT_ACTIONS = ("start", "die", "destroy", "oom", "pause", "unpause")

_EVENTS_MAX_BACKOFF = 30.0


def logs(
    engine: Engine,
    streams: Streams,
    container_id: str,
    follow: bool,
    tail_lines: int | None,
    timestamps: bool,
) -> AsyncIterator[bytes]:
    """Streams a container's stdout/stderr as raw chunks (not split in lines).

    Use it with ``contextlib.aclosing`` (or let its task be cancelled): closing the generator
    closes the engine's stream and ends the reading thread.

    Raises:
        ContainerNotFound: no such container.
    """

    def body(pump: Pump) -> None:
        stream = engine.call(
            "logs",
            lambda api: api.logs(
                container_id,
                stream=True,
                follow=follow,
                tail=tail_lines if tail_lines is not None else "all",
                timestamps=timestamps,
            ),
        )
        if not pump.attach(stream):
            return
        try:
            for chunk in stream:
                if not pump.put(chunk):
                    return
        except DOCKER_ERRORS as err:
            raise translate(err, ContainerRuntimeError) from err

    return streams.open(f"docker-logs-{container_id[:12]}", body, maxsize=64)


def events(engine: Engine, streams: Streams, node_name: str) -> AsyncIterator[str]:
    """Streams the pod uid of every lifecycle event (``EVENT_ACTIONS``) of this node's
    containers. Reconnects with back-off (replaying from the last event's second) when the
    engine goes away, until the generator is closed or the runtime is."""
    filters = {
        "type": "container",
        "label": f"{labels.NODE_NAME}={node_name}",
        "event": list(EVENT_ACTIONS),
    }

    def body(pump: Pump) -> None:
        since: int | None = None
        delay = 0.5
        while not pump.stopped.is_set():
            started = time.monotonic()
            try:
                stream = engine.api().events(since=since, filters=filters, decode=True)
                engine.record("events", started, False)
                if not pump.attach(stream):
                    return
                delay = 0.5
                for event in stream:
                    since = event.get("time", since)
                    uid = (event.get("Actor") or {}).get("Attributes", {}).get(labels.POD_UID)
                    if uid and not pump.put(uid):
                        return
                reason = "stream ended"
            except Exception as err:  # the engine went away or answered garbage: reconnect
                engine.record("events", started, True)
                reason = str(err)
            if pump.stopped.wait(delay):
                return
            log.warning("docker events reconnecting node=%s reason=%s", node_name, reason)
            delay = min(delay * 2, _EVENTS_MAX_BACKOFF)

    return streams.open(f"docker-events-{node_name}", body, maxsize=1024)
