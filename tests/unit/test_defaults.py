"""Pod defaulting (pymaster.api.defaults), the default image pull policy and a pod's resource requests
(pymaster.api.pods)."""

import pytest
from agent_builders import make_pod
from validation_helpers import _c, _pod

from pymaster.api import objects_pb2
from pymaster.api.defaults import default_pod
from pymaster.api.pods import default_pull_policy, grace_period_seconds, pod_requests
from pymaster.api.validation import validate_pod

# ---- defaulting ----


def test_default_pod_fills_every_default():
    pod = _pod()
    _c(pod, 1).image = "pykube/pause"
    default_pod(pod)
    assert (pod.api_version, pod.kind, pod.metadata.namespace) == ("v1", "Pod", "default")
    assert pod.spec.restart_policy == "Always"
    assert (pod.spec.dns_policy, pod.spec.enable_service_links) == ("ClusterFirst", True)
    assert pod.spec.HasField("termination_grace_period_seconds")
    assert pod.spec.termination_grace_period_seconds == 30
    assert [c.image_pull_policy for c in pod.spec.containers] == ["IfNotPresent", "Always"]
    assert _c(pod).ports[0].protocol == "TCP"
    validate_pod(pod)


def test_default_pod_keeps_what_is_set():
    pod = _pod(restart_policy="Never", termination_grace_period_seconds=0, dns_policy="Default",
               enable_service_links=False)
    pod.metadata.namespace = "team"
    _c(pod).image_pull_policy = "Never"
    _c(pod).ports[0].protocol = "UDP"
    default_pod(pod)
    assert (pod.metadata.namespace, pod.spec.restart_policy) == ("team", "Never")
    assert pod.spec.termination_grace_period_seconds == 0
    assert (pod.spec.dns_policy, pod.spec.enable_service_links) == ("Default", False)
    assert (_c(pod).image_pull_policy, _c(pod).ports[0].protocol) == ("Never", "UDP")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.35", "IfNotPresent"),
        ("localhost:5000/busybox", "Always"),  # the colon belongs to the registry host
        ("localhost:5000/busybox:1.35", "IfNotPresent"),
        ("busybox@sha256:abcd", "IfNotPresent"),
        ("busybox:latest@sha256:abcd", "Always"),
        ("registry.example.com/team/app:v2", "IfNotPresent"),
    ],
)
def test_default_pull_policy(image, policy):
    assert default_pull_policy(image) == policy


def test_default_pod_host_network_sets_host_ports():
    pod = _pod(host_network=True)
    _c(pod).ports.add(container_port=9090, host_port=9090)
    default_pod(pod)
    assert [(p.container_port, p.host_port) for p in _c(pod).ports] == [(80, 80), (9090, 9090)]
    validate_pod(pod)
    plain = _pod()
    default_pod(plain)
    assert _c(plain).ports[0].host_port == 0


# ---- requests ----


def _resources(pod: objects_pb2.Pod, i: int, requests: dict, limits: dict) -> None:
    _c(pod, i).resources.requests.update(requests)
    _c(pod, i).resources.limits.update(limits)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (({}, {}), ({}, {}), (0, 0)),
        (({"cpu": "250m", "memory": "64Mi"}, {}), ({}, {}), (250, 64 * 2**20)),
        (({"cpu": "250m"}, {}), ({"cpu": "0.5", "memory": "1Gi"}, {}), (750, 2**30)),
        (({}, {"cpu": "1", "memory": "128Mi"}), ({}, {}), (1000, 128 * 2**20)),  # limits act as requests
        (({"cpu": "100m"}, {"cpu": "1", "memory": "1Gi"}), ({}, {}), (100, 2**30)),  # per resource
        (({"memory": "1e3"}, {}), ({"cpu": "1.5", "ephemeral-storage": "1Gi"}, {}), (1500, 1000)),
    ],
)
def test_pod_requests(first, second, expected):
    pod = _pod()
    _resources(pod, 0, *first)
    _resources(pod, 1, *second)
    assert pod_requests(pod) == expected


def test_pod_requests_rejects_bad_quantities():
    pod = _pod()
    _c(pod).resources.requests["cpu"] = "lots"
    with pytest.raises(ValueError):
        pod_requests(pod)


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (make_pod(), 30),
        (make_pod(grace=5), 5),
        (make_pod(grace=5, deleting=True, deletion_grace=0), 0),
        (make_pod(grace=5, deletion_grace=1), 5),  # not being deleted: the spec's
    ],
)
def test_grace_period_seconds(pod, expected):
    assert grace_period_seconds(pod) == expected
