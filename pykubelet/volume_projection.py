"""What the files of a configMap, secret, downwardAPI or projected volume hold (the kubelet's
``MakePayload``/``CollectData`` of those volume plugins): path -> (bytes, mode), for the atomic
writer (``pykubelet.atomic_writer``).

As in Kubernetes:
- Without ``items`` every key of the object becomes a file named after it; with ``items`` only
  those keys, at their paths. A key the object does not have fails the volume (``configmap
  references non-existent config key: k``) unless the source is ``optional``.
- A missing object fails the volume (``configmap "app" not found``) unless ``optional: true``:
  then it contributes no file (an empty volume, or nothing from that projected source).
- Modes: the item's ``mode``, else the volume's ``defaultMode``, else 0644.
- downwardAPI files hold a ``fieldRef`` (metadata only; whole label and annotation maps as
  ``key="value"`` lines) or a ``resourceFieldRef`` (``pykubelet.downward``).
- A projected volume merges its sources in order (a later file on the same path wins).

A failure is a ``VolumeMountError`` whose message is the kubelet's FailedMount event text
(``MountVolume.SetUp failed for volume "config" : configmap "app" not found``); its reason keeps
the container waiting in ``ContainerCreating``, and the next sync tries again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pykubelet import downward
from pykubelet.atomic_writer import FileProjection
from pykubelet.config_objects import ConfigObjects
from pykubelet.runtime.base import ContainerRuntimeError
from pymaster.api import errors, objects_pb2

DEFAULT_MODE = 0o644
_WRITTEN_SOURCES = ("config_map", "secret", "downward_api", "projected")


class VolumeMountError(ContainerRuntimeError):
    """A volume could not be set up for a container (its ConfigMap or Secret is missing, a key
    is missing, the master could not be asked): the container waits in ContainerCreating, as in
    Kubernetes; ``event_reason`` is the reason of the Warning event the kubelet records."""

    reason = "ContainerCreating"
    event_reason = "FailedMount"


class _Failed(Exception):
    """One source's problem, before it is phrased as the volume's FailedMount message."""


def written_by_agent(volume: objects_pb2.Volume) -> bool:
    """Whether the volume's files are written by the agent (configMap, secret, downwardAPI,
    projected), so containers mount it read-only and it is refreshed while the pod runs."""
    return any(volume.HasField(name) for name in _WRITTEN_SOURCES)


def kept_in_memory(volume: objects_pb2.Volume) -> bool:
    """Whether the volume lives in memory (tmpfs) as the kubelet keeps it: secret, downwardAPI and
    projected volumes (the last may hold secrets); a configMap volume lives on disk."""
    return volume.HasField("secret") or volume.HasField("downward_api") or volume.HasField("projected")


async def collect_payload(
    volume: objects_pb2.Volume, pod: objects_pb2.Pod, objects: ConfigObjects | None
) -> dict[str, FileProjection]:
    """The files of ``volume`` for ``pod`` now (see the module docstring).

    Raises:
        VolumeMountError: a missing object or key (not optional), a downward API value that
            cannot be computed, the master not answering.
    """
    try:
        return await _payload(volume, pod, objects)
    except _Failed as err:
        raise VolumeMountError(f'MountVolume.SetUp failed for volume "{volume.name}" : {err}') from None


async def _payload(
    volume: objects_pb2.Volume, pod: objects_pb2.Pod, objects: ConfigObjects | None
) -> dict[str, FileProjection]:
    if volume.HasField("config_map"):
        source = volume.config_map
        mode = _mode(source, DEFAULT_MODE)
        return await _object_files(
            pod, objects, "configmap", source.name, source.items, mode, _optional(source)
        )
    if volume.HasField("secret"):
        source = volume.secret
        mode = _mode(source, DEFAULT_MODE)
        return await _object_files(
            pod, objects, "secret", source.secret_name, source.items, mode, _optional(source)
        )
    if volume.HasField("downward_api"):
        return _downward_files(pod, volume.downward_api.items, _mode(volume.downward_api, DEFAULT_MODE))
    mode = _mode(volume.projected, DEFAULT_MODE)
    files: dict[str, FileProjection] = {}
    for projection in volume.projected.sources:
        if projection.HasField("config_map"):
            cm = projection.config_map
            files.update(
                await _object_files(pod, objects, "configmap", cm.name, cm.items, mode, _optional(cm))
            )
        elif projection.HasField("secret"):
            sec = projection.secret
            files.update(
                await _object_files(pod, objects, "secret", sec.name, sec.items, mode, _optional(sec))
            )
        elif projection.HasField("downward_api"):
            files.update(_downward_files(pod, projection.downward_api.items, mode))
        else:  # refused at apply; never half-honoured here
            raise _Failed("serviceAccountToken projections are not supported")
    return files


async def _object_files(
    pod: objects_pb2.Pod,
    objects: ConfigObjects | None,
    kind: str,
    name: str,
    items: Sequence[objects_pb2.KeyToPath],
    mode: int,
    optional: bool,
) -> dict[str, FileProjection]:
    """The files of ConfigMap (``kind`` "configmap") or Secret ("secret") ``name``'s keys."""
    if objects is None:
        raise _Failed(f"this agent cannot read {'ConfigMaps' if kind == 'configmap' else 'Secrets'}")
    try:
        if kind == "configmap":
            found = await objects.config_map(pod.metadata.namespace, name)
        else:
            found = await objects.secret(pod.metadata.namespace, name)
    except errors.ApiError as err:
        raise _Failed(f'failed to get {kind} "{name}": {err}') from None
    if found is None:
        if optional:
            return {}
        raise _Failed(f'{kind} "{name}" not found')
    if isinstance(found, objects_pb2.ConfigMap):
        data = {key: value.encode() for key, value in found.data.items()}
        data.update(found.binary_data)
        return _key_files(data, items, mode, optional, "configmap references non-existent config key")
    return _key_files(dict(found.data), items, mode, optional, "secret references non-existent secret key")


def _key_files(
    data: Mapping[str, bytes],
    items: Sequence[objects_pb2.KeyToPath],
    mode: int,
    optional: bool,
    missing: str,
) -> dict[str, FileProjection]:
    if not items:
        return {key: FileProjection(value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise _Failed(f"{missing}: {item.key}")
        files[item.path] = FileProjection(data[item.key], _mode(item, mode, "mode"))
    return files


def _downward_files(
    pod: objects_pb2.Pod, items: Sequence[objects_pb2.DownwardAPIVolumeFile], mode: int
) -> dict[str, FileProjection]:
    files = {}
    for item in items:
        try:
            if item.HasField("field_ref"):
                # Volumes take metadata fields only (validated), which need no addresses.
                value = downward.field_value(pod, item.field_ref.field_path, "", "")
            else:
                ref = item.resource_field_ref
                value = downward.resource_value(pod, ref.container_name, ref.resource, ref.divisor)
        except ValueError as err:
            raise _Failed(f"unable to get the value of {item.path}: {err}") from None
        files[item.path] = FileProjection(value.encode(), _mode(item, mode, "mode"))
    return files


def _mode(message: object, default: int, field: str = "default_mode") -> int:
    return getattr(message, field) if message.HasField(field) else default  # type: ignore[attr-defined]


def _optional(source: object) -> bool:
    return source.HasField("optional") and source.optional  # type: ignore[attr-defined]
