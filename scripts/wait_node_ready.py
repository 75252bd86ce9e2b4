"""Waits until a node reports Ready=True on the master:
`python wait_node_ready.py ADDR NODE SECONDS CONFIG` (CONFIG: a client config, e.g. the master's
admin.yaml). Used by `make up` so the user's first pyctl command finds a Ready node."""

import asyncio
import sys
import time

from pymaster.api import errors
from pymaster.client import Client


async def wait(server: str, node: str, seconds: float, config_path: str) -> bool:
    deadline = time.monotonic() + seconds
    async with Client(server, timeout=2.0, config_path=config_path) as client:
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
    address, node_name, timeout, config = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    sys.exit(0 if asyncio.run(wait(address, node_name, timeout, config)) else 1)
