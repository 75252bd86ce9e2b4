"""Validation of resources (pymaster.api.resource_validation): containers' extended resources,
hugepages and reserved names, the order of checks after defaulting, pod-level resources, and the
extended resources of a node's status."""

from __future__ import annotations

import pytest
from validation_helpers import _c, _pod

from pymaster.api import objects_pb2
from pymaster.api.defaults import default_pod
from pymaster.api.errors import ValidationError
from pymaster.api.resource_validation import check_node_extended_resources
from pymaster.api.validation import validate_pod

DONGLE = "example.com/dongle"
C0 = "spec.containers[0].resources"


@pytest.mark.parametrize(
    ("requests", "limits", "error"),
    [
        ({DONGLE: "1"}, {}, f"{C0}.limits[{DONGLE}]: required: a limit must be set for non overcommitable "
         "resources (extended resources), equal to the request"),
        ({DONGLE: "1"}, {DONGLE: "2"},
         f'{C0}.requests[{DONGLE}]: invalid value "1": must be equal to {DONGLE} limit of 2'),
        ({DONGLE: "3"}, {DONGLE: "2"},
         f'{C0}.requests[{DONGLE}]: invalid value "3": must be equal to {DONGLE} limit of 2'),
        ({}, {DONGLE: "1500m"}, f'{C0}.limits[{DONGLE}]: invalid value "1500m": must be an integer'),
        ({}, {DONGLE: "0.5"}, f'{C0}.limits[{DONGLE}]: invalid value "0.5": must be an integer'),
        ({}, {DONGLE: "-1"},
         f'{C0}.limits[{DONGLE}]: invalid value "-1": must be greater than or equal to 0'),
        ({}, {DONGLE: "many"}, f'{C0}.limits[{DONGLE}]: invalid quantity "many"'),
        ({}, {"hugepages-2Mi": "2Mi"},
         f"{C0}.limits.hugepages-2Mi: hugepages are not supported (pykube does not allocate huge pages)"),
        ({"hugepages-1Gi": "1Gi"}, {},
         f"{C0}.requests.hugepages-1Gi: hugepages are not supported (pykube does not allocate huge pages)"),
        ({}, {"kubernetes.io/dongle": "1"},
         f'{C0}.limits[kubernetes.io/dongle]: unsupported resource name "kubernetes.io/dongle": the '
         "kubernetes.io domain is reserved for Kubernetes' own resources; an extended resource needs a "
         "domain of its own"),
        ({}, {"devices.kubernetes.io/x": "1"}, None),
        ({}, {"nvidia/gpu": "1"},
         f'{C0}.limits[nvidia/gpu]: unsupported resource name "nvidia/gpu"; supported: cpu, memory, '
         "ephemeral-storage or an extended resource (a domain-prefixed name such as example.com/dongle)"),
        ({}, {"requests.example.com/x": "1"}, None),
        ({}, {"Example.com/x": "1"}, None),
        ({}, {"example.com/-x": "1"}, None),
        ({}, {"pods": "1"}, None),
    ],
)
def test_container_resources_refused(requests, limits, error):
    pod = _pod()
    _c(pod).resources.requests.update(requests)
    _c(pod).resources.limits.update(limits)
    with pytest.raises(ValidationError) as exc:
        validate_pod(pod)
    if error is not None:
        assert str(exc.value) == error
    assert str(exc.value).startswith(C0)


@pytest.mark.parametrize(
    ("requests", "limits"),
    [
        ({}, {DONGLE: "2"}),  # the request defaults to the limit
        ({DONGLE: "2"}, {DONGLE: "2"}),
        ({DONGLE: "2"}, {DONGLE: "2000m"}),  # equal by value, and a whole number
        ({}, {DONGLE: "1k"}),
        ({DONGLE: "0"}, {DONGLE: "0"}),
        ({"cpu": "250m", DONGLE: "1"}, {"cpu": "1", "memory": "1Gi", DONGLE: "1", "example.org/fpga": "3"}),
        ({"ephemeral-storage": "1Gi"}, {"ephemeral-storage": "2Gi"}),
    ],
)
def test_container_resources_accepted_before_and_after_defaulting(requests, limits):
    pod = _pod()
    _c(pod).resources.requests.update(requests)
    _c(pod).resources.limits.update(limits)
    validate_pod(pod)
    default_pod(pod)
    validate_pod(pod)
    assert dict(_c(pod).resources.requests) == {**limits, **requests}


def test_init_containers_follow_the_same_rules():
    pod = _pod()
    pod.spec.init_containers.add(name="init", image="pykube/busybox:1.35").resources.requests[DONGLE] = "1"
    with pytest.raises(ValidationError, match=r"^spec\.initContainers\[0\]\.resources\.limits\[example"):
        validate_pod(pod)


def test_a_bad_limit_is_named_as_a_limit_after_defaulting():
    pod = _pod()
    _c(pod).resources.limits["cpu"] = "lots"
    default_pod(pod)  # copies the limit into the requests
    with pytest.raises(ValidationError) as exc:
        validate_pod(pod)
    assert str(exc.value) == f'{C0}.limits.cpu: invalid quantity "lots"'


def test_pod_level_resources_are_refused():
    pod = _pod()
    pod.spec.resources.limits["cpu"] = "1"
    with pytest.raises(ValidationError) as exc:
        validate_pod(pod)
    assert str(exc.value) == (
        "spec.resources: pod-level resources are not supported (alpha in Kubernetes 1.32, off by default)"
    )
    empty = _pod()
    empty.spec.resources.SetInParent()  # even empty: the field is set
    with pytest.raises(ValidationError, match=r"^spec\.resources: "):
        validate_pod(empty)


# ---- a node's status ----


def _status(capacity: dict[str, str], allocatable: dict[str, str]) -> objects_pb2.NodeStatus:
    status = objects_pb2.NodeStatus()
    status.capacity.update({"cpu": "2", "memory": "4Gi", "pods": "110", **capacity})
    status.allocatable.update({"cpu": "2", "memory": "4Gi", "pods": "110", **allocatable})
    return status


@pytest.mark.parametrize(
    ("capacity", "allocatable", "error"),
    [
        ({DONGLE: "1.5"}, {}, f'status.capacity[{DONGLE}]: invalid value "1.5": must be an integer'),
        ({DONGLE: "-2"}, {},
         f'status.capacity[{DONGLE}]: invalid value "-2": must be greater than or equal to 0'),
        ({DONGLE: "x"}, {}, f'status.capacity[{DONGLE}]: invalid quantity "x"'),
        ({DONGLE: "2"}, {DONGLE: "500m"},
         f'status.allocatable[{DONGLE}]: invalid value "500m": must be an integer'),
        ({}, {DONGLE: "1"}, f"status.allocatable[{DONGLE}]: {DONGLE} must also be in status.capacity"),
        ({DONGLE: "2"}, {DONGLE: "3"},
         f'status.allocatable[{DONGLE}]: invalid value "3": must be less than or equal to {DONGLE} '
         "capacity of 2"),
        ({"nvidia/gpu": "1"}, {}, None),
    ],
)
def test_node_extended_resources_refused(capacity, allocatable, error):
    with pytest.raises(ValidationError) as exc:
        check_node_extended_resources(_status(capacity, allocatable))
    if error is not None:
        assert str(exc.value) == error


@pytest.mark.parametrize(
    ("capacity", "allocatable"),
    [
        ({}, {}),
        ({DONGLE: "4"}, {DONGLE: "4"}),
        ({DONGLE: "4"}, {DONGLE: "3"}),
        ({DONGLE: "4"}, {}),  # allocatable falls back to capacity
        ({DONGLE: "0"}, {DONGLE: "0"}),
    ],
)
def test_node_extended_resources_accepted(capacity, allocatable):
    check_node_extended_resources(_status(capacity, allocatable))
