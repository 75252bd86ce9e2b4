"""A one-node cluster for the benchmarks: a real pymaster and pykubelet (mutual TLS, the agent
joined with a token, as in production) in a temporary directory, stopped and cleaned up after."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import Agent, Master, remove_node_containers, unique, wait_nodes_ready  # noqa: E402


@contextlib.asynccontextmanager
async def single_node_cluster() -> AsyncIterator[Master]:
    """Yields the master once its one node is Ready."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        master = Master(workdir).start()
        agent = Agent(workdir, master, unique("bench-node"))
        try:
            await master.wait_serving()
            agent.start()
            await wait_nodes_ready(master, [agent.node_name])
            yield master
        finally:
            agent.stop()
            master.stop()
            remove_node_containers(agent.node_name)
