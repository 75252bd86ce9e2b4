"""Defaulting of API objects: what Kubernetes' API server fills in before validation, so every
stored object is complete and readers never guess a default themselves.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.dns_validation import CLUSTER_FIRST
from pymaster.api.pods import DEFAULT_GRACE_PERIOD_SECONDS, default_pull_policy

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def default_pod(pod: objects_pb2.Pod) -> None:
    """Fill in the defaults Kubernetes' API server would, in place.

    apiVersion "v1", kind "Pod", namespace "default", restartPolicy "Always",
    terminationGracePeriodSeconds 30, serviceAccountName "default", dnsPolicy "ClusterFirst",
    enableServiceLinks true; for every container (init
    ones too): imagePullPolicy from the image tag, port protocol "TCP" (and under hostNetwork a
    port's hostPort = its containerPort), terminationMessagePath /dev/termination-log and policy
    File, a request equal to the limit for every resource limited but not requested (so
    ``-o yaml`` shows what the scheduler counts, as on Kubernetes), and the probes' timeoutSeconds
    1, periodSeconds 10, successThreshold 1, failureThreshold 3, httpGet scheme HTTP and path "/";
    apiVersion "v1" of every fieldRef (env, downwardAPI and projected volumes). Fields already set
    are left alone.
    """
    pod.api_version = pod.api_version or "v1"
    pod.kind = pod.kind or "Pod"
    pod.metadata.namespace = pod.metadata.namespace or "default"
    spec = pod.spec
    spec.restart_policy = spec.restart_policy or "Always"
    spec.service_account_name = spec.service_account_name or "default"
    spec.dns_policy = spec.dns_policy or CLUSTER_FIRST
    if not spec.HasField("enable_service_links"):
        spec.enable_service_links = True
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_GRACE_PERIOD_SECONDS
    for container in [*spec.init_containers, *spec.containers]:
        _default_container(container, spec.host_network)
    for volume in spec.volumes:
        items = list(volume.downward_api.items)
        for source in volume.projected.sources:
            items.extend(source.downward_api.items)
        for item in items:
            if item.HasField("field_ref"):
                item.field_ref.api_version = item.field_ref.api_version or "v1"


def _default_container(container: objects_pb2.Container, host_network: bool) -> None:
    resources = container.resources
    for name, limit in resources.limits.items():
        if name not in resources.requests:
            resources.requests[name] = limit
    container.image_pull_policy = container.image_pull_policy or default_pull_policy(container.image)
    for var in container.env:
        if var.value_from.HasField("field_ref"):
            var.value_from.field_ref.api_version = var.value_from.field_ref.api_version or "v1"
    if not container.termination_message_path:
        container.termination_message_path = DEFAULT_TERMINATION_MESSAGE_PATH
    container.termination_message_policy = container.termination_message_policy or "File"
    for port in container.ports:
        port.protocol = port.protocol or "TCP"
        if host_network and not port.host_port:
            # On the host's network a container port is a host port (Kubernetes' defaulting).
            port.host_port = port.container_port
    for field in ("liveness_probe", "readiness_probe", "startup_probe"):
        if container.HasField(field):
            _default_probe(getattr(container, field))
    for field in ("post_start", "pre_stop"):
        if container.lifecycle.HasField(field):
            _default_http_get(getattr(container.lifecycle, field))


def _default_probe(probe: objects_pb2.Probe) -> None:
    probe.timeout_seconds = probe.timeout_seconds or 1
    probe.period_seconds = probe.period_seconds or 10
    probe.success_threshold = probe.success_threshold or 1
    probe.failure_threshold = probe.failure_threshold or 3
    _default_http_get(probe)


def _default_http_get(handler: objects_pb2.Probe | objects_pb2.LifecycleHandler) -> None:
    if handler.HasField("http_get"):
        handler.http_get.scheme = handler.http_get.scheme or "HTTP"
        handler.http_get.path = handler.http_get.path or "/"
