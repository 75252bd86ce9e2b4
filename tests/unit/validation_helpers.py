"""Pods to validate: a valid, un-defaulted pod and accessors for its containers, volumes and mounts
(shared by test_defaults, test_validation and test_validation_updates)."""

from pymaster.api import objects_pb2


def _pod(**spec_fields) -> objects_pb2.Pod:
    """A valid, un-defaulted pod with two containers."""
    pod = objects_pb2.Pod()
    pod.metadata.name = "web"
    pod.metadata.labels["app"] = "web"
    pod.spec.containers.add(name="web", image="pykube/busybox:1.35").ports.add(container_port=80)
    pod.spec.containers.add(name="side", image="pykube/pause:3.9")
    for name, value in spec_fields.items():
        setattr(pod.spec, name, value)
    return pod


def _c(pod: objects_pb2.Pod, i: int = 0) -> objects_pb2.Container:
    return pod.spec.containers[i]


def _with_volumes(pod: objects_pb2.Pod) -> objects_pb2.Pod:
    """``pod`` plus an emptyDir "data" and a hostPath "logs", both mounted by container 0."""
    pod.spec.volumes.add(name="data").empty_dir.SetInParent()
    pod.spec.volumes.add(name="logs").host_path.path = "/var/log/web"
    _c(pod).volume_mounts.add(name="data", mount_path="/data")
    _c(pod).volume_mounts.add(name="logs", mount_path="/logs", read_only=True)
    return pod


def _v(pod: objects_pb2.Pod, i: int = 0) -> objects_pb2.Volume:
    """Volume ``i`` of the pod, after giving it the two volumes of ``_with_volumes``."""
    if not pod.spec.volumes:
        _with_volumes(pod)
    return pod.spec.volumes[i]


def _m(pod: objects_pb2.Pod, j: int = 0) -> objects_pb2.VolumeMount:
    """Volume mount ``j`` of container 0, after ``_with_volumes``."""
    _v(pod)  # gives the pod its volumes first
    return _c(pod).volume_mounts[j]
