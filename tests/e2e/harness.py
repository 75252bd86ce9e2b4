"""Starts real pykube processes for end-to-end tests, the way a user would: `pymaster`,
`pykubelet` and `pyctl` from the virtualenv, on 127.0.0.1 with free ports and temp dirs.

Everything speaks mutual TLS, as in production: the master writes its CA, ``admin.yaml`` and join
token into its data dir on first start; test clients and pyctl use that admin config (never the
user's ~/.pykube/config); agents join with the token over the master's plaintext join port.

Every process is killed, and every container and Docker network labelled with a test node's name
is removed, when the test (or module) that started it finishes; a cluster's agents' host rules
(the node proxy's and the pod network's iptables chains) go with ``pykubelet --cleanup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
from prometheus_client.parser import text_string_to_metric_families

from pykubelet.proxy.rules import BASE_JUMPS
from pymaster.api import errors, objects_pb2
from pymaster.api.clientconfig import ClientConfig, load_config
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


async def wait_for(
    check: Callable[[], Awaitable[T] | T],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.2,
) -> T:
    """Polls ``check`` (a coroutine function or a plain one) every ``interval`` seconds until it
    returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 (a check may fail until the state converges)
            last_error = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


class Process:
    """One daemon started from the venv's console script, with its log in a file."""

    def __init__(self, name: str, args: list[str], log_path: Path):
        self.name, self.args, self.log_path = name, args, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The command-line arguments, computed when the process starts."""
        return list(self.args)

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen(
            [str(BIN / self.name), *self.argv()], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def exited(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.proc.poll() if self.proc else None

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
    """``pymaster`` on free ports: ``address`` (mutual TLS), ``join_port`` (plaintext Bootstrap),
    ``lease_port`` (the lease lane, mutual TLS; the same across restarts)."""

    def __init__(self, workdir: Path, extra: list[str] | None = None):
        self.port, self.join_port, self.metrics_port = free_port(), free_port(), free_port()
        self.lease_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.join_address = f"127.0.0.1:{self.join_port}"
        self.data_dir = workdir / "master"
        super().__init__(
            "pymaster",
            ["--data-dir", str(self.data_dir), "--listen", self.address, "--join-listen", self.join_address,
             "--lease-listen", f"127.0.0.1:{self.lease_port}",
             "--metrics-addr", f"127.0.0.1:{self.metrics_port}", *(extra or [])],
            workdir / "pymaster.log",
        )

    @property
    def admin_config(self) -> Path:
        """The admin client config the master writes on first start."""
        return self.data_dir / "admin.yaml"

    @property
    def token(self) -> str:
        """The join token (the master writes it on first start)."""
        return (self.data_dir / "token").read_text().strip()

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def config(self) -> ClientConfig:
        return load_config(self.admin_config)

    def client(self, timeout: float = 10.0) -> Client:
        """A Client with the admin identity."""
        return Client(self.address, timeout=timeout, config=self.config())

    async def wait_serving(self, timeout: float = 30.0) -> None:
        async def serving() -> bool:
            assert self.proc and self.proc.poll() is None, f"pymaster exited:\n{self.log()}"
            if not self.admin_config.exists():
                return False
            async with self.client(timeout=1.0) as client:
                await client.list_nodes()
            return True

        await wait_for(serving, timeout, "pymaster to serve")


class Agent(Process):
    """``pykubelet`` joining ``master`` with its token (or ``token``, to test a wrong one)."""

    def __init__(
        self,
        workdir: Path,
        master: Master,
        node_name: str,
        extra: list[str] | None = None,
        token: str | None = None,
    ):
        self.node_name = node_name
        self.master = master
        self.token = token
        self.port, self.metrics_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.root_dir = workdir / node_name
        self.root_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            "pykubelet",
            ["--server", master.address, "--node-name", node_name, "--root-dir", str(self.root_dir),
             "--listen", self.address, "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
             "--status-interval", "1", "--lease-interval", "1", *(extra or [])],
            workdir / f"pykubelet-{node_name}.log",
        )

    def argv(self) -> list[str]:
        # The master writes its token on first start, after this object is made.
        token = self.token if self.token is not None else self.master.token
        return [*self.args, "--token", token, "--join-server", self.master.join_address]

    @property
    def pki_dir(self) -> Path:
        """Where the agent keeps node.key, node.crt and ca.crt."""
        return self.root_dir / "pki"

    def has_credentials(self) -> bool:
        return all((self.pki_dir / name).exists() for name in ("node.key", "node.crt", "ca.crt"))

    def cleanup(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs ``pykubelet --cleanup`` with this agent's flags (its join token aside: cleaning up
        needs no master): it removes the host rules the node's proxy and pod network own, and exits."""
        return subprocess.run(
            [str(BIN / self.name), *self.args, "--cleanup"], capture_output=True, text=True, timeout=timeout
        )

    def node_config(self, server: str | None = None) -> ClientConfig:
        """A client config with this node's own identity, read from its pki dir (to act as the node)."""
        return ClientConfig(
            server=server or self.master.address,
            ca_pem=(self.pki_dir / "ca.crt").read_bytes(),
            cert_pem=(self.pki_dir / "node.crt").read_bytes(),
            key_pem=(self.pki_dir / "node.key").read_bytes(),
        )


def remove_node_containers(node_name: str) -> None:
    """Removes every container an agent of ``node_name`` created (the suite leaves none behind)."""
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"pykube.node.name={node_name}"}):
            container.remove(force=True)
    finally:
        client.close()


def remove_node_networks(node_name: str) -> None:
    """Removes the Docker networks an agent of ``node_name`` created (its pod network), once their
    containers are gone."""
    client = docker.from_env()
    try:
        for network in client.networks.list(filters={"label": f"pykube.node.name={node_name}"}):
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
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
    master: Master, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs the real pyctl with the master's admin config ($PYKUBE_CONFIG, as a user would after
    `make up`) and returns its completed process (text mode)."""
    env = {k: v for k, v in os.environ.items() if k != "PYKUBE_SERVER"}
    env["PYKUBE_CONFIG"] = str(master.admin_config)
    return subprocess.run(
        [str(BIN / "pyctl"), *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env
    )


def pod_exec(
    master: Master, pod: str, *command: str, container: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` in a container of pod ``pod`` (default namespace) with ``pyctl exec``."""
    chosen = ["-c", container] if container else []
    return pyctl(master, "exec", pod, *chosen, "--", *command, timeout=timeout)


def docker_exec(node_name: str, pod_name: str, container: str, command: list[str]) -> tuple[int, str]:
    """Runs ``command`` in a pod's container straight through the Docker Engine (for when the
    node's agent, which serves exec, is down); returns (exit code, stdout)."""
    client = docker.from_env()
    try:
        labels = [f"pykube.node.name={node_name}", f"pykube.pod.name={pod_name}",
                  f"pykube.container.name={container}"]
        (target,) = client.containers.list(filters={"label": labels})
        result = target.exec_run(command, demux=True)
        return result.exit_code, (result.output[0] or b"").decode(errors="replace")
    finally:
        client.close()


def http_get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def iptables_save(table: str) -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout


def service_proxied(cluster_ip: str, target: str = "KUBE-SVC-") -> bool:
    """Whether the node proxy holds ``cluster_ip``: KUBE-SERVICES sends it to a service chain (nat)
    or rejects it (``target="REJECT"``, filter), and the builtin chains jump to KUBE-SERVICES. The
    proxy adds the jumps after its first restore; a packet sent before them is not DNATed and
    would follow the host's default route off this machine."""
    table = "filter" if target == "REJECT" else "nat"
    lines = iptables_save(table).splitlines()
    jumps = [chain for t, chain, args in BASE_JUMPS if t == table and args[-1] == "KUBE-SERVICES"]
    return (any(f"-d {cluster_ip}/32" in line and f"-j {target}" in line for line in lines)
            and all(any(line.startswith(f"-A {chain} ") and line.endswith("-j KUBE-SERVICES")
                        for line in lines) for chain in jumps))


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a daemon's /metrics: (name, sorted label pairs) -> value."""
    _, _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def runtime_operations(port: int, operation_type: str) -> float:
    """An agent's kubelet_runtime_operations_total for one operation type (0 when never done)."""
    key = ("kubelet_runtime_operations_total", (("operation_type", operation_type),))
    return metric_samples(port).get(key, 0.0)


def relist_count(port: int) -> float:
    """How many relists an agent has done since it started."""
    return metric_samples(port).get(("kubelet_pleg_relist_duration_seconds_count", ()), 0.0)


def container_events(
    since: float, filters: dict[str, Any], until: float | None = None
) -> list[dict[str, Any]]:
    """Docker's container events from ``since`` (epoch seconds) until ``until`` (default: now),
    matching ``filters`` (docker events filters, e.g. ``{"container": id, "event": "die"}``)."""
    end = until if until is not None else time.time()
    client = docker.from_env()
    try:
        # The API takes whole seconds here: ask for a little more, keep what falls in the window.
        stream = client.events(
            since=int(since), until=int(end) + 1, filters={"type": "container", **filters}, decode=True
        )
        events = list(stream)
    finally:
        client.close()
    return [e for e in events if since * 1e9 <= e["timeNano"] <= end * 1e9]


async def wait_pod_gone(client: Client, name: str, timeout: float = 60, interval: float = 0.2) -> None:
    """Waits until the master no longer has pod ``name`` (default namespace)."""

    async def gone() -> bool:
        try:
            await client.get_pod(name)
        except errors.NotFound:
            return True
        return False

    await wait_for(gone, timeout, f"pod {name} gone", interval=interval)


async def delete_pods(client: Client, *names: str) -> None:
    """Deletes pods ``names`` (default namespace, gracefully) and waits until they are gone."""
    for name in names:
        await client.delete_pod(name)
    for name in names:
        await wait_pod_gone(client, name)


async def wait_event(
    client: Client, name: str, reason: str, text: str = "", count: int = 1, timeout: float = 60
) -> objects_pb2.Event:
    """Waits for an event about ``name`` with ``reason``, ``text`` in its message and at least
    ``count`` occurrences; returns it."""

    async def recorded() -> objects_pb2.Event | None:
        events = await client.list("events", field_selector=f"involvedObject.name={name}")
        return next(
            (e for e in events.items if e.reason == reason and text in e.message and e.count >= count), None
        )

    return await wait_for(recorded, timeout, f"event {reason} {text!r} x{count} about {name}")


def node_ready(node: objects_pb2.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


async def wait_nodes_ready(master: Master, names: list[str], timeout: float = 60) -> None:
    async with master.client() as client:

        async def ready() -> bool:
            nodes = (await client.list_nodes()).items
            return set(names) <= {n.metadata.name for n in nodes if node_ready(n)}

        await wait_for(ready, timeout, f"nodes {names} Ready")


class Cluster:
    """A master and agents (by default two, A and B) sharing this host's Docker Engine.

    Args:
        workdir: where the daemons keep their state and logs.
        prefixes: one agent per prefix, named ``<prefix>-<hex>``.
        master_extra: more pymaster flags.
        agent_extra: more pykubelet flags, for every agent (a flag given again wins).
        agent_extra_by_prefix: more pykubelet flags for the agent of one prefix, after
            ``agent_extra`` (e.g. ``{"node-a": ["--extended-resource", "example.com/dongle=2"]}``).
    """

    def __init__(
        self,
        workdir: Path,
        prefixes: tuple[str, ...] = ("node-a", "node-b"),
        master_extra: list[str] | None = None,
        agent_extra: list[str] | None = None,
        agent_extra_by_prefix: dict[str, list[str]] | None = None,
    ):
        self.workdir = workdir
        self.master = Master(workdir, master_extra)
        by_prefix = agent_extra_by_prefix or {}
        self.agents = [
            Agent(workdir, self.master, unique(prefix), [*(agent_extra or []), *by_prefix.get(prefix, [])])
            for prefix in prefixes
        ]

    @property
    def a(self) -> Agent:
        return self.agents[0]

    @property
    def b(self) -> Agent:
        return self.agents[1]

    @property
    def node_names(self) -> list[str]:
        return [a.node_name for a in self.agents]

    def agent(self, node_name: str) -> Agent:
        return next(a for a in self.agents if a.node_name == node_name)

    def client(self) -> Client:
        return self.master.client()

    def logs(self) -> str:
        return "\n".join(f"==== {p.name} ====\n{p.log()[-4000:]}" for p in [self.master, *self.agents])


@contextlib.contextmanager
def running_cluster(workdir: Path, **options: Any) -> Iterator[Cluster]:
    """Starts a Cluster (``options``: Cluster's) and waits for its nodes to be Ready; stops
    everything afterwards, removes the host rules its agents' proxy and pod network leave behind
    by design (``pykubelet --cleanup``), and checks that no container of its nodes is left."""
    cluster = Cluster(workdir, **options)
    cleanup: subprocess.CompletedProcess[str] | None = None
    try:
        cluster.master.start()
        asyncio.run(cluster.master.wait_serving())
        for agent in cluster.agents:
            agent.start()
        try:
            asyncio.run(wait_nodes_ready(cluster.master, cluster.node_names))
        except AssertionError:
            print(cluster.logs())  # the daemons' logs explain a start-up failure in the test report
            raise
        yield cluster
    finally:
        for process in [*cluster.agents, cluster.master]:
            process.stop()
        for name in cluster.node_names:
            remove_node_containers(name)
            remove_node_networks(name)
        started = [agent for agent in cluster.agents if agent.proc is not None]
        if started:
            cleanup = started[0].cleanup()
    for name in cluster.node_names:
        assert node_containers(name) == [], f"containers left behind on {name}"
    assert cleanup is None or cleanup.returncode == 0, f"pykubelet --cleanup failed: {cleanup.stderr}"


def init_masters(workdir: Path, count: int, extra: list[str] | None = None) -> list[Master]:
    """``count`` master replicas (not started) sharing one CA, admin config, join token and
    Secrets key, as the README's "Running HA" says: ``pymaster init --server <every replica>``
    once, then a copy of that directory per replica (``<workdir>/m<i>/master``); ``extra``: more
    pymaster flags for each (``--store etcd://...``, ``--leader-elect``, ...)."""
    masters = [Master(workdir / f"m{i}", extra) for i in range(1, count + 1)]
    shared = workdir / "init"
    subprocess.run(
        [str(BIN / "pymaster"), "init", "--data-dir", str(shared),
         "--server", ",".join(m.address for m in masters)],
        check=True, capture_output=True, timeout=60,
    )
    for master in masters:
        shutil.copytree(shared, master.data_dir)
    return masters


def leading(master: Master) -> bool:
    """Whether ``master`` (started with --leader-elect) says it leads (leader_election_master_status)."""
    samples = metric_samples(master.metrics_port)
    return samples.get(("leader_election_master_status", (("name", "pymaster"),)), 0.0) == 1.0
