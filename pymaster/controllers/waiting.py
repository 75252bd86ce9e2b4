"""How the controllers sleep: until an ``asyncio.Event`` is set or a timeout passes.

``asyncio.wait_for`` on Python 3.11 can swallow a cancellation that arrives as the event is set
(the task then sleeps on, and ``stop()`` hangs); ``asyncio.timeout`` does not.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Returns when ``event`` is set or after ``timeout`` seconds (None: no timeout)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
