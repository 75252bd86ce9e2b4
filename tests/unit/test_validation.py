"""Pod validation: every rule, with its field path and message."""

import pytest
from validation_helpers import _c, _m, _pod, _v, _with_volumes

from pymaster.api import objects_pb2
from pymaster.api.checks import key_path
from pymaster.api.defaults import default_pod
from pymaster.api.errors import ValidationError
from pymaster.api.validation import validate_pod

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
        "spec.containers[0].resources.limits.gpu: unsupported resource name; supported: cpu, memory, "
        "ephemeral-storage or an extended resource (a domain-prefixed name such as example.com/dongle)",
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
    # limits
    (
        lambda p: [p.spec.containers.add(name=f"c{i}", image="x") for i in range(63)],
        "spec.containers: at most 64 containers allowed",
    ),
    (
        lambda p: [p.spec.volumes.add(name=f"v{i}").empty_dir.SetInParent() for i in range(65)],
        "spec.volumes: at most 64 volumes allowed",
    ),
    (
        lambda p: [_c(p).env.add(name=f"E{i}") for i in range(1001)],
        "spec.containers[0].env: at most 1000 entries allowed",
    ),
    (
        lambda p: _c(p).command.extend(["x"] * 1001),
        "spec.containers[0].command: at most 1000 entries allowed",
    ),
    (
        lambda p: _c(p, 1).args.extend(["x"] * 1001),
        "spec.containers[1].args: at most 1000 entries allowed",
    ),
    (
        lambda p: _c(p).args.extend(["ok", "x" * (64 * 1024 + 1)]),
        "spec.containers[0].args[1]: too long: must have at most 65536 bytes",
    ),
    (
        lambda p: _c(p).command.append("é" * (32 * 1024 + 1)),  # bytes, not characters
        "spec.containers[0].command[0]: too long: must have at most 65536 bytes",
    ),
    (
        lambda p: _c(p).env.add(name="A", value="x" * (64 * 1024 + 1)),
        "spec.containers[0].env[0].value: too long: must have at most 65536 bytes",
    ),
    (
        lambda p: _c(p).env.add(name="A" * (64 * 1024 + 1)),
        "spec.containers[0].env[0].name: too long: must have at most 65536 bytes",
    ),
    (
        lambda p: setattr(_c(p), "working_dir", "/" * (64 * 1024 + 1)),
        "spec.containers[0].workingDir: too long: must have at most 65536 bytes",
    ),
    (
        lambda p: setattr(_c(p), "image", "i" * (64 * 1024 + 1)),
        "spec.containers[0].image: too long: must have at most 65536 bytes",
    ),
    (  # a long value is quoted cut short, so that an error always fits in a gRPC status
        lambda p: setattr(p.metadata, "namespace", "A" * 100_000),
        f'metadata.namespace: invalid value "{"A" * 256}"...: must be no more than 63 characters',
    ),
    (
        lambda p: p.metadata.labels.update({"k" * 300: "x"}),
        f'metadata.labels[{"k" * 256}...]: invalid key "{"k" * 256}"...: name part must be at most 63 '
        "characters of A-Z, a-z, 0-9, '-', '_' or '.', starting and ending alphanumeric",
    ),
    # volumes
    (
        lambda p: setattr(_v(p), "name", ""),
        'spec.containers[0].volumeMounts[0].name: volume "data" not found',
    ),
    (
        lambda p: (setattr(_v(p), "name", ""), _c(p).ClearField("volume_mounts")),
        "spec.volumes[0].name: required",
    ),
    (
        lambda p: (setattr(_v(p), "name", "Data"), setattr(_m(p), "name", "Data")),
        'spec.volumes[0].name: invalid value "Data": must be a lowercase RFC 1123 label '
        "(a-z, 0-9 and '-', starting and ending alphanumeric)",
    ),
    (
        lambda p: setattr(_v(p, 1), "name", "data"),
        'spec.containers[0].volumeMounts[1].name: volume "logs" not found',
    ),
    (
        lambda p: (setattr(_v(p, 1), "name", "data"), _c(p).volume_mounts.pop()),
        'spec.volumes[1].name: duplicate name "data"',
    ),
    (
        lambda p: _v(p).ClearField("empty_dir"),
        "spec.volumes[0]: exactly one volume source is required",
    ),
    (
        lambda p: setattr(_v(p).host_path, "path", "/x"),
        "spec.volumes[0]: exactly one volume source is required",
    ),
    (lambda p: setattr(_v(p, 1).host_path, "path", ""), "spec.volumes[1].hostPath.path: required"),
    (
        lambda p: setattr(_v(p, 1).host_path, "path", "var/log"),
        'spec.volumes[1].hostPath.path: invalid value "var/log": must be an absolute path',
    ),
    (
        lambda p: setattr(_v(p, 1).host_path, "path", "/var/\x00log"),
        "spec.volumes[1].hostPath.path: must not contain a NUL character",
    ),
    (
        lambda p: setattr(_v(p, 1).host_path, "path", "/data/../etc"),
        "spec.volumes[1].hostPath.path: invalid value \"/data/../etc\": must not contain '..'",
    ),
    (
        lambda p: setattr(_v(p, 1).host_path, "path", "/" + "a" * 4096),
        "spec.volumes[1].hostPath.path: too long: must have at most 4096 bytes",
    ),
    (
        lambda p: setattr(_v(p, 1).host_path, "type", "Socket"),
        'spec.volumes[1].hostPath.type: unsupported value "Socket"; '
        "supported: Directory, DirectoryOrCreate, File, FileOrCreate",
    ),
    (
        lambda p: setattr(_v(p).empty_dir, "medium", "HugePages"),
        'spec.volumes[0].emptyDir.medium: unsupported value "HugePages"; supported: Memory',
    ),
    (
        lambda p: setattr(_v(p).empty_dir, "size_limit", "lots"),
        'spec.volumes[0].emptyDir.sizeLimit: invalid quantity "lots"',
    ),
    (
        lambda p: setattr(_v(p).empty_dir, "size_limit", "-1Mi"),
        'spec.volumes[0].emptyDir.sizeLimit: invalid value "-1Mi": must be greater than 0',
    ),
    (
        lambda p: setattr(_v(p).empty_dir, "size_limit", "0"),
        'spec.volumes[0].emptyDir.sizeLimit: invalid value "0": must be greater than 0',
    ),
    # volume mounts
    (lambda p: setattr(_m(p), "name", ""), "spec.containers[0].volumeMounts[0].name: required"),
    (
        lambda p: _c(p, 1).volume_mounts.add(name="cache", mount_path="/c"),
        'spec.containers[1].volumeMounts[0].name: volume "cache" not found',
    ),
    (lambda p: setattr(_m(p), "mount_path", ""), "spec.containers[0].volumeMounts[0].mountPath: required"),
    (
        lambda p: setattr(_m(p), "mount_path", "data"),
        'spec.containers[0].volumeMounts[0].mountPath: invalid value "data": must be an absolute path',
    ),
    (
        lambda p: setattr(_m(p, 1), "mount_path", "/data/"),
        'spec.containers[0].volumeMounts[1].mountPath: duplicate mount path "/data/"',
    ),
    (
        lambda p: [_c(p, 1).volume_mounts.add(name=_v(p).name, mount_path=f"/m{i}") for i in range(65)],
        "spec.containers[1].volumeMounts: at most 64 volume mounts allowed",
    ),
    # host network
    (
        lambda p: (setattr(p.spec, "host_network", True), setattr(_c(p).ports[0], "host_port", 8080)),
        "spec.containers[0].ports[0].hostPort: must match containerPort when hostNetwork is true",
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
        # limits: exactly at the bound
        lambda p: [p.spec.containers.add(name=f"c{i}", image="x") for i in range(62)],
        lambda p: [p.spec.volumes.add(name=f"v{i}").empty_dir.SetInParent() for i in range(64)],
        lambda p: [_c(p).env.add(name=f"E{i}", value="v" * 64) for i in range(1000)],
        lambda p: (_c(p).command.extend(["x"] * 1000), _c(p).args.extend(["y" * 64 * 1024])),
        # volumes
        _with_volumes,
        lambda p: _v(p).empty_dir.MergeFrom(
            objects_pb2.EmptyDirVolumeSource(medium="Memory", size_limit="1G")
        ),
        lambda p: setattr(_v(p, 1).host_path, "type", "DirectoryOrCreate"),
        lambda p: setattr(_v(p, 1).host_path, "type", "FileOrCreate"),
        lambda p: setattr(_v(p, 1).host_path, "path", "/"),
        lambda p: setattr(_v(p, 1).host_path, "path", "/data/..x/y.."),  # ".." only as a whole element
        lambda p: _c(p, 1).volume_mounts.add(name=_v(p).name, mount_path="/data"),  # per container
        lambda p: p.spec.volumes.add(name="unused").empty_dir.SetInParent(),
        # security context: any value is valid, admission decides
        lambda p: setattr(_c(p).security_context, "privileged", True),
        lambda p: setattr(_c(p).security_context, "privileged", False),
        # host network: hostPort equal to containerPort, or unset (defaulted to it)
        lambda p: setattr(p.spec, "host_network", True),
        lambda p: (setattr(p.spec, "host_network", True), setattr(_c(p).ports[0], "host_port", 80)),
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
