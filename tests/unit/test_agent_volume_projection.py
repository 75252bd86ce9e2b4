"""configMap, secret, downwardAPI and projected volumes in the volume manager, without an engine:
what their files hold (items, modes, optional sources, the kubelet's FailedMount messages), where
they live (a tmpfs for secrets, asked of a stubbed mount), read-only mounts, refresh of running
pods, and fsGroup ownership (the agent runs as root in tests, so chown is real). The real mounts
and containers are in tests/e2e/test_cluster_config_volumes.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pykubelet import volumes as vol
from pykubelet.runtime.base import Mount
from pykubelet.volume_projection import VolumeMountError, collect_payload
from pymaster.api import errors, objects_pb2

UID = "u1"


class FakeObjects:
    """ConfigMaps and Secrets by name (namespace "default"); ``down``: the master is away."""

    def __init__(self) -> None:
        self.config_maps: dict[str, objects_pb2.ConfigMap] = {}
        self.secrets: dict[str, objects_pb2.Secret] = {}
        self.down = False

    async def config_map(self, namespace: str, name: str) -> objects_pb2.ConfigMap | None:
        if self.down:
            raise errors.Unavailable("master unreachable")
        assert namespace == "default"
        return self.config_maps.get(name)

    async def secret(self, namespace: str, name: str) -> objects_pb2.Secret | None:
        if self.down:
            raise errors.Unavailable("master unreachable")
        return self.secrets.get(name)


@pytest.fixture
def objects() -> FakeObjects:
    fake = FakeObjects()
    config = objects_pb2.ConfigMap(data={"game.properties": "lives=3", "ui": "color=red"})
    config.binary_data["blob"] = b"\x00\x01"
    fake.config_maps["app"] = config
    fake.secrets["creds"] = objects_pb2.Secret(data={"user": b"admin", "pass": b"s3cr3t"})
    return fake


@pytest.fixture
def tmpfs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records tmpfs mounts instead of making them (the directory stays a plain one)."""
    mounted: list[str] = []
    monkeypatch.setattr(vol, "mount_type", lambda path: "tmpfs" if path in mounted else None)
    monkeypatch.setattr(vol, "mount_tmpfs", lambda path, options: mounted.append(path))
    return mounted


def pod_with(*volumes: objects_pb2.Volume, labels: dict[str, str] | None = None) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="p", namespace="default", uid=UID))
    pod.metadata.labels.update(labels or {})
    pod.spec.volumes.extend(volumes)
    container = pod.spec.containers.add(name="main", image="pykube/busybox:1.35")
    container.resources.limits["memory"] = "64Mi"
    for volume in volumes:
        container.volume_mounts.add(name=volume.name, mount_path=f"/{volume.name}")
    return pod


def visible(root: Path) -> dict[str, tuple[bytes, int]]:
    """Visible file -> (contents, mode), as a container reading the volume sees them."""
    seen = {}
    for current, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(current) / name
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(".."):
                seen[relative] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return seen


def cm_volume(name: str = "config", cm: str = "app", **fields: object) -> objects_pb2.Volume:
    return objects_pb2.Volume(name=name, config_map=objects_pb2.ConfigMapVolumeSource(name=cm, **fields))


def secret_volume(name: str = "s", secret: str = "creds", **fields: object) -> objects_pb2.Volume:
    return objects_pb2.Volume(name=name, secret=objects_pb2.SecretVolumeSource(secret_name=secret, **fields))


def field_file(path: str, field_path: str, **fields: object) -> objects_pb2.DownwardAPIVolumeFile:
    selector = objects_pb2.ObjectFieldSelector(field_path=field_path)
    return objects_pb2.DownwardAPIVolumeFile(path=path, field_ref=selector, **fields)


def key(k: str, path: str, mode: int | None = None) -> objects_pb2.KeyToPath:
    item = objects_pb2.KeyToPath(key=k, path=path)
    if mode is not None:
        item.mode = mode
    return item


async def test_config_map_volume_all_keys(tmp_path: Path, objects: FakeObjects, tmpfs: list[str]) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    pod = pod_with(cm_volume())
    mounts = await manager.mounts(pod, pod.spec.containers[0])
    root = tmp_path / "pods" / UID / "volumes" / "config"
    assert mounts == [Mount("/config", str(root), read_only=True)]  # read-only whatever the mount says
    assert visible(root) == {
        "game.properties": (b"lives=3", 0o644), "ui": (b"color=red", 0o644), "blob": (b"\x00\x01", 0o644),
    }
    assert tmpfs == []  # a configMap volume lives on disk, as in Kubernetes


async def test_items_and_modes(tmp_path: Path, objects: FakeObjects, tmpfs: list[str]) -> None:
    items = [key("game.properties", "conf/game", 0o400), key("ui", "ui.cfg")]
    volume = cm_volume(items=items, default_mode=0o640)
    payload = await collect_payload(volume, pod_with(volume), objects)  # type: ignore[arg-type]
    assert {path: (f.data, oct(f.mode)) for path, f in payload.items()} == {
        "conf/game": (b"lives=3", "0o400"), "ui.cfg": (b"color=red", "0o640"),
    }


async def test_secret_volume_lives_in_tmpfs(tmp_path: Path, objects: FakeObjects, tmpfs: list[str]) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    pod = pod_with(secret_volume(default_mode=0o400))
    await manager.mounts(pod, pod.spec.containers[0])
    root = tmp_path / "pods" / UID / "volumes" / "s"
    assert tmpfs == [os.path.join(os.path.realpath(tmp_path / "pods"), UID, "volumes", "s")]
    assert visible(root) == {"user": (b"admin", 0o400), "pass": (b"s3cr3t", 0o400)}


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (cm_volume(cm="missing"), 'configmap "missing" not found'),
        (cm_volume(items=[key("nope", "x")]), "configmap references non-existent config key: nope"),
        (secret_volume(secret="gone"), 'secret "gone" not found'),
        (secret_volume(items=[key("k", "k")]), "secret references non-existent secret key: k"),
    ],
)
async def test_missing_objects_and_keys(
    tmp_path: Path, objects: FakeObjects, tmpfs: list[str], volume: objects_pb2.Volume, message: str
) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    pod = pod_with(volume)
    with pytest.raises(VolumeMountError) as err:
        await manager.mounts(pod, pod.spec.containers[0])
    assert err.value.message == f'MountVolume.SetUp failed for volume "{volume.name}" : {message}'
    assert err.value.reason == "ContainerCreating"  # the container waits, as in Kubernetes
    assert not (tmp_path / "pods").exists()  # nothing was set up


async def test_optional_sources(tmp_path: Path, objects: FakeObjects, tmpfs: list[str]) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    missing = cm_volume(name="a", cm="missing", optional=True)
    lacking = cm_volume(name="b", items=[key("nope", "x"), key("ui", "ui")], optional=True)
    pod = pod_with(missing, lacking)
    await manager.mounts(pod, pod.spec.containers[0])
    assert visible(tmp_path / "pods" / UID / "volumes" / "a") == {}  # an empty volume
    assert visible(tmp_path / "pods" / UID / "volumes" / "b") == {"ui": (b"color=red", 0o644)}


async def test_master_away(objects: FakeObjects) -> None:
    objects.down = True
    with pytest.raises(VolumeMountError, match='failed to get configmap "app": master unreachable'):
        await collect_payload(cm_volume(), pod_with(cm_volume()), objects)  # type: ignore[arg-type]
    with pytest.raises(VolumeMountError, match="this agent cannot read ConfigMaps"):
        await collect_payload(cm_volume(), pod_with(cm_volume()), None)


def downward_volume() -> objects_pb2.Volume:
    source = objects_pb2.DownwardAPIVolumeSource(default_mode=0o600)
    source.items.extend([
        field_file("labels", "metadata.labels"),
        field_file("name", "metadata.name", mode=0o444),
        field_file("tier", "metadata.labels['tier']"),
    ])
    source.items.add(
        path="mem", resource_field_ref=objects_pb2.ResourceFieldSelector(
            container_name="main", resource="limits.memory", divisor="1Mi"
        )
    )
    return objects_pb2.Volume(name="info", downward_api=source)


async def test_downward_api_volume(tmp_path: Path, tmpfs: list[str]) -> None:
    manager = vol.PodVolumes(tmp_path / "pods")
    pod = pod_with(downward_volume(), labels={"tier": "web", "app": 'say "hi"'})
    await manager.mounts(pod, pod.spec.containers[0])
    root = tmp_path / "pods" / UID / "volumes" / "info"
    assert visible(root) == {
        "labels": (b'app="say \\"hi\\""\ntier="web"', 0o600),
        "name": (b"p", 0o444),
        "tier": (b"web", 0o600),
        "mem": (b"64", 0o600),
    }
    assert len(tmpfs) == 1  # downwardAPI volumes stay in memory, as in Kubernetes


async def test_projected_volume_merges_sources(
    tmp_path: Path, objects: FakeObjects, tmpfs: list[str]
) -> None:
    source = objects_pb2.ProjectedVolumeSource(default_mode=0o440)
    source.sources.add(config_map=objects_pb2.ConfigMapProjection(name="app", items=[key("ui", "ui")]))
    user = key("user", "creds/user", 0o400)
    source.sources.add(secret=objects_pb2.SecretProjection(name="creds", items=[user]))
    source.sources.add(secret=objects_pb2.SecretProjection(name="absent", optional=True))
    namespace = field_file("ns", "metadata.namespace")
    source.sources.add(downward_api=objects_pb2.DownwardAPIProjection(items=[namespace]))
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    pod = pod_with(objects_pb2.Volume(name="all", projected=source))
    await manager.mounts(pod, pod.spec.containers[0])
    assert visible(tmp_path / "pods" / UID / "volumes" / "all") == {
        "ui": (b"color=red", 0o440), "creds/user": (b"admin", 0o400), "ns": (b"default", 0o440),
    }
    assert len(tmpfs) == 1


async def test_refresh_updates_only_set_up_volumes(
    tmp_path: Path, objects: FakeObjects, tmpfs: list[str]
) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    pod = pod_with(cm_volume(), downward_volume(), labels={"tier": "web"})
    assert await manager.refresh(pod) == []  # nothing set up yet: nothing to do
    assert not (tmp_path / "pods").exists()
    await manager.mounts(pod, pod.spec.containers[0])
    objects.config_maps["app"] = objects_pb2.ConfigMap(data={"ui": "color=blue"})
    pod.metadata.labels["tier"] = "db"
    assert await manager.refresh(pod) == []
    volumes = tmp_path / "pods" / UID / "volumes"
    assert visible(volumes / "config") == {"ui": (b"color=blue", 0o644)}  # the other keys went
    assert visible(volumes / "info")["tier"] == (b"db", 0o600)
    del objects.config_maps["app"]
    assert await manager.refresh(pod) == [
        'MountVolume.SetUp failed for volume "config" : configmap "app" not found'
    ]
    assert visible(volumes / "config") == {"ui": (b"color=blue", 0o644)}  # kept, as in Kubernetes


async def test_fs_group_ownership(tmp_path: Path, objects: FakeObjects, tmpfs: list[str]) -> None:
    manager = vol.PodVolumes(tmp_path / "pods", objects=objects)
    secret = secret_volume(default_mode=0o400)
    scratch = objects_pb2.Volume(name="scratch", empty_dir=objects_pb2.EmptyDirVolumeSource())
    pod = pod_with(secret, scratch)
    pod.spec.security_context.fs_group = 2345
    await manager.mounts(pod, pod.spec.containers[0])
    volumes = tmp_path / "pods" / UID / "volumes"
    user = volumes / "s" / os.readlink(volumes / "s" / "..data") / "user"
    assert (user.stat().st_gid, stat.S_IMODE(user.stat().st_mode)) == (2345, 0o440)  # 0400 | group read
    root = (volumes / "s").stat()
    assert root.st_gid == 2345 and root.st_mode & stat.S_ISGID
    empty = (volumes / "scratch").stat()
    assert (empty.st_gid, stat.S_IMODE(empty.st_mode)) == (2345, 0o2777)
