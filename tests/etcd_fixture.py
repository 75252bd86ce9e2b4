"""Real etcd for tests and benchmarks: one or more members of Debian's ``etcd-server`` (3.4) on
loopback with free ports, data in a temporary directory, stopped (and their data removed) at the
end. Used by the store contract suite, the etcd e2e tests and bench/store.py.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ETCD = "/usr/bin/etcd"
START_TIMEOUT = 30.0


def etcd_available() -> bool:
    """Whether the etcd binary is installed (``make test`` installs ``etcd-server``)."""
    return shutil.which(ETCD) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EtcdMember:
    """One member process: its name, client and peer ports, data dir."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as reply:
                return b'"true"' in reply.read()
        except OSError:
            return False

    def kill(self) -> None:
        """Stops the member (SIGKILL) and waits for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class EtcdCluster:
    """Running members; ``url`` is the store URL naming all of them."""

    members: list[EtcdMember] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    def start_member(self, member: EtcdMember, initial_cluster: str, state: str = "new") -> None:
        """Starts (or restarts, on its data dir) one member."""
        peer = f"http://127.0.0.1:{member.peer_port}"
        client = f"http://{member.endpoint}"
        log = open(member.data_dir.parent / f"{member.name}.log", "ab")  # noqa: SIM115 (the child's)
        member.process = subprocess.Popen(
            [ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", "pykube-test", "--logger", "zap", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in self.members if m.process and m.process.poll() is None):
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd members not healthy within {timeout} s")
            for m in self.members:
                if m.process is not None and m.process.poll() is not None:
                    log = (m.data_dir.parent / f"{m.name}.log").read_text(errors="replace")
                    raise RuntimeError(f"etcd {m.name} exited: {log[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        for member in self.members:
            member.kill()


@contextlib.contextmanager
def running_etcd(members: int = 1, workdir: Path | None = None) -> Iterator[EtcdCluster]:
    """Starts ``members`` etcd members on loopback, yields them once healthy, stops them after."""
    tmp = Path(tempfile.mkdtemp(prefix="pykube-etcd-", dir=workdir))
    cluster = EtcdCluster([
        EtcdMember(f"m{i}", free_port(), free_port(), tmp / f"m{i}.etcd") for i in range(members)
    ])
    initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in cluster.members)
    try:
        for member in cluster.members:
            cluster.start_member(member, initial)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
