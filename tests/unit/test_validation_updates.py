"""Pod update validation (what a pod update may change) and node validation."""

import pytest
from validation_helpers import _c, _m, _pod, _v, _with_volumes

from pymaster.api import objects_pb2
from pymaster.api.defaults import default_pod
from pymaster.api.errors import ValidationError
from pymaster.api.validation import validate_node, validate_pod_update


def _node() -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "node-1.example.com"
    node.status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"})
    node.status.allocatable.update({"cpu": "3900m", "memory": "7Gi"})
    node.status.conditions.add(type="Ready", status="True")
    node.status.addresses.add(type="InternalIP", address="10.0.0.1")
    node.status.daemon_endpoints.kubelet_endpoint.port = 10250
    return node


# ---- pod updates ----


def _defaulted() -> objects_pb2.Pod:
    pod = _pod()
    default_pod(pod)
    return pod


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.metadata.labels.update({"app": "other", "new": "x"}),
        lambda p: p.metadata.ClearField("labels"),
        lambda p: p.metadata.annotations.update({"note": "x"}),
        lambda p: setattr(_c(p), "image", "pykube/busybox:1.36"),
        lambda p: setattr(p.metadata, "resource_version", "42"),  # server-managed, not compared
        lambda p: setattr(p.metadata, "uid", "other"),
        lambda p: setattr(p.status, "phase", "Running"),
        lambda p: _c(p).resources.SetInParent(),  # an empty `resources: {}` is no resources
    ],
)
def test_validate_pod_update_accepts(mutate):
    old, new = _defaulted(), _defaulted()
    mutate(new)
    validate_pod_update(old, new)


_IMMUTABLE = (
    "field is immutable (a pod update may only change labels, annotations, container images and "
    "activeDeadlineSeconds)"
)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda p: setattr(p.metadata, "name", "other"), f"metadata.name: {_IMMUTABLE}"),
        (lambda p: setattr(p.metadata, "namespace", "other"), f"metadata.namespace: {_IMMUTABLE}"),
        (lambda p: setattr(p.spec, "node_name", "node-1"), f"spec.nodeName: {_IMMUTABLE}"),
        (lambda p: setattr(p.spec, "restart_policy", "Never"), f"spec.restartPolicy: {_IMMUTABLE}"),
        (lambda p: p.spec.node_selector.update({"a": "b"}), f"spec.nodeSelector: {_IMMUTABLE}"),
        (
            lambda p: setattr(p.spec, "termination_grace_period_seconds", 10),
            f"spec.terminationGracePeriodSeconds: {_IMMUTABLE}",
        ),
        (
            lambda p: p.spec.ClearField("termination_grace_period_seconds"),
            f"spec.terminationGracePeriodSeconds: {_IMMUTABLE}",
        ),
        (lambda p: setattr(_c(p, 1), "name", "other"), f"spec.containers[1].name: {_IMMUTABLE}"),
        (lambda p: _c(p).command.append("sh"), f"spec.containers[0].command: {_IMMUTABLE}"),
        (lambda p: _c(p).env.add(name="A"), f"spec.containers[0].env: {_IMMUTABLE}"),
        (lambda p: setattr(_c(p).ports[0], "container_port", 81), f"spec.containers[0].ports: {_IMMUTABLE}"),
        (
            lambda p: _c(p).resources.limits.update({"cpu": "1"}),
            f"spec.containers[0].resources: {_IMMUTABLE}",
        ),
        (
            lambda p: setattr(_c(p), "image_pull_policy", "Never"),
            f"spec.containers[0].imagePullPolicy: {_IMMUTABLE}",
        ),
        (lambda p: setattr(_c(p), "working_dir", "/tmp"), f"spec.containers[0].workingDir: {_IMMUTABLE}"),
        (
            lambda p: setattr(_c(p).security_context, "privileged", False),  # unset -> false: a change
            f"spec.containers[0].securityContext: {_IMMUTABLE}",
        ),
        (lambda p: setattr(p.spec, "host_network", True), f"spec.hostNetwork: {_IMMUTABLE}"),
        (lambda p: _with_volumes(p), f"spec.volumes: {_IMMUTABLE}"),
        (
            lambda p: p.spec.containers.add(name="x", image="y"),
            "spec.containers: may not add or remove containers",
        ),
        (lambda p: p.spec.containers.pop(), "spec.containers: may not add or remove containers"),
        (lambda p: setattr(_c(p), "image", ""), "spec.containers[0].image: required"),  # new must be valid
        (lambda p: p.metadata.labels.update({"a b": "c"}), None),
    ],
)
def test_validate_pod_update_rejects(mutate, error):
    old, new = _defaulted(), _defaulted()
    mutate(new)
    with pytest.raises(ValidationError) as exc:
        validate_pod_update(old, new)
    if error is not None:
        assert str(exc.value) == error


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda p: setattr(_m(p, 1), "read_only", False), f"spec.containers[0].volumeMounts: {_IMMUTABLE}"),
        (lambda p: setattr(_v(p, 1).host_path, "path", "/etc"), f"spec.volumes: {_IMMUTABLE}"),
        (lambda p: setattr(_v(p).empty_dir, "medium", "Memory"), f"spec.volumes: {_IMMUTABLE}"),
    ],
)
def test_validate_pod_update_volumes_are_immutable(mutate, error):
    old, new = _with_volumes(_defaulted()), _with_volumes(_defaulted())
    validate_pod_update(old, new)
    mutate(new)
    with pytest.raises(ValidationError) as exc:
        validate_pod_update(old, new)
    assert str(exc.value) == error


# ---- nodes ----


def test_validate_node_accepts_a_registered_node():
    validate_node(_node())
    node = _node()
    node.status.capacity["example.com/gpu"] = "2"
    node.metadata.labels["kubernetes.io/hostname"] = "node-1"
    validate_node(node)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda n: setattr(n, "kind", "Pod"), 'kind: must be Node, not "Pod"'),
        (lambda n: setattr(n.metadata, "name", ""), "metadata.name: required"),
        (lambda n: setattr(n.metadata, "name", "Node_1"), None),
        (
            lambda n: setattr(n.metadata, "namespace", "default"),
            "metadata.namespace: not allowed: the object is cluster-scoped",
        ),
        (lambda n: n.metadata.labels.update({"a": "b c"}), None),
        (lambda n: n.status.capacity.update({"cpu": "four"}), 'status.capacity.cpu: invalid quantity "four"'),
        (
            lambda n: n.status.allocatable.update({"memory": "-1Gi"}),
            'status.allocatable.memory: invalid value "-1Gi": must be greater than or equal to 0',
        ),
        (
            lambda n: n.status.capacity.update({"gpu": "1"}),
            "status.capacity.gpu: unsupported resource name; "
            "supported: cpu, memory, ephemeral-storage, pods or a domain-prefixed name",
        ),
        (lambda n: setattr(n.status.conditions[0], "type", ""), "status.conditions[0].type: required"),
        (
            lambda n: setattr(n.status.conditions[0], "status", "Yes"),
            'status.conditions[0].status: unsupported value "Yes"; supported: True, False, Unknown',
        ),
        (
            lambda n: setattr(n.status.conditions[0], "status", ""),
            "status.conditions[0].status: required; supported: True, False, Unknown",
        ),
        (
            lambda n: setattr(n.status.addresses[0], "type", "Public"),
            'status.addresses[0].type: unsupported value "Public"; '
            "supported: InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS",
        ),
        (lambda n: setattr(n.status.addresses[0], "address", ""), "status.addresses[0].address: required"),
        (
            lambda n: setattr(n.status.daemon_endpoints.kubelet_endpoint, "port", 70000),
            "status.daemonEndpoints.kubeletEndpoint.Port: must be between 1 and 65535",
        ),
    ],
)
def test_validate_node_rejects(mutate, error):
    node = _node()
    mutate(node)
    with pytest.raises(ValidationError) as exc:
        validate_node(node)
    if error is not None:
        assert str(exc.value) == error
