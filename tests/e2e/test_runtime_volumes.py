"""Volumes, privileged containers and host networking on the real engine: the volume manager,
the Docker runtime and the sync plan's execution, one pod at a time, no agent process.

Each test uses its own node name and its own pods dir (under pytest's tmp_path; hostPath volumes
may use anything under tmp_path) and removes what it created: containers by the node label, then
every pod's volumes (tmpfs mounts and staged hostPath binds included) and the pods dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import socket
import stat
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from pykubelet import sync
from pykubelet.executor import PodExecutor
from pykubelet.pod_status import Observations, compute_pod_status
from pykubelet.runtime import labels
from pykubelet.runtime.base import ContainerRuntimeError, CreateContainerError, Mount
from pykubelet.runtime.docker import DockerRuntime
from pykubelet.volumes import PodVolumes
from pymaster.api import objects_pb2

from .harness import BUSYBOX, free_port, wait_for

pytestmark = pytest.mark.e2e

PAUSE = "pykube/pause:3.9"
HOST_IP = "10.1.2.3"  # what the agent would report as the node's address


@pytest.fixture
def node(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique node name; afterwards its containers are removed."""
    node_name = f"test-vol-{uuid.uuid4().hex[:8]}"
    yield node_name
    node_filter = {"label": f"{labels.NODE_NAME}={node_name}"}
    for container in docker_client.containers.list(all=True, filters=node_filter):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@pytest.fixture
def volumes_dir(tmp_path: Path) -> Path:
    return tmp_path / "pods"


@pytest.fixture
async def volumes(volumes_dir: Path, tmp_path: Path) -> AsyncIterator[PodVolumes]:
    """The volume manager on ``volumes_dir``, hostPaths allowed under ``tmp_path``; afterwards
    every pod's volumes are cleaned up, tmpfs mounts and staged hostPaths included (a detached
    unmount: containers still running do not matter), and the dir removed."""
    manager = PodVolumes(volumes_dir, [str(tmp_path)])
    yield manager
    if volumes_dir.is_dir() and not volumes_dir.is_symlink():
        for pod_dir in volumes_dir.iterdir():
            with contextlib.suppress(ContainerRuntimeError):
                await manager.cleanup(pod_dir.name)
    assert not mount_points_under(volumes_dir)
    shutil.rmtree(volumes_dir, ignore_errors=True)


def make_pod(name: str = "vol", policy: str = "Always") -> objects_pb2.Pod:
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(name=name, namespace="default", uid=str(uuid.uuid4()))
    )
    pod.spec.restart_policy = policy
    pod.spec.termination_grace_period_seconds = 1
    return pod


def add_container(pod: objects_pb2.Pod, name: str, script: str, **mounts: str) -> objects_pb2.Container:
    """A busybox container running ``sh -c script``; ``mounts`` maps volume name -> mount path
    (a path ending in ":ro" is mounted read-only)."""
    container = pod.spec.containers.add(
        name=name, image=BUSYBOX, image_pull_policy="IfNotPresent", command=["sh", "-c", script]
    )
    for volume, path in mounts.items():
        read_only = path.endswith(":ro")
        container.volume_mounts.add(name=volume, mount_path=path.removesuffix(":ro"), read_only=read_only)
    return container


async def sync_once(rt: DockerRuntime, volumes: PodVolumes, pod: objects_pb2.Pod, node: str):
    """One pod sync as the agent does it; returns (failures, observed after)."""
    observed = await rt.get_pod(node, pod.metadata.uid)
    actions = sync.compute_pod_actions(pod, observed)
    failures = await PodExecutor(rt, volumes, node, PAUSE).execute(pod, actions, observed)
    return failures, await rt.get_pod(node, pod.metadata.uid)


async def output_of(rt: DockerRuntime, pod: objects_pb2.Pod, node: str, container: str, text: str) -> str:
    """Waits until the container's output contains ``text``; returns the output."""

    async def check() -> str | None:
        observed = await rt.get_pod(node, pod.metadata.uid)
        latest = observed.latest(container) if observed is not None else None
        if latest is None:
            return None
        async with contextlib.aclosing(rt.logs(latest.id, False, None, False)) as chunks:
            output = b"".join([chunk async for chunk in chunks]).decode(errors="replace")
        return output if text in output else None

    return await wait_for(check, 30, f"{text!r} in the output of {container}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def host_mounts() -> list[tuple[str, str, str]]:
    """(mount point, file system type, super options) of every mount of the host's namespace,
    read from /proc/self/mountinfo as the kernel writes it (mount points with spaces are not
    expected here)."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-", 6)
            mounts.append((fields[4], fields[separator + 1], fields[separator + 3]))
    return mounts


def mount_points_under(path: Path) -> list[str]:
    real = os.path.realpath(path)
    return [m for m, _, _ in host_mounts() if m == real or m.startswith(real + "/")]


async def test_empty_dir_is_shared_and_removed_with_the_pod(
    runtime, node, volumes, volumes_dir, docker_client
):
    pod = make_pod()
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    add_container(pod, "writer", "echo hello > /data/msg; sleep 3600", data="/data")
    add_container(
        pod,
        "reader",
        "until [ -f /shared/msg ]; do sleep 0.1; done; cat /shared/msg; sleep 3600",
        data="/shared",
    )
    failures, observed = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    assert "hello" in await output_of(runtime, pod, node, "reader", "hello")

    pod_dir = volumes_dir / pod.metadata.uid
    data = pod_dir / "volumes" / "data"
    assert volumes.volume_dir(pod.metadata.uid, "data") == data
    assert (data / "msg").read_text() == "hello\n"
    assert mode(data) == 0o777  # kubelet's emptyDir permissions
    assert mode(pod_dir) == mode(pod_dir / "volumes") == 0o750
    mounts = docker_client.api.inspect_container(observed.latest("reader").id)["Mounts"]
    assert sorted((m["Type"], m["Source"], m["Destination"], m["RW"]) for m in mounts) == [  # any order
        ("bind", str(pod_dir / "containers" / "reader" / "0-termination-log"), "/dev/termination-log", True),
        ("bind", str(data), "/shared", True),
    ]

    # A container's restart keeps the data; only the pod's removal deletes it.
    await PodExecutor(runtime, volumes, node, PAUSE).kill_pod(observed, 1, remove=False)
    assert (data / "msg").exists()
    observed = await runtime.get_pod(node, pod.metadata.uid)
    await PodExecutor(runtime, volumes, node, PAUSE).kill_pod(observed, 1, remove=True)
    assert not pod_dir.exists()
    assert volumes_dir.exists()


async def test_removing_volumes_never_follows_a_symlink(runtime, node, volumes, volumes_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    pod = make_pod()
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    add_container(
        pod, "main", f"ln -s {victim} /data/link; ln -s {victim}/keep /data/file; sleep 3600", data="/data"
    )
    failures, observed = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    link = volumes.volume_dir(pod.metadata.uid, "data") / "file"

    async def linked() -> bool:
        return link.is_symlink()

    await wait_for(linked, 10, "the symlinks")
    await PodExecutor(runtime, volumes, node, PAUSE).kill_pod(observed, 1, remove=True)
    assert not (volumes_dir / pod.metadata.uid).exists()
    assert (victim / "keep").read_text() == "precious"


async def test_memory_empty_dir_is_a_host_tmpfs_kept_across_sandboxes(runtime, node, volumes, volumes_dir):
    pod = make_pod()
    pod.spec.volumes.add(name="cache").empty_dir.CopyFrom(
        objects_pb2.EmptyDirVolumeSource(medium="Memory", size_limit="1Mi")
    )
    add_container(pod, "writer", "echo run >> /cache/runs; sleep 3600", cache="/cache")
    add_container(
        pod,
        "reader",
        "until [ -f /m/runs ]; do sleep 0.1; done; cat /m/runs; grep ' /m ' /proc/mounts;"
        " dd if=/dev/zero of=/m/big bs=1024 count=2048; rm -f /m/big; echo dd-done; sleep 3600",
        cache="/m",
    )
    failures, first = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    output = await output_of(runtime, pod, node, "reader", "dd-done")
    assert "run" in output  # shared by the two containers
    assert "tmpfs /m tmpfs" in output
    assert "No space left on device" in output  # sizeLimit: 1Mi

    # A tmpfs mounted on the host at the volume's directory, sized, 0777.
    cache = volumes.volume_dir(pod.metadata.uid, "cache")
    real = os.path.realpath(cache)
    on_host = [(fs, "size=1024k" in options) for m, fs, options in host_mounts() if m == real]
    assert on_host == [("tmpfs", True)]
    assert mode(cache) == 0o777

    # The sandbox dies and is re-created with new containers: the tmpfs, and its data, stay.
    await runtime.stop_container(first.infra.id, 0)

    async def sandbox_dead() -> bool:
        observed = await runtime.get_pod(node, pod.metadata.uid)
        return observed.infra.state == "exited"

    await wait_for(sandbox_dead, 30, "the infra container to exit")
    failures, second = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    assert second.infra.id != first.infra.id and second.infra.state == "running"

    async def appended() -> bool:
        return (cache / "runs").read_text() == "run\nrun\n"

    await wait_for(appended, 30, "the new writer to append to the old data")
    assert [fs for m, fs, _ in host_mounts() if m == real] == ["tmpfs"]  # never mounted twice

    await PodExecutor(runtime, volumes, node, PAUSE).kill_pod(second, 1, remove=True)
    assert mount_points_under(volumes_dir) == []
    assert not (volumes_dir / pod.metadata.uid).exists()


async def test_memory_empty_dir_is_mounted_once_across_agent_restarts(volumes, volumes_dir):
    pod = make_pod()
    pod.spec.volumes.add(name="cache").empty_dir.medium = "Memory"
    container = add_container(pod, "main", "true", cache="/cache")
    cache = volumes.volume_dir(pod.metadata.uid, "cache")
    expected = [Mount("/cache", str(cache))]
    assert await volumes.mounts(pod, container) == expected
    (cache / "kept").write_text("x")
    assert await volumes.mounts(pod, container) == expected
    restarted = PodVolumes(volumes_dir)  # a new agent: only the host's mount table remembers
    assert await restarted.mounts(pod, container) == expected
    assert (cache / "kept").read_text() == "x"
    real = os.path.realpath(cache)
    assert [fs for m, fs, _ in host_mounts() if m == real] == ["tmpfs"]

    await restarted.cleanup(pod.metadata.uid)
    assert mount_points_under(volumes_dir) == []
    assert not (volumes_dir / pod.metadata.uid).exists()


async def test_cleanup_refuses_to_delete_across_a_foreign_mount(volumes, volumes_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    pod = make_pod()
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    await volumes.mounts(pod, add_container(pod, "main", "true", data="/data"))
    target = volumes.volume_dir(pod.metadata.uid, "data")
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind = 4096
    assert libc.mount(bytes(victim), bytes(target), None, ms_bind, None) == 0, os.strerror(ctypes.get_errno())
    try:
        with pytest.raises(ContainerRuntimeError, match="still has mount points"):
            await volumes.cleanup(pod.metadata.uid)
        assert (victim / "keep").read_text() == "precious"
    finally:
        libc.umount2(bytes(target), 0)
    await volumes.cleanup(pod.metadata.uid)
    assert not (volumes_dir / pod.metadata.uid).exists()
    assert (victim / "keep").read_text() == "precious"


@pytest.mark.parametrize("medium", ["", "Memory"])
async def test_empty_dir_outlives_a_container_restart(runtime, node, volumes, medium):
    pod = make_pod()
    pod.spec.volumes.add(name="data").empty_dir.medium = medium
    add_container(
        pod,
        "main",
        "if [ -f /data/msg ]; then echo found; sleep 3600; else echo x > /data/msg; exit 1; fi",
        data="/data",
    )
    failures, _ = await sync_once(runtime, volumes, pod, node)
    assert failures == []

    async def exited() -> bool:
        observed = await runtime.get_pod(node, pod.metadata.uid)
        return observed.latest("main").state == "exited"

    await wait_for(exited, 30, "the first attempt to exit")
    failures, observed = await sync_once(runtime, volumes, pod, node)  # the restart, in the same sandbox
    assert failures == [] and observed.latest("main").restart_count == 1
    assert "found" in await output_of(runtime, pod, node, "main", "found")


async def test_host_path_staged_per_container_read_only_and_kept(
    runtime, node, volumes, volumes_dir, tmp_path, docker_client
):
    host_dir = tmp_path / "host" / "logs"
    config = tmp_path / "host" / "app.conf"
    pod = make_pod()
    pod.spec.volumes.add(name="logs").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(host_dir), type="DirectoryOrCreate")
    )
    pod.spec.volumes.add(name="conf").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(config), type="FileOrCreate")
    )
    script = "echo setting > /app.conf; echo written > /logs/out; sleep 3600"
    add_container(pod, "rw", script, logs="/logs", conf="/app.conf")
    add_container(
        pod,
        "ro",
        "until [ -f /logs/out ]; do sleep 0.1; done; cat /logs/out; stat -c inode=%i /logs;"
        " touch /logs/nope || echo refused; sleep 3600",
        logs="/logs:ro",
    )
    failures, observed = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    output = await output_of(runtime, pod, node, "ro", "refused")
    assert "written" in output and f"inode={host_dir.stat().st_ino}" in output  # the host's directory
    assert "Read-only file system" in output
    assert mode(host_dir) == 0o755
    assert (host_dir / "out").read_text() == "written\n"
    assert not (host_dir / "nope").exists()

    # Docker mounts the agent's staged binds of the checked inodes: one per volume and container.
    staging = volumes_dir / pod.metadata.uid / "volume-hostpaths"
    mounts = {
        name: sorted((m["Source"], m["Destination"], m["RW"])
                     for m in docker_client.api.inspect_container(observed.latest(name).id)["Mounts"]
                     if m["Destination"] != "/dev/termination-log")
        for name in ("rw", "ro")
    }
    assert mounts == {
        "rw": [(f"{staging}/conf/rw", "/app.conf", True), (f"{staging}/logs/rw", "/logs", True)],
        "ro": [(f"{staging}/logs/ro", "/logs", False)],
    }
    staged = sorted(os.path.realpath(staging / p) for p in ("conf/rw", "logs/ro", "logs/rw"))
    assert sorted(mount_points_under(volumes_dir)) == staged
    await volumes.mounts(pod, pod.spec.containers[1])  # a container's next start stages afresh ...
    assert sorted(mount_points_under(volumes_dir)) == staged  # ... never on top of the old bind

    restarted = PodVolumes(volumes_dir, [str(tmp_path)])  # an agent restarted: only mountinfo remembers
    await PodExecutor(runtime, restarted, node, PAUSE).kill_pod(observed, 1, remove=True)
    assert mount_points_under(volumes_dir) == []
    assert not (volumes_dir / pod.metadata.uid).exists()
    # Host data is never the runtime's to delete.
    assert (host_dir / "out").read_text() == "written\n" and config.read_text() == "setting\n"


@pytest.mark.parametrize(("kind", "target"), [("Directory", "/etc"), ("File", "/etc/passwd")])
async def test_a_symlink_swapped_in_after_the_check_is_never_mounted(
    runtime, node, volumes, volumes_dir, tmp_path, kind, target
):
    data = tmp_path / "data"
    data.mkdir()
    checked = data / "checked"
    if kind == "Directory":
        checked.mkdir()
        (checked / "marker").write_text("original\n")
        show = "cat /h/marker"
    else:
        checked.write_text("original\n")
        show = "cat /h"
    original_inode = checked.stat().st_ino
    pod = make_pod()
    pod.spec.volumes.add(name="h").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(checked), type=kind)
    )
    container = add_container(pod, "main", f"{show}; ls /h; stat -c inode=%i /h; sleep 3600", h="/h")
    infra = await runtime.start_infra(pod, node, PAUSE)
    mounts = await volumes.mounts(pod, container)  # checked, then staged

    # What a pod mounting /data read-write could do between the check and Docker's mount.
    checked.rename(data / "moved")
    checked.symlink_to(target)
    started = await runtime.start_container(pod, container, node, infra, 0, mounts)

    output = await output_of(runtime, pod, node, "main", "inode=")
    assert "original" in output
    assert f"inode={original_inode}" in output
    assert "passwd" not in output and "root:" not in output  # nothing of /etc
    # After the start too: the container keeps the checked inode.
    result = await runtime.exec(started.id, ["sh", "-c", show], 10)
    assert (result.exit_code, result.stdout) == (0, b"original\n")
    # A later start checks again, and refuses the symlink now in place.
    with pytest.raises(CreateContainerError, match=f"the symlink {checked} leads to {target}, which is not"):
        await volumes.mounts(pod, container)

    observed = await runtime.get_pod(node, pod.metadata.uid)
    await PodExecutor(runtime, volumes, node, PAUSE).kill_pod(observed, 1, remove=True)
    assert mount_points_under(volumes_dir) == []
    assert not (volumes_dir / pod.metadata.uid).exists()
    moved = data / "moved" / "marker" if kind == "Directory" else data / "moved"
    assert moved.read_text() == "original\n"
    assert os.readlink(checked) == target


@pytest.mark.parametrize(
    ("kind", "prepare", "error"),
    [
        ("Directory", None, "hostPath type check failed: {path} does not exist (type Directory)"),
        ("File", None, "hostPath type check failed: {path} does not exist (type File)"),
        ("Directory", "file", "hostPath type check failed: {path} is not a directory"),
        ("DirectoryOrCreate", "file", "hostPath type check failed: {path} is not a directory"),
        ("File", "dir", "hostPath type check failed: {path} is not a file"),
        ("FileOrCreate", "dir", "hostPath type check failed: {path} is not a file"),
    ],
)
async def test_host_path_type_checks(runtime, node, volumes, tmp_path, kind, prepare, error):
    path = tmp_path / "target"
    if prepare == "file":
        path.write_text("")
    elif prepare == "dir":
        path.mkdir()
    pod = make_pod(policy="Never")
    pod.spec.volumes.add(name="h").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(path), type=kind)
    )
    add_container(pod, "main", "true", h="/h")
    failures, observed = await sync_once(runtime, volumes, pod, node)
    assert [(f.container_name, f.reason, f.message) for f in failures] == [
        ("main", CreateContainerError.reason, error.format(path=path))
    ]
    assert observed.latest("main") is None  # refused before Docker was asked
    seen = Observations(failures={f.container_name: f for f in failures})
    pod_status = compute_pod_status(pod, observed, seen, HOST_IP, datetime.now(UTC))
    assert pod_status.container_statuses[0].state.waiting.reason == "CreateContainerError"


@pytest.mark.parametrize(
    ("kind", "is_file"), [("DirectoryOrCreate", False), ("FileOrCreate", True), ("", False)]
)
async def test_host_path_created_when_missing(runtime, node, volumes, tmp_path, kind, is_file):
    path = tmp_path / "made"
    pod = make_pod()
    pod.spec.volumes.add(name="h").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(path), type=kind)
    )
    add_container(pod, "main", "sleep 3600", h="/h")
    failures, _ = await sync_once(runtime, volumes, pod, node)
    assert failures == []
    assert path.is_file() if is_file else path.is_dir()
    assert mode(path) == (0o644 if is_file else 0o755)
    if is_file:
        assert path.read_bytes() == b""


async def test_file_or_create_needs_its_parent(runtime, node, volumes, tmp_path):
    path = tmp_path / "no-such-dir" / "file"
    pod = make_pod(policy="Never")
    pod.spec.volumes.add(name="h").host_path.CopyFrom(
        objects_pb2.HostPathVolumeSource(path=str(path), type="FileOrCreate")
    )
    add_container(pod, "main", "true", h="/h")
    failures, _ = await sync_once(runtime, volumes, pod, node)
    assert [f.reason for f in failures] == [CreateContainerError.reason]
    assert "No such file or directory" in failures[0].message


async def test_pods_dir_of_another_user_is_refused(runtime, node, volumes, volumes_dir):
    volumes_dir.mkdir()
    os.chown(volumes_dir, 12345, -1)
    pod = make_pod(policy="Never")
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    add_container(pod, "main", "true", data="/data")
    failures, _ = await sync_once(runtime, volumes, pod, node)
    assert [f.reason for f in failures] == [CreateContainerError.reason]
    assert f"pods dir {volumes_dir} belongs to uid 12345" in failures[0].message
    assert list(volumes_dir.iterdir()) == []


async def test_cleanup_without_volumes_is_fine(volumes, volumes_dir, tmp_path):
    await volumes.cleanup(str(uuid.uuid4()))
    outside = tmp_path / "outside"
    outside.mkdir()
    volumes_dir.mkdir()
    await volumes.cleanup("../outside")  # never a path: nothing is removed
    await volumes.cleanup("")
    assert outside.exists() and volumes_dir.exists()


async def test_privileged_is_set_on_that_container_only(runtime, node, volumes, docker_client):
    pod = make_pod()
    add_container(pod, "plain", "sleep 3600")
    add_container(pod, "priv", "sleep 3600").security_context.privileged = True
    await sync_once(runtime, volumes, pod, node)  # the privileged start may fail on a restricted engine
    observed = await runtime.get_pod(node, pod.metadata.uid)
    privileged = {
        name: docker_client.api.inspect_container(observed.latest(name).id)["HostConfig"]["Privileged"]
        for name in ("plain", "priv")
    }
    assert privileged == {"plain": False, "priv": True}
    infra = docker_client.api.inspect_container(observed.infra.id)
    assert infra["HostConfig"]["Privileged"] is False


async def test_privileged_container_can_mount_where_a_plain_one_cannot(runtime, node, volumes):
    pod = make_pod()
    script = (
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mount-ok || echo mount-refused; sleep 3600"
    )
    add_container(pod, "plain", script)
    add_container(pod, "priv", script).security_context.privileged = True
    failures, _ = await sync_once(runtime, volumes, pod, node)
    if failures:
        # Some engines cannot grant every capability (a container runtime inside a restricted VM
        # or container): the setting is tested above, the behaviour only where it can run.
        assert [(f.container_name, f.reason) for f in failures] == [("priv", "RunContainerError")]
        pytest.skip(f"this engine cannot run privileged containers: {failures[0].message}")
    assert "mount-refused" in await output_of(runtime, pod, node, "plain", "mount-")
    assert "mount-ok" in await output_of(runtime, pod, node, "priv", "mount-")


async def test_host_network_pod_uses_the_hosts_interfaces(runtime, node, volumes, docker_client):
    port = free_port()
    pod = make_pod()
    pod.spec.host_network = True
    main = add_container(
        pod,
        "main",
        f"ls /sys/class/net; hostname; mkdir -p /www && echo on-host > /www/index.html"
        f" && httpd -f -p 127.0.0.1:{port} -h /www",
    )
    main.ports.add(container_port=port, host_port=port)
    failures, observed = await sync_once(runtime, volumes, pod, node)
    assert failures == []

    infra = docker_client.api.inspect_container(observed.infra.id)
    assert infra["HostConfig"]["NetworkMode"] == "host"
    assert not infra["HostConfig"]["PortBindings"]
    assert observed.infra.ip == ""
    output = await output_of(runtime, pod, node, "main", "\n")
    host_interfaces = set(os.listdir("/sys/class/net"))
    assert host_interfaces <= set(output.split())  # e.g. docker0, which no bridge container sees
    assert socket.gethostname() in output.split()

    async def served() -> str | None:
        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
                return response.read().decode()

        try:
            return await asyncio.to_thread(get)
        except OSError:
            return None

    assert (await wait_for(served, 20, "the pod's port on the host")).strip() == "on-host"

    status = compute_pod_status(pod, observed, None, HOST_IP, datetime.now(UTC))
    assert (status.pod_ip, status.host_ip) == (HOST_IP, HOST_IP)
