"""Starts real pykube processes for end-to-end tests, the way a user would: `pymaster`,
`pykubelet` and `pyctl` from the virtualenv, on 127.0.0.1 with free ports and temp dirs.

Every process is killed and every container labelled with a test node's name is removed when
the test (or module) that started it finishes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import docker

from pymaster.client import Client

BIN = Path(sys.executable).parent
BUSYBOX = "pykube/busybox:1.35"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def wait_for(check: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition") -> T:
    """Polls ``check`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 (a check may fail until the state converges)
            last_error = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


class Process:
    """One daemon started from the venv's console script, with its log in a file."""

    def __init__(self, name: str, args: list[str], log_path: Path):
        self.name, self.args, self.log_path = name, args, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen([str(BIN / self.name), *self.args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Master(Process):
    def __init__(self, workdir: Path):
        self.port, self.metrics_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.data_dir = workdir / "master"
        super().__init__(
            "pymaster",
            ["--data-dir", str(self.data_dir), "--listen", self.address,
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}"],
            workdir / "pymaster.log",
        )

    async def wait_serving(self, timeout: float = 30.0) -> None:
        async def serving() -> bool:
            assert self.proc and self.proc.poll() is None, f"pymaster exited:\n{self.log()}"
            async with Client(self.address, timeout=1.0) as client:
                await client.list_nodes()
            return True

        await wait_for(serving, timeout, "pymaster to serve")


class Agent(Process):
    def __init__(self, workdir: Path, master: Master, node_name: str, extra: list[str] | None = None):
        self.node_name = node_name
        self.port, self.metrics_port = free_port(), free_port()
        root = workdir / node_name
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "pykubelet",
            ["--server", master.address, "--node-name", node_name, "--root-dir", str(root),
             "--listen", f"127.0.0.1:{self.port}", "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
             "--status-interval", "1", "--lease-interval", "1", *(extra or [])],
            workdir / f"pykubelet-{node_name}.log",
        )


def remove_node_containers(node_name: str) -> None:
    """Removes every container an agent of ``node_name`` created (the suite leaves none behind)."""
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"pykube.node.name={node_name}"}):
            container.remove(force=True)
    finally:
        client.close()


def node_containers(node_name: str, pod_uid: str | None = None) -> list:
    """The Docker containers of a test node (optionally of one pod), as docker-py objects."""
    labels = [f"pykube.node.name={node_name}"] + ([f"pykube.pod.uid={pod_uid}"] if pod_uid else [])
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": labels})
    finally:
        client.close()


def pyctl(
    server: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs the real pyctl and returns its completed process (text mode)."""
    env = {**os.environ, "PYKUBE_SERVER": server}
    return subprocess.run(
        [str(BIN / "pyctl"), *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env
    )


def http_get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()
