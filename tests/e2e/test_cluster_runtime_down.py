"""A node whose agent cannot reach its Docker Engine turns NotReady, like a kubelet whose
container runtime is down: a real pymaster and pykubelet, the agent talking to the real engine
through a Unix socket relay the test can cut and restore.

Evidence, in order: the node's Ready condition turns False with the kubelet's reason
(``KubeletNotReady``, "PLEG is not healthy: ...") while the agent keeps reporting; the node
lifecycle controller adds the ``node.kubernetes.io/not-ready`` NoExecute taint (the other node
stays Ready: with every node down the master would taint none); with the engine back, the node
is Ready again and the taint is gone.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymaster.api.conditions import find_condition
from pymaster.api.taints import NO_EXECUTE, NOT_READY

from .harness import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.e2e

DOCKER_SOCKET = "/var/run/docker.sock"


class SocketRelay:
    """Relays connections from a Unix socket to the engine's socket until cut; ``restore`` listens
    again."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Closes the listener and every relayed connection: the agent's next call fails."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.close()
            os.unlink(self.path)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(DOCKER_SOCKET)
            with self._lock:
                self._connections += [client, engine]
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketRelay]:
    relay = SocketRelay(str(Path(tmp_path_factory.mktemp("relay")) / "docker.sock"))
    relay.restore()
    try:
        yield relay
    finally:
        relay.cut()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, relay: SocketRelay) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("runtime-down"),
        # Two nodes: with every node NotReady the master would enter disruption mode and taint none.
        prefixes=("node-d", "node-e"),
        agent_extra_by_prefix={"node-d": ["--docker-host", f"unix://{relay.path}"]},
    ) as c:
        yield c


async def test_a_node_without_its_engine_is_not_ready_until_it_is_back(
    cluster: Cluster, relay: SocketRelay
) -> None:
    name = cluster.a.node_name
    async with cluster.client() as client:

        async def condition(status: str):
            node = await client.get_node(name)
            ready = find_condition(node.status.conditions, "Ready")
            return node if ready is not None and ready.status == status else None

        assert await condition("True")
        relay.cut()
        node = await wait_for(lambda: condition("False"), 30, f"node {name} NotReady")
        ready = find_condition(node.status.conditions, "Ready")
        assert ready.reason == "KubeletNotReady"
        assert ready.message.startswith("PLEG is not healthy: pleg was last seen active ")

        async def tainted(present: bool):
            node = await client.get_node(name)
            has = any(t.key == NOT_READY and t.effect == NO_EXECUTE for t in node.spec.taints)
            return node if has == present else None

        await wait_for(lambda: tainted(True), 30, f"the not-ready NoExecute taint on {name}")
        relay.restore()
        await wait_for(lambda: condition("True"), 30, f"node {name} Ready again")
        await wait_for(lambda: tainted(False), 30, f"the not-ready taint gone from {name}")
