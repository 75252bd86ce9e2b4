"""ConfigMap, Secret, downwardAPI and projected volumes, subPath, emptyDir sizeLimit and fsGroup end
to end (a real pymaster and pykubelet, the real Docker Engine): what a container reads in them,
their modes and owners (``stat`` in the container), updates reaching running containers all at
once (and not through a subPath), secrets kept in a tmpfs and never on the node's disk, optional
objects, a pod waiting in ContainerCreating until its ConfigMap exists, and a pod evicted when its
emptyDir outgrows its sizeLimit.

One single-node cluster serves the module; every test makes its own objects and waits for the
evidence of what it claims (what a command in the container prints, a status, an event). An
update reaches a pod within the agent's sync period (10 s) plus its object cache (5 s).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    running_cluster,
    unique,
    wait_event,
    wait_for,
)

pytestmark = pytest.mark.e2e

UPDATE_SECONDS = 60  # generous: an update needs one sync period and one cache expiry at most


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("config-volumes")
    try:
        with running_cluster(workdir, prefixes=("node-v",)) as c:
            yield c
    finally:
        # A test that failed before deleting its pod leaves the agent's tmpfs and staged mounts.
        for mount_point in reversed(_mount_points()):
            if mount_point.startswith(f"{os.path.realpath(workdir)}/"):
                subprocess.run(["umount", "-l", mount_point], check=False)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split(" ")[4] for line in mountinfo]


def _pod(name: str, spec: str, labels: str = "") -> objects_pb2.Pod:
    """A pod named ``name`` with the ``spec`` YAML (BUSYBOX: the test image), a 1 s grace."""
    spec = textwrap.dedent(spec).replace("BUSYBOX", BUSYBOX)
    manifest = (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{labels}}}\n"
        "spec:\n  terminationGracePeriodSeconds: 1\n" + textwrap.indent(spec, "  ")
    )
    return load_pods(manifest)[0]


def _meta(name: str) -> objects_pb2.ObjectMeta:
    return objects_pb2.ObjectMeta(name=name, namespace="default")


async def _run(client: Client, pod: str, script: str, container: str = "") -> str:
    """What ``sh -c script`` prints in the pod's container (fails on a non-zero exit)."""
    out, err, code = await client.exec("default", pod, ["sh", "-c", script], container=container).collect()
    assert code == 0, f"{script!r} in {pod}: exit {code}, {err.decode()!r}"
    return out.decode()


async def _running(client: Client, name: str) -> objects_pb2.Pod:
    async def running() -> objects_pb2.Pod | None:
        pod = await client.get_pod(name)
        statuses = pod.status.container_statuses
        return pod if statuses and all(s.state.HasField("running") for s in statuses) else None

    try:
        return await wait_for(running, 60, f"{name} running")
    except AssertionError as err:
        pod = await client.get_pod(name)
        raise AssertionError(f"{err}; statuses: {list(pod.status.container_statuses)}") from None


async def _prints(
    client: Client, pod: str, script: str, expected: str, what: str, container: str = ""
) -> None:
    """Waits until ``script`` in the pod prints ``expected``."""
    await wait_for(lambda: _printed(client, pod, script, expected, container), UPDATE_SECONDS, what)


async def _printed(client: Client, pod: str, script: str, expected: str, container: str) -> bool:
    return await _run(client, pod, script, container) == expected


async def test_config_map_volume_items_modes_read_only_and_updates(cluster: Cluster) -> None:
    name, conf = unique("cm"), unique("conf")
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            volumeMounts:
              - {{name: all, mountPath: /etc/all, readOnly: false}}
              - {{name: picked, mountPath: /etc/picked}}
              - {{name: all, mountPath: /etc/single.conf, subPath: app.conf}}
        volumes:
          - name: all
            configMap: {{name: {conf}}}
          - name: picked
            configMap:
              name: {conf}
              defaultMode: 0640
              items:
                - {{key: app.conf, path: conf/app, mode: 0400}}
                - {{key: level, path: level}}
        """)
    async with cluster.client() as client:
        data = {"app.conf": "v1", "level": "info"}
        await client.create(objects_pb2.ConfigMap(metadata=_meta(conf), data=data))
        await client.create_pod(pod)
        await _running(client, name)
        assert await _run(client, name, "cat /etc/all/app.conf; echo; cat /etc/all/level") == "v1\ninfo"
        # The kubelet's atomic writer layout, seen from the container.
        layout = await _run(client, name, "readlink /etc/all/app.conf; readlink /etc/all/..data")
        assert layout.startswith("..data/app.conf\n..20"), layout
        files = "/etc/all/level /etc/picked/conf/app /etc/picked/level"
        modes = await _run(client, name, f"stat -L -c '%a %n' {files}")
        assert modes.split("\n")[:3] == [
            "644 /etc/all/level", "400 /etc/picked/conf/app", "640 /etc/picked/level"
        ]
        # Always read-only, whatever the mount says (as in Kubernetes).
        out, err, code = await client.exec("default", name, ["touch", "/etc/all/new"]).collect()
        assert code != 0 and b"Read-only file system" in err, (out, err)

        current = await client.get("configmaps", conf)
        current.data["app.conf"] = "v2"
        del current.data["level"]
        await client.update(current)
        await _prints(client, name, "cat /etc/all/app.conf; ls /etc/all", "v2app.conf\n", "the update")
        # An item whose key went away fails that volume's update: it keeps its files (Kubernetes too).
        await wait_event(client, name, "FailedMount",
                     'volume "picked" : configmap references non-existent config key: level')
        assert await _run(client, name, "cat /etc/picked/conf/app /etc/picked/level") == "v1info"
        assert await _run(client, name, "cat /etc/single.conf") == "v1"  # a subPath is not updated
        await delete_pods(client, name)
        await client.delete("configmaps", conf)


def _host_files_holding(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` on its own file system (tmpfs mounts inside are skipped) holding
    ``needle``."""
    device = os.lstat(root).st_dev
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(current, d)).st_dev == device]
        for file in files:
            path = os.path.join(current, file)
            if os.path.isfile(path) and not os.path.islink(path) and needle in Path(path).read_bytes():
                found.append(path)
    return found


async def test_secret_volume_stays_in_memory(cluster: Cluster) -> None:
    name, creds = unique("sec"), unique("creds")
    secret_value = f"hunter2-{unique('x')}".encode()
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            volumeMounts: [{{name: creds, mountPath: /etc/creds}}]
        volumes:
          - name: creds
            secret: {{secretName: {creds}, defaultMode: 0400}}
        """)
    async with cluster.client() as client:
        await client.create(objects_pb2.Secret(metadata=_meta(creds), data={"password": secret_value}))
        await client.create_pod(pod)
        running = await _running(client, name)
        assert await _run(client, name, "cat /etc/creds/password") == secret_value.decode()
        assert await _run(client, name, "stat -L -c %a /etc/creds/password") == "400\n"
        mounts = await _run(client, name, "grep ' /etc/creds ' /proc/mounts")
        assert mounts.startswith("tmpfs /etc/creds tmpfs ro"), mounts
        host = cluster.a.root_dir / "pods" / running.metadata.uid / "volumes" / "creds"
        assert os.path.realpath(host) in _mount_points()  # a tmpfs of the agent's on the host
        assert _host_files_holding(cluster.a.root_dir, secret_value) == []  # never on the node's disk
        await delete_pods(client, name)
        assert not host.exists()  # unmounted and gone with the pod
        await client.delete("secrets", creds)


async def test_downward_api_volume_follows_label_changes(cluster: Cluster) -> None:
    name = unique("down")
    pod = _pod(name, """\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            resources: {limits: {memory: 32Mi}}
            volumeMounts: [{name: info, mountPath: /etc/podinfo}]
        volumes:
          - name: info
            downwardAPI:
              items:
                - {path: labels, fieldRef: {fieldPath: metadata.labels}}
                - {path: tier, fieldRef: {fieldPath: "metadata.labels['tier']"}}
                - {path: name, fieldRef: {fieldPath: metadata.name}}
                - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}
        """, labels=", labels: {tier: web, app: shop}")
    async with cluster.client() as client:
        await client.create_pod(pod)
        await _running(client, name)
        script = "cat /etc/podinfo/labels; echo; cat /etc/podinfo/tier /etc/podinfo/name /etc/podinfo/mem"
        assert await _run(client, name, script) == f'app="shop"\ntier="web"\nweb{name}32'
        current = await client.get_pod(name)
        current.metadata.labels["tier"] = "db"
        await client.update(current)
        await _prints(client, name, "cat /etc/podinfo/tier", "db", "the new label in the running pod")
        assert await _run(client, name, "cat /etc/podinfo/labels") == 'app="shop"\ntier="db"'
        await delete_pods(client, name)


async def test_projected_volume_and_optional_sources(cluster: Cluster) -> None:
    name, conf, creds = unique("proj"), unique("conf"), unique("creds")
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            volumeMounts:
              - {{name: all, mountPath: /projected}}
              - {{name: nothing, mountPath: /nothing}}
        volumes:
          - name: all
            projected:
              defaultMode: 0440
              sources:
                - configMap: {{name: {conf}, items: [{{key: color, path: ui/color}}]}}
                - secret: {{name: {creds}, items: [{{key: token, path: token, mode: 0400}}]}}
                - secret: {{name: {unique("ghost")}, optional: true}}
                - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
          - name: nothing
            configMap: {{name: {unique("ghost")}, optional: true}}
        """)
    async with cluster.client() as client:
        await client.create(objects_pb2.ConfigMap(metadata=_meta(conf), data={"color": "blue"}))
        await client.create(objects_pb2.Secret(metadata=_meta(creds), data={"token": b"t0k"}))
        await client.create_pod(pod)
        await _running(client, name)
        script = "cd /projected; cat ui/color token ns; stat -L -c ' %a' ui/color token; ls /nothing"
        assert await _run(client, name, script) == "bluet0kdefault 440\n 400\n"
        assert (await _run(client, name, "grep ' /projected ' /proc/mounts")).startswith("tmpfs ")
        await delete_pods(client, name)
        await client.delete("configmaps", conf)
        await client.delete("secrets", creds)


async def test_pod_waits_in_container_creating_until_its_config_map_exists(cluster: Cluster) -> None:
    name, conf = unique("waits"), unique("late")
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sleep", "3600"]
            volumeMounts: [{{name: config, mountPath: /etc/config}}]
        volumes:
          - name: config
            configMap: {{name: {conf}}}
        """)
    message = f'MountVolume.SetUp failed for volume "config" : configmap "{conf}" not found'
    async with cluster.client() as client:
        await client.create_pod(pod)

        async def creating() -> objects_pb2.ContainerStatus | None:
            statuses = (await client.get_pod(name)).status.container_statuses
            return statuses[0] if statuses and statuses[0].state.waiting.message == message else None

        status = await wait_for(creating, 60, f"{name} waiting for its ConfigMap")
        assert status.state.waiting.reason == "ContainerCreating"
        assert (await client.get_pod(name)).status.phase == "Pending"
        failed = await wait_event(client, name, "FailedMount", message)
        assert failed.type == "Warning"

        await client.create(objects_pb2.ConfigMap(metadata=_meta(conf), data={"k": "here at last"}))
        running = await _running(client, name)
        assert running.status.container_statuses[0].restart_count == 0  # it never ran before
        assert await _run(client, name, "cat /etc/config/k") == "here at last"
        await delete_pods(client, name)
        await client.delete("configmaps", conf)


async def test_sub_path_expr_and_fs_group(cluster: Cluster) -> None:
    name = unique("sub")
    pod = _pod(name, """\
        securityContext: {fsGroup: 2345}
        containers:
          - name: writer
            image: BUSYBOX
            command: ["sh", "-c", "echo written-by-$POD > /mine/f; sleep 3600"]
            env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
            volumeMounts: [{name: data, mountPath: /mine, subPathExpr: "logs/$(POD)"}]
          - name: reader
            image: BUSYBOX
            command: ["sleep", "3600"]
            volumeMounts: [{name: data, mountPath: /all}]
        volumes:
          - {name: data, emptyDir: {}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)
        await _running(client, name)
        await _prints(client, name, f"cat /all/logs/{name}/f", f"written-by-{name}\n", "the writer's file",
                      container="reader")
        # fsGroup: the emptyDir is the group's (setgid, group-writable); what is made in it inherits it.
        owners = await _run(client, name, f"stat -c '%g %a' /all /all/logs/{name}/f", container="reader")
        assert owners.split("\n")[0] == "2345 2777"
        assert owners.split("\n")[1].startswith("2345 ")
        await delete_pods(client, name)


async def test_empty_dir_past_its_size_limit_evicts_the_pod(cluster: Cluster) -> None:
    name = unique("evict")
    pod = _pod(name, """\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sh", "-c", "dd if=/dev/zero of=/scratch/fill bs=1024 count=2048; sleep 3600"]
            volumeMounts: [{name: scratch, mountPath: /scratch}]
        volumes:
          - {name: scratch, emptyDir: {sizeLimit: 1Mi}}
        """)
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".'
    async with cluster.client() as client:
        await client.create_pod(pod)

        async def evicted() -> objects_pb2.Pod | None:
            current = await client.get_pod(name)
            return current if current.status.phase == "Failed" else None

        failed = await wait_for(evicted, 60, f"{name} evicted")
        assert (failed.status.reason, failed.status.message) == ("Evicted", message)
        await wait_event(client, name, "Evicted", message)
        stopped = await wait_for(
            lambda: _all_stopped(client, name), 30, f"the containers of {name} stopped"
        )
        assert stopped.status.phase == "Failed"  # never started again
        await delete_pods(client, name)


async def _all_stopped(client: Client, name: str) -> objects_pb2.Pod | None:
    pod = await client.get_pod(name)
    statuses = pod.status.container_statuses
    return pod if statuses and all(s.state.HasField("terminated") for s in statuses) else None
