"""The downward API's values (pykubelet.downward): pod fields, whole label maps as the kubelet
formats them, and container resources with divisors, defaults and rounding."""

from __future__ import annotations

import psutil
import pytest

from pykubelet.downward import field_value, format_map, go_quote, node_allocatable, resource_value
from pymaster.api import objects_pb2
from pymaster.api.quantity import memory_bytes

NODE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def _pod() -> objects_pb2.Pod:
    pod = objects_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "team", "u-1"
    pod.metadata.labels.update({"app": "web", "tier": "front"})
    pod.metadata.annotations.update({"example.com/note": 'say "hi"\n'})
    pod.spec.node_name, pod.spec.service_account_name = "node-1", "builder"
    app = pod.spec.containers.add(name="app", image="busybox")
    app.resources.limits.update({"cpu": "500m", "memory": "64Mi"})
    app.resources.requests.update({"cpu": "250m"})
    pod.spec.containers.add(name="bare", image="busybox")
    init = pod.spec.init_containers.add(name="setup", image="busybox")
    init.resources.requests.update({"memory": "1G", "ephemeral-storage": "2Gi"})
    return pod


@pytest.mark.parametrize(("path", "expected"), [
    ("metadata.name", "web"),
    ("metadata.namespace", "team"),
    ("metadata.uid", "u-1"),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['missing']", ""),
    ("metadata.annotations['example.com/note']", 'say "hi"\n'),
    ("metadata.labels", 'app="web"\ntier="front"'),
    ("metadata.annotations", 'example.com/note="say \\"hi\\"\\n"'),
    ("spec.nodeName", "node-1"),
    ("spec.serviceAccountName", "builder"),
    ("status.podIP", "10.1.0.7"),
    ("status.podIPs", "10.1.0.7"),
    ("status.hostIP", "192.168.1.5"),
    ("status.hostIPs", "192.168.1.5"),
])
def test_field_value(path: str, expected: str) -> None:
    assert field_value(_pod(), path, "10.1.0.7", "192.168.1.5") == expected


@pytest.mark.parametrize(("path", "message"), [
    ("spec.foo", "unsupported fieldPath: spec.foo"),
    ("status.phase", "unsupported fieldPath: status.phase"),
    ("spec.nodeName['x']", "does not support subscript"),
    ("", "unsupported fieldPath: "),
])
def test_field_value_refuses_unknown_paths(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        field_value(_pod(), path, "", "")


def test_format_map_of_nothing_is_empty() -> None:
    assert format_map({}) == ""


@pytest.mark.parametrize(("value", "quoted"), [
    ("plain", '"plain"'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("tab\there\r\n", '"tab\\there\\r\\n"'),
    ("\x00\x7f", '"\\x00\\x7f"'),
    ("\u00a0\u200b", '"\\u00a0\\u200b"'),
    ("héllo ✓ 🙂", '"héllo ✓ 🙂"'),
    ("\U000e0001", '"\\U000e0001"'),
])
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


@pytest.mark.parametrize(("container", "resource", "divisor", "expected"), [
    ("app", "limits.cpu", "", "1"),  # 500m rounded up to a whole core
    ("app", "limits.cpu", "1", "1"),
    ("app", "limits.cpu", "1m", "500"),
    ("app", "requests.cpu", "1m", "250"),
    ("app", "limits.memory", "", str(64 * 1024**2)),
    ("app", "limits.memory", "1Mi", "64"),
    ("app", "limits.memory", "1M", "68"),  # 67.1 MB, rounded up
    ("app", "limits.memory", "0", str(64 * 1024**2)),  # a zero divisor is the default, 1
    ("app", "requests.memory", "1Mi", "64"),  # no request: the limit (Kubernetes' defaulting)
    ("app", "limits.ephemeral-storage", "1Gi", "100"),  # no limit: the node's allocatable
    ("bare", "limits.cpu", "1m", "4000"),
    ("bare", "limits.memory", "1Gi", "8"),
    ("bare", "requests.cpu", "1m", "0"),  # no request and no limit: 0
    ("bare", "requests.memory", "", "0"),
    ("setup", "requests.memory", "1k", "1000000"),  # an init container
    ("setup", "requests.ephemeral-storage", "1Mi", "2048"),
])
def test_resource_value(container: str, resource: str, divisor: str, expected: str) -> None:
    assert resource_value(_pod(), container, resource, divisor, NODE) == expected


@pytest.mark.parametrize(("container", "resource", "divisor", "message"), [
    ("nope", "limits.cpu", "1", "container nope not found"),
    ("app", "limits.gpu", "1", "unsupported container resource: limits.gpu"),
    ("app", "cpu", "1", "unsupported container resource: cpu"),
    ("app", "limits.cpu", "lots", "invalid quantity"),
    ("app", "limits.cpu", "-1", "must be positive"),
])
def test_resource_value_errors(container: str, resource: str, divisor: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resource_value(_pod(), container, resource, divisor, NODE)


def test_unset_limits_default_to_this_machine() -> None:
    assert resource_value(_pod(), "bare", "limits.cpu", "1", None) == str(psutil.cpu_count())
    allocatable = node_allocatable()
    assert 0 < memory_bytes(allocatable["memory"]) <= psutil.virtual_memory().total
    assert int(allocatable["ephemeral-storage"]) == psutil.disk_usage("/").total
