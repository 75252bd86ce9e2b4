"""Waits until a node reports Ready=True on the master: `python wait_node_ready.py ADDR NODE SECONDS`.
Used by `make up` so the user's first pyctl command finds a Ready node."""

import asyncio
import sys
import time

from pymaster.api import errors
from pymaster.client import Client


async def wait(server: str, node: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    async with Client(server, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                got = await client.get_node(node)
                if any(c.type == "Ready" and c.status == "True" for c in got.status.conditions):
                    return True
            except errors.ApiError:
                pass  # master still starting or the node not registered yet
            await asyncio.sleep(0.5)
    return False


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(wait(sys.argv[1], sys.argv[2], float(sys.argv[3]))) else 1)
