"""Validation of volumes and volume mounts (``pymaster.api.volume_validation`` and the mounts of
``container_validation``) with Kubernetes' rules and field paths: configMap, secret, downwardAPI
and projected sources, key-to-path items, modes, subPath / subPathExpr, mountPropagation. What the
master refuses, the agent never has to guess about."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.validation import validate_pod


def pod(*volumes: objects_pb2.Volume) -> objects_pb2.Pod:
    """A valid pod with ``volumes``, each mounted by container "web" at /<name>."""
    p = objects_pb2.Pod(metadata=objects_pb2.ObjectMeta(name="web"))
    container = p.spec.containers.add(name="web", image="pykube/busybox:1.35")
    for volume in volumes:
        p.spec.volumes.append(volume)
        container.volume_mounts.add(name=volume.name, mount_path=f"/{volume.name}")
    return p


def config_map(**fields: object) -> objects_pb2.Volume:
    fields.setdefault("name", "app-config")
    return objects_pb2.Volume(name="config", config_map=objects_pb2.ConfigMapVolumeSource(**fields))


def secret(**fields: object) -> objects_pb2.Volume:
    fields.setdefault("secret_name", "creds")
    return objects_pb2.Volume(name="creds", secret=objects_pb2.SecretVolumeSource(**fields))


def item(key: str = "k", path: str = "k", mode: int | None = None) -> objects_pb2.KeyToPath:
    kp = objects_pb2.KeyToPath(key=key, path=path)
    if mode is not None:
        kp.mode = mode
    return kp


def field(path: str, field_path: str, api_version: str = "") -> objects_pb2.DownwardAPIVolumeFile:
    selector = objects_pb2.ObjectFieldSelector(field_path=field_path, api_version=api_version)
    return objects_pb2.DownwardAPIVolumeFile(path=path, field_ref=selector)


def resource(
    path: str, name: str, container: str = "web", divisor: str = ""
) -> objects_pb2.DownwardAPIVolumeFile:
    selector = objects_pb2.ResourceFieldSelector(container_name=container, resource=name, divisor=divisor)
    return objects_pb2.DownwardAPIVolumeFile(path=path, resource_field_ref=selector)


def downward(*files: objects_pb2.DownwardAPIVolumeFile, **fields: object) -> objects_pb2.Volume:
    source = objects_pb2.DownwardAPIVolumeSource(items=files, **fields)
    return objects_pb2.Volume(name="info", downward_api=source)


def projected(*sources: objects_pb2.VolumeProjection, **fields: object) -> objects_pb2.Volume:
    source = objects_pb2.ProjectedVolumeSource(sources=sources, **fields)
    return objects_pb2.Volume(name="all", projected=source)


def cm_source(name: str = "app-config", *items: objects_pb2.KeyToPath) -> objects_pb2.VolumeProjection:
    return objects_pb2.VolumeProjection(config_map=objects_pb2.ConfigMapProjection(name=name, items=items))


def secret_source(name: str = "creds", *items: objects_pb2.KeyToPath) -> objects_pb2.VolumeProjection:
    return objects_pb2.VolumeProjection(secret=objects_pb2.SecretProjection(name=name, items=items))


VALID = [
    config_map(),
    config_map(items=[item("game.properties", "conf/game", 0o400), item("ui", "ui")], default_mode=0o777,
               optional=True),
    secret(default_mode=0, items=[item("user", "user")]),
    downward(field("labels", "metadata.labels"), field("tier", "metadata.labels['tier']", "v1"),
             field("a", "metadata.annotations['Example.com/Build']"), field("uid", "metadata.uid"),
             resource("cpu", "limits.cpu", divisor="1m"), resource("mem", "requests.memory", divisor="1Mi"),
             default_mode=0o644),
    projected(cm_source("app-config", item("a", "a")), secret_source("creds", item("b", "dir/b")),
              objects_pb2.VolumeProjection(downward_api=objects_pb2.DownwardAPIProjection(
                  items=[field("name", "metadata.name")])), default_mode=0o440),
    projected(),
]


@pytest.mark.parametrize("volume", VALID)
def test_valid_volumes(volume: objects_pb2.Volume) -> None:
    validate_pod(pod(volume))


def _mutated(change: Callable[[objects_pb2.Pod], object], *volumes: objects_pb2.Volume) -> objects_pb2.Pod:
    p = pod(*volumes)
    change(p)
    return p


INVALID = [
    (pod(config_map(name="")), "spec.volumes[0].configMap.name: required"),
    (pod(config_map(name="App")), 'spec.volumes[0].configMap.name: invalid value "App": must be a lowercase'),
    (pod(config_map(default_mode=0o1000)),
     "spec.volumes[0].configMap.defaultMode: invalid value 512: must be a number between 0 and 0777 (octal)"),
    (pod(config_map(items=[item(mode=-1)])), "spec.volumes[0].configMap.items[0].mode: invalid value -1"),
    (pod(config_map(items=[item(key="")])), "spec.volumes[0].configMap.items[0].key: required"),
    (pod(config_map(items=[item(path="")])), "spec.volumes[0].configMap.items[0].path: required"),
    (pod(config_map(items=[item(path="/etc/x")])),
     'spec.volumes[0].configMap.items[0].path: invalid value "/etc/x": must be a relative path'),
    (pod(config_map(items=[item(path="a/../../x")])),
     "spec.volumes[0].configMap.items[0].path: invalid value \"a/../../x\": must not contain '..'"),
    (pod(config_map(items=[item(path="..data")])),
     "spec.volumes[0].configMap.items[0].path: invalid value \"..data\": must not start with '..'"),
    (pod(config_map(items=[item(path="a" * 256)])), "file names must have at most 255 bytes"),
    (pod(config_map(items=[item("a", "x"), item("b", "x")])),
     'spec.volumes[0].configMap.items[1].path: conflicting duplicate paths "x"'),
    (pod(config_map(items=[item("a", "x"), item("b", "x/y")])),
     'spec.volumes[0].configMap.items[1].path: invalid value "x/y": "x" is a file'),
    (pod(config_map(items=[item("a", "x/y"), item("b", "x")])),
     'spec.volumes[0].configMap.items[1].path: invalid value "x": other files are inside it'),
    (pod(secret(secret_name="")), "spec.volumes[0].secret.secretName: required"),
    (pod(secret(items=[item(path="/x")])), "spec.volumes[0].secret.items[0].path"),
    (pod(downward(objects_pb2.DownwardAPIVolumeFile(path="x"))),
     "spec.volumes[0].downwardAPI.items[0]: one of fieldRef and resourceFieldRef is required"),
    (pod(downward(field("x", "spec.nodeName"))),
     'spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: unsupported value "spec.nodeName"; supported: '
     "metadata.annotations, metadata.labels, metadata.name, metadata.namespace, metadata.uid"),
    (pod(downward(field("x", "status.podIP"))), 'unsupported value "status.podIP"'),
    (pod(downward(field("x", ""))), "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: required"),
    (pod(downward(field("x", "metadata.labels['-bad-']"))),
     "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: invalid key \"-bad-\""),
    (pod(downward(field("x", "metadata.name", "v2"))),
     'spec.volumes[0].downwardAPI.items[0].fieldRef.apiVersion: unsupported value "v2"; supported: v1'),
    (pod(downward(field("x", "metadata.name"), field("x", "metadata.uid"))),
     'spec.volumes[0].downwardAPI.items[1].path: conflicting duplicate paths "x"'),
    (pod(downward(resource("x", "limits.cpu", container=""))),
     "spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName: required"),
    (pod(downward(resource("x", "limits.cpu", container="db"))),
     'resourceFieldRef.containerName: container "db" not found in the pod'),
    (pod(downward(resource("x", "limits.gpu"))),
     'spec.volumes[0].downwardAPI.items[0].resourceFieldRef.resource: unsupported value "limits.gpu"'),
    (pod(downward(resource("x", "limits.cpu", divisor="1Mi"))),
     "resourceFieldRef.divisor: invalid value \"1Mi\": only divisor's values 1m and 1 are supported with the "
     "cpu resource"),
    (pod(downward(resource("x", "limits.memory", divisor="3"))),
     'invalid value "3": only divisor\'s values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are '
     "supported with the memory resource"),
    (pod(downward(resource("x", "limits.memory", divisor="lots"))), 'divisor: invalid quantity "lots"'),
    (pod(downward(objects_pb2.DownwardAPIVolumeFile(
        path="x", field_ref=objects_pb2.ObjectFieldSelector(field_path="metadata.name"),
        resource_field_ref=objects_pb2.ResourceFieldSelector(container_name="web", resource="limits.cpu"),
    ))), "downwardAPI.items[0]: fieldRef and resourceFieldRef can not be specified simultaneously"),
    (pod(downward(default_mode=0o1000)), "spec.volumes[0].downwardAPI.defaultMode: invalid value 512"),
    (pod(projected(objects_pb2.VolumeProjection())),
     "spec.volumes[0].projected.sources[0]: must specify one of configMap, secret, downwardAPI"),
    (pod(projected(objects_pb2.VolumeProjection(
        config_map=objects_pb2.ConfigMapProjection(name="a"),
        secret=objects_pb2.SecretProjection(name="b"),
    ))),
     "spec.volumes[0].projected.sources[0]: may not specify more than 1 volume type"),
    (pod(projected(objects_pb2.VolumeProjection(
        service_account_token=objects_pb2.ServiceAccountTokenProjection(path="token")))),
     "projected.sources[0].serviceAccountToken: not supported: pykube has no service accounts"),
    (pod(projected(cm_source(""))), "spec.volumes[0].projected.sources[0].configMap.name: required"),
    (pod(projected(secret_source("creds", item("k", "/abs")))),
     'projected.sources[0].secret.items[0].path: invalid value "/abs": must be a relative path'),
    (pod(projected(cm_source("a", item("k", "same")), secret_source("b", item("k", "same")))),
     'spec.volumes[0].projected.sources[1].secret.items[0].path: conflicting duplicate paths "same"'),
    (pod(projected(default_mode=0o1000)), "spec.volumes[0].projected.defaultMode: invalid value 512"),
    (pod(objects_pb2.Volume(name="two", config_map=objects_pb2.ConfigMapVolumeSource(name="a"),
                            secret=objects_pb2.SecretVolumeSource(secret_name="b"))),
     "spec.volumes[0]: exactly one volume source is required"),
]


@pytest.mark.parametrize(("bad", "error"), INVALID)
def test_invalid_volumes(bad: objects_pb2.Pod, error: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_pod(bad)
    assert error in str(err.value)


MOUNT = "spec.containers[0].volumeMounts[0]"


def mount(**fields: object) -> objects_pb2.Pod:
    """A pod whose container mounts an emptyDir "data" with ``fields``."""
    p = pod(objects_pb2.Volume(name="data", empty_dir=objects_pb2.EmptyDirVolumeSource()))
    p.spec.containers[0].volume_mounts[0].MergeFrom(objects_pb2.VolumeMount(**fields))
    return p


@pytest.mark.parametrize(
    "fields",
    [
        {"sub_path": "a/b"},
        {"sub_path": "a..b"},  # ".." only as a whole element is a step up
        {"sub_path_expr": "$(POD_NAME)/logs"},
        {"mount_propagation": "None"},
    ],
)
def test_valid_mounts(fields: dict[str, str]) -> None:
    validate_pod(mount(**fields))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"sub_path": "/etc"}, f'{MOUNT}.subPath: invalid value "/etc": must be a relative path'),
        ({"sub_path": "a/../.."}, f"{MOUNT}.subPath: invalid value \"a/../..\": must not contain '..'"),
        ({"sub_path_expr": "/$(X)"}, f'{MOUNT}.subPathExpr: invalid value "/$(X)": must be a relative path'),
        ({"sub_path_expr": "$(X)/.."}, "subPathExpr: invalid value \"$(X)/..\": must not contain '..'"),
        ({"sub_path": "a", "sub_path_expr": "b"},
         f"{MOUNT}.subPathExpr: subPathExpr and subPath are mutually exclusive"),
        ({"sub_path": "a\x00b"}, "subPath: must not contain a NUL character"),
        ({"mount_propagation": "Shared"},
         'spec.containers[0].volumeMounts[0].mountPropagation: unsupported value "Shared"; '
         "supported: None, HostToContainer, Bidirectional"),
        ({"mount_propagation": "Bidirectional"},
         "mountPropagation: Bidirectional mount propagation is available only to privileged containers"),
        ({"mount_propagation": "HostToContainer"},
         "mountPropagation: \"HostToContainer\" is not supported: pykube mounts volumes with private"),
    ],
)
def test_invalid_mounts(fields: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_pod(mount(**fields))
    assert error in str(err.value)
