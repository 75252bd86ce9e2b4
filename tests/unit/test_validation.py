"""Pod and node defaulting and validation: every rule, with its field path and message."""

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.validation import (
    default_pod,
    default_pull_policy,
    key_path,
    pod_requests,
    validate_node,
    validate_pod,
    validate_pod_update,
)


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


def _node() -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "node-1.example.com"
    node.status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"})
    node.status.allocatable.update({"cpu": "3900m", "memory": "7Gi"})
    node.status.conditions.add(type="Ready", status="True")
    node.status.addresses.add(type="InternalIP", address="10.0.0.1")
    node.status.daemon_endpoints.kubelet_endpoint.port = 10250
    return node


def _c(pod: objects_pb2.Pod, i: int = 0) -> objects_pb2.Container:
    return pod.spec.containers[i]


# ---- defaulting ----


def test_default_pod_fills_every_default():
    pod = _pod()
    _c(pod, 1).image = "pykube/pause"
    default_pod(pod)
    assert (pod.api_version, pod.kind, pod.metadata.namespace) == ("v1", "Pod", "default")
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.HasField("termination_grace_period_seconds")
    assert pod.spec.termination_grace_period_seconds == 30
    assert [c.image_pull_policy for c in pod.spec.containers] == ["IfNotPresent", "Always"]
    assert _c(pod).ports[0].protocol == "TCP"
    validate_pod(pod)


def test_default_pod_keeps_what_is_set():
    pod = _pod(restart_policy="Never", termination_grace_period_seconds=0)
    pod.metadata.namespace = "team"
    _c(pod).image_pull_policy = "Never"
    _c(pod).ports[0].protocol = "UDP"
    default_pod(pod)
    assert (pod.metadata.namespace, pod.spec.restart_policy) == ("team", "Never")
    assert pod.spec.termination_grace_period_seconds == 0
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


# ---- pods ----


def test_valid_pods_pass_before_and_after_defaulting():
    pod = _pod()
    validate_pod(pod)
    default_pod(pod)
    validate_pod(pod)


POD_CASES = [
    # type meta
    (lambda p: setattr(p, "api_version", "v2"), 'apiVersion: unsupported apiVersion "v2"; supported: v1'),
    (lambda p: setattr(p, "kind", "Node"), 'kind: must be Pod, not "Node"'),
    # metadata
    (lambda p: setattr(p.metadata, "name", ""), "metadata.name: required"),
    (
        lambda p: setattr(p.metadata, "name", "Web"),
        'metadata.name: invalid value "Web": must be a lowercase RFC 1123 subdomain '
        "(a-z, 0-9, '-' and '.', starting and ending alphanumeric)",
    ),
    (lambda p: setattr(p.metadata, "name", "web-"), None),
    (lambda p: setattr(p.metadata, "name", "a..b"), None),
    (lambda p: setattr(p.metadata, "name", "a_b"), None),
    (
        lambda p: setattr(p.metadata, "name", "a" * 254),
        f'metadata.name: invalid value "{"a" * 254}": must be no more than 253 characters',
    ),
    (
        lambda p: setattr(p.metadata, "namespace", "a.b"),
        'metadata.namespace: invalid value "a.b": must be a lowercase RFC 1123 label '
        "(a-z, 0-9 and '-', starting and ending alphanumeric)",
    ),
    (
        lambda p: setattr(p.metadata, "namespace", "a" * 64),
        f'metadata.namespace: invalid value "{"a" * 64}": must be no more than 63 characters',
    ),
    (
        lambda p: p.metadata.labels.update({"bad key": "x"}),
        'metadata.labels[bad key]: invalid key "bad key": name part must be at most 63 characters '
        "of A-Z, a-z, 0-9, '-', '_' or '.', starting and ending alphanumeric",
    ),
    (lambda p: p.metadata.labels.update({"-a": "x"}), None),
    (lambda p: p.metadata.labels.update({"a" * 64: "x"}), None),
    (
        lambda p: p.metadata.labels.update({"Example.com/a": "x"}),
        'metadata.labels[Example.com/a]: invalid key "Example.com/a": prefix part must be a lowercase '
        "RFC 1123 subdomain (a-z, 0-9, '-' and '.', starting and ending alphanumeric)",
    ),
    (
        lambda p: p.metadata.labels.update({"/a": "x"}),
        'metadata.labels[/a]: invalid key "/a": prefix part must be non-empty',
    ),
    (
        lambda p: p.metadata.labels.update({"example.com/": "x"}),
        'metadata.labels[example.com/]: invalid key "example.com/": name part must be non-empty',
    ),
    (
        lambda p: p.metadata.labels.update({"app": "a b"}),
        'metadata.labels.app: invalid value "a b": must be at most 63 characters of A-Z, a-z, 0-9, '
        "'-', '_' or '.', starting and ending alphanumeric",
    ),
    (lambda p: p.metadata.labels.update({"app": "x" * 64}), None),
    (lambda p: p.metadata.labels.update({"app": "-x"}), None),
    (lambda p: p.metadata.annotations.update({"a b": "x"}), None),
    (
        lambda p: p.metadata.annotations.update({"big": "x" * 256 * 1024}),
        "metadata.annotations: too long: must have at most 262144 bytes",
    ),
    (
        lambda p: setattr(p.metadata, "deletion_grace_period_seconds", -1),
        "metadata.deletionGracePeriodSeconds: must be greater than or equal to 0",
    ),
    # containers
    (lambda p: p.spec.ClearField("containers"), "spec.containers: required"),
    (lambda p: setattr(_c(p, 1), "name", ""), "spec.containers[1].name: required"),
    (lambda p: setattr(_c(p, 1), "name", "Web"), None),
    (lambda p: setattr(_c(p, 1), "name", "a.b"), None),
    (lambda p: setattr(_c(p, 1), "name", "a" * 64), None),
    (lambda p: setattr(_c(p, 1), "name", "web"), 'spec.containers[1].name: duplicate name "web"'),
    (lambda p: setattr(_c(p), "image", ""), "spec.containers[0].image: required"),
    (
        lambda p: setattr(_c(p), "image", " busybox"),
        "spec.containers[0].image: must not have leading or trailing whitespace",
    ),
    (lambda p: _c(p).env.add(value="x"), "spec.containers[0].env[0].name: required"),
    (
        lambda p: _c(p).env.add(name="1A"),
        'spec.containers[0].env[0].name: invalid value "1A": must consist of letters, digits, '
        "'_', '-' or '.', and not start with a digit",
    ),
    (lambda p: _c(p).env.add(name="A=B"), None),
    (
        lambda p: setattr(_c(p), "image_pull_policy", "Sometimes"),
        'spec.containers[0].imagePullPolicy: unsupported value "Sometimes"; '
        "supported: Always, IfNotPresent, Never",
    ),
    # ports
    (
        lambda p: setattr(_c(p).ports[0], "container_port", 0),
        "spec.containers[0].ports[0].containerPort: must be between 1 and 65535",
    ),
    (lambda p: setattr(_c(p).ports[0], "container_port", 65536), None),
    (lambda p: setattr(_c(p).ports[0], "container_port", -1), None),
    (
        lambda p: setattr(_c(p).ports[0], "host_port", 70000),
        "spec.containers[0].ports[0].hostPort: must be between 1 and 65535, or 0 for none",
    ),
    (
        lambda p: setattr(_c(p).ports[0], "protocol", "SCTP"),
        'spec.containers[0].ports[0].protocol: unsupported value "SCTP"; supported: TCP, UDP',
    ),
    (lambda p: setattr(_c(p).ports[0], "protocol", "tcp"), None),
    (
        lambda p: setattr(_c(p).ports[0], "host_ip", "localhost"),
        'spec.containers[0].ports[0].hostIP: invalid IP address "localhost"',
    ),
    (
        lambda p: setattr(_c(p).ports[0], "name", "HTTP"),
        'spec.containers[0].ports[0].name: invalid value "HTTP": must be at most 15 characters of '
        "a-z, 0-9 and '-', with at least one letter",
    ),
    (lambda p: setattr(_c(p).ports[0], "name", "a--b"), None),
    (lambda p: setattr(_c(p).ports[0], "name", "8080"), None),
    (lambda p: setattr(_c(p).ports[0], "name", "a" * 16), None),
    (lambda p: setattr(_c(p).ports[0], "name", "-http"), None),
    (
        lambda p: _c(p).ports.add(container_port=80, protocol="TCP"),
        "spec.containers[0].ports[1].containerPort: duplicate port 80/TCP",
    ),
    (  # containers share the pod's network namespace
        lambda p: _c(p, 1).ports.add(container_port=80),
        "spec.containers[1].ports[0].containerPort: duplicate port 80/TCP",
    ),
    (
        lambda p: (
            setattr(_c(p).ports[0], "name", "http"),
            _c(p, 1).ports.add(name="http", container_port=81),
        ),
        'spec.containers[1].ports[0].name: duplicate port name "http"',
    ),
    (
        lambda p: (
            setattr(_c(p).ports[0], "host_port", 8080),
            _c(p, 1).ports.add(container_port=81, host_port=8080),
        ),
        "spec.containers[1].ports[0].hostPort: duplicate host port 8080/TCP",
    ),
    # resources
    (
        lambda p: _c(p).resources.limits.update({"cpu": "abc"}),
        'spec.containers[0].resources.limits.cpu: invalid quantity "abc"',
    ),
    (
        lambda p: _c(p).resources.requests.update({"memory": "1.2.3"}),
        'spec.containers[0].resources.requests.memory: invalid quantity "1.2.3"',
    ),
    (
        lambda p: _c(p).resources.requests.update({"cpu": "-1"}),
        'spec.containers[0].resources.requests.cpu: invalid value "-1": must be greater than or equal to 0',
    ),
    (
        lambda p: _c(p).resources.limits.update({"gpu": "1"}),
        "spec.containers[0].resources.limits.gpu: unsupported resource name; "
        "supported: cpu, memory, ephemeral-storage or a domain-prefixed name",
    ),
    (lambda p: _c(p).resources.limits.update({"pods": "1"}), None),
    (lambda p: _c(p).resources.limits.update({"nvidia/gpu": "1"}), None),
    (
        lambda p: _c(p).resources.limits.update({"example.com/": "1"}),
        'spec.containers[0].resources.limits[example.com/]: invalid key "example.com/": '
        "name part must be non-empty",
    ),
    (
        lambda p: (
            _c(p).resources.requests.update({"cpu": "2"}),
            _c(p).resources.limits.update({"cpu": "1"}),
        ),
        'spec.containers[0].resources.requests.cpu: invalid value "2": must be less than or equal to '
        "cpu limit of 1",
    ),
    (
        lambda p: (
            _c(p).resources.requests.update({"memory": "1Gi"}),
            _c(p).resources.limits.update({"memory": "1G"}),
        ),
        'spec.containers[0].resources.requests.memory: invalid value "1Gi": must be less than or equal '
        "to memory limit of 1G",
    ),
    # pod spec
    (
        lambda p: setattr(p.spec, "restart_policy", "Sometimes"),
        'spec.restartPolicy: unsupported value "Sometimes"; supported: Always, OnFailure, Never',
    ),
    (
        lambda p: setattr(p.spec, "node_name", "Node_1"),
        'spec.nodeName: invalid value "Node_1": must be a lowercase RFC 1123 subdomain '
        "(a-z, 0-9, '-' and '.', starting and ending alphanumeric)",
    ),
    (lambda p: p.spec.node_selector.update({"disk": "s s d"}), None),
    (lambda p: p.spec.node_selector.update({"a b": "ssd"}), None),
    (
        lambda p: setattr(p.spec, "termination_grace_period_seconds", -1),
        "spec.terminationGracePeriodSeconds: must be greater than or equal to 0",
    ),
]


@pytest.mark.parametrize(("mutate", "error"), POD_CASES)
def test_validate_pod_rejects(mutate, error):
    pod = _pod()
    mutate(pod)
    with pytest.raises(ValidationError) as exc:
        validate_pod(pod)
    if error is not None:
        assert str(exc.value) == error


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: setattr(p.metadata, "name", "a.b-c.d"),
        lambda p: setattr(p.metadata, "name", "a" * 253),
        lambda p: setattr(p.metadata, "namespace", "kube-system"),
        lambda p: p.metadata.labels.update({"app.kubernetes.io/name": "Web_1.x", "empty": ""}),
        lambda p: p.metadata.annotations.update({"example.com/note": "any text: at all\n"}),
        lambda p: setattr(_c(p, 1), "name", "a" * 63),
        lambda p: _c(p).env.add(name="my.var-1_X", value=""),
        lambda p: _c(p).ports.add(container_port=80, protocol="UDP"),  # same number, other protocol
        lambda p: _c(p).ports.add(name="metrics-9", container_port=65535, host_port=1, host_ip="::1"),
        lambda p: _c(p).resources.limits.update({"cpu": "1", "memory": "1Gi", "example.com/foo": "2"}),
        lambda p: _c(p).resources.requests.update({"cpu": "0.1", "memory": "1e3", "ephemeral-storage": "1G"}),
        lambda p: (
            _c(p).resources.requests.update({"cpu": "1"}),
            _c(p).resources.limits.update({"cpu": "1000m"}),
        ),
        lambda p: setattr(p.spec, "restart_policy", "OnFailure"),
        lambda p: setattr(p.spec, "node_name", "node-1.example.com"),
        lambda p: p.spec.node_selector.update({"kubernetes.io/hostname": "node-1"}),
        lambda p: setattr(p.spec, "termination_grace_period_seconds", 0),
        lambda p: setattr(p.status, "phase", "Bogus"),  # status is the server's, never validated
    ],
)
def test_validate_pod_accepts(mutate):
    pod = _pod()
    mutate(pod)
    validate_pod(pod)


def test_validate_pod_reports_the_first_error_in_a_fixed_order():
    pod = _pod(restart_policy="bad")
    pod.metadata.name = ""
    _c(pod).image = ""
    with pytest.raises(ValidationError, match=r"^metadata.name: required$"):
        validate_pod(pod)
    pod.metadata.name = "web"
    with pytest.raises(ValidationError, match=r"^spec.containers\[0\].image: required$"):
        validate_pod(pod)
    pod.metadata.labels.update({"z z": "1", "a a": "1"})  # map keys: sorted
    with pytest.raises(ValidationError, match=r"^metadata.labels\[a a\]: "):
        validate_pod(pod)


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


_IMMUTABLE = "field is immutable (a pod update may only change labels, annotations and container images)"


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
    ("key", "path"),
    [
        ("cpu", "limits.cpu"),
        ("ephemeral-storage", "limits.ephemeral-storage"),
        ("a_b", "limits.a_b"),
        ("example.com/foo", "limits[example.com/foo]"),
        ("a.b", "limits[a.b]"),
        ("a b", "limits[a b]"),
    ],
)
def test_key_path(key, path):
    assert key_path("limits", key) == path
