"""Defaulting of API objects: what Kubernetes' API server fills in before validation, so every
stored object is complete and readers never guess a default themselves.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.pods import DEFAULT_GRACE_PERIOD_SECONDS, default_pull_policy


def default_pod(pod: objects_pb2.Pod) -> None:
    """Fill in the defaults Kubernetes' API server would, in place.

    apiVersion "v1", kind "Pod", namespace "default", restartPolicy "Always",
    terminationGracePeriodSeconds 30, imagePullPolicy from the image tag, port protocol "TCP",
    and under hostNetwork a port's hostPort = its containerPort. Fields already set are left alone.
    """
    pod.api_version = pod.api_version or "v1"
    pod.kind = pod.kind or "Pod"
    pod.metadata.namespace = pod.metadata.namespace or "default"
    spec = pod.spec
    spec.restart_policy = spec.restart_policy or "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_GRACE_PERIOD_SECONDS
    for container in spec.containers:
        container.image_pull_policy = container.image_pull_policy or default_pull_policy(container.image)
        for port in container.ports:
            port.protocol = port.protocol or "TCP"
            if spec.host_network and not port.host_port:
                # On the host's network a container port is a host port (Kubernetes' defaulting).
                port.host_port = port.container_port
