"""The thread-to-async stream pump of the Docker runtime: a blocking reader (a followed log, the
event stream, an exec's output) runs in a daemon thread of its own and hands what it reads to an
async consumer through a bounded queue.

A dedicated thread, not the engine's pool: a followed log may stay open for hours and must not
hold one of the pool's few workers. Closing the consumer's generator closes the engine stream
(which wakes a blocked read) and so ends the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

_END = object()  # the reader is done


class Pump:
    """Hands the items a blocking reader produces in its own thread to an async consumer,
    through a bounded queue (a slow consumer blocks the reader, not the event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int):
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def attach(self, stream: Any) -> bool:
        """Registers the engine stream (anything with ``close()``) that ``stop`` must close;
        False (and the stream closed) if already stopped."""
        with self._lock:
            if not self.stopped.is_set():
                self._stream = stream
                return True
        close_stream(stream)
        return False

    def put(self, item: Any) -> bool:
        """Called by the reader thread: blocks while the queue is full; False once stopped."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                future.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                if self.stopped.is_set():
                    future.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False

    def stop(self) -> None:
        """Makes the reader return (closing its stream wakes a blocked read) and the consumer
        end: what was not consumed yet is dropped."""
        with self._lock:
            self.stopped.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            close_stream(stream)
        with contextlib.suppress(RuntimeError):  # the loop is closed: no consumer left
            self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_END)

    async def get(self) -> Any:
        """The next item, for the consumer."""
        return await self._queue.get()

    def read(self, body: Callable[[Pump], None]) -> None:
        """The reader thread: runs ``body``, then hands over its exception or the end marker."""
        try:
            body(self)
        except Exception as err:
            if not self.stopped.is_set():
                self.put(err)
        finally:
            if not self.stopped.is_set():
                self.put(_END)


class Streams:
    """The open pumps of one runtime, so closing the runtime ends every reader thread."""

    def __init__(self) -> None:
        self._pumps: set[Pump] = set()

    async def open(self, name: str, body: Callable[[Pump], None], maxsize: int) -> AsyncIterator[Any]:
        """Runs ``body(pump)`` in a new daemon thread called ``name`` and yields what it puts; an
        exception it raises is raised here. Closing the generator stops the thread (closes its
        stream)."""
        pump = Pump(asyncio.get_running_loop(), maxsize)
        self._pumps.add(pump)
        threading.Thread(target=pump.read, args=(body,), name=name, daemon=True).start()
        try:
            while True:
                item = await pump.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            pump.stop()
            self._pumps.discard(pump)

    def stop_all(self) -> None:
        """Stops every open pump: their readers return, their consumers end."""
        for pump in list(self._pumps):
            pump.stop()


def close_stream(stream: Any) -> None:
    """Closes an engine stream, ignoring one that is already closed."""
    try:
        stream.close()
    except Exception as err:  # already closed, or the socket is gone: nothing left to stop
        log.debug("closing docker stream failed error=%s", err)
