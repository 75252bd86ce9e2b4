"""The Kubernetes-shaped dict/YAML/JSON form of API objects, and multi-document pod manifests."""

import datetime
import json
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.manifest import from_dict, load_pods, to_dict, to_json, to_yaml


def _full_pod() -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    meta = pod.metadata
    meta.name, meta.namespace, meta.uid = "web", "default", "u1"
    meta.resource_version, meta.generation = "7", 3
    meta.labels["app"] = "web"
    meta.annotations["example.com/note"] = "hi"
    meta.creation_timestamp.FromJsonString("2026-11-25T17:04:32Z")
    meta.deletion_grace_period_seconds = 0
    container = pod.spec.containers.add(
        name="web",
        image="pykube/busybox:1.35",
        command=["sh", "-c"],
        args=["sleep 1"],
        image_pull_policy="IfNotPresent",
        working_dir="/",
    )
    container.env.add(name="A", value="1")
    container.ports.add(name="http", container_port=80, host_port=8080, protocol="TCP", host_ip="127.0.0.1")
    container.resources.requests["cpu"] = "250m"
    container.resources.limits["memory"] = "64Mi"
    pod.spec.restart_policy = "Always"
    pod.spec.node_name = "node-1"
    pod.spec.node_selector["disk"] = "ssd"
    pod.spec.termination_grace_period_seconds = 30
    status = pod.status
    status.phase, status.host_ip, status.pod_ip = "Running", "10.0.0.1", "172.17.0.2"
    status.start_time.FromJsonString("2026-11-25T17:04:33.500Z")
    condition = status.conditions.add(type="Ready", status="True")
    condition.last_transition_time.FromJsonString("2026-11-25T17:04:34Z")
    cs = status.container_statuses.add(
        name="web",
        ready=True,
        restart_count=2,
        image="pykube/busybox:1.35",
        image_id="sha256:abc",
        container_id="docker://c1",
        started=True,
    )
    cs.state.running.started_at.FromJsonString("2026-11-25T17:04:34Z")
    cs.last_state.terminated.exit_code = 137
    cs.last_state.terminated.container_id = "docker://c0"
    return pod


def _full_node() -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "node-1"
    node.spec.unschedulable = True
    node.status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="10.0.0.1")
    node.status.daemon_endpoints.kubelet_endpoint.port = 10250
    node.status.node_info.machine_id = "m1"
    node.status.node_info.boot_id = "b1"
    usage = node.status.usage
    usage.cpu_percent, usage.running_pods = 12.5, 3
    usage.memory_used_bytes, usage.disk_total_bytes = 2**40, 2**62
    return node


def test_to_dict_uses_kubernetes_names_and_int64_numbers():
    data = to_dict(_full_pod())
    assert list(data) == ["apiVersion", "kind", "metadata", "spec", "status"]
    meta = data["metadata"]
    assert meta["generation"] == 3
    assert meta["deletionGracePeriodSeconds"] == 0  # optional: set to 0 is still rendered
    assert meta["creationTimestamp"] == "2026-11-25T17:04:32Z"
    assert meta["resourceVersion"] == "7"
    assert data["spec"]["terminationGracePeriodSeconds"] == 30
    assert data["spec"]["containers"][0]["ports"][0] == {
        "name": "http",
        "containerPort": 80,
        "hostPort": 8080,
        "protocol": "TCP",
        "hostIP": "127.0.0.1",
    }
    status = data["status"]
    assert status["podIP"] == "172.17.0.2" and status["hostIP"] == "10.0.0.1"
    assert status["startTime"] == "2026-11-25T17:04:33.500Z"
    cs = status["containerStatuses"][0]
    assert cs["containerID"] == "docker://c1" and cs["imageID"] == "sha256:abc"
    assert cs["state"] == {"running": {"startedAt": "2026-11-25T17:04:34Z"}}
    assert cs["lastState"]["terminated"] == {"exitCode": 137, "containerID": "docker://c0"}


def test_to_dict_node():
    data = to_dict(_full_node())
    assert data["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert data["status"]["nodeInfo"] == {"machineID": "m1", "bootID": "b1"}
    assert data["status"]["usage"]["memoryUsedBytes"] == 2**40
    assert data["status"]["usage"]["diskTotalBytes"] == 2**62  # beyond a double's exact range
    assert data["spec"] == {"unschedulable": True}


def test_to_dict_omits_empty_fields_and_walks_lists():
    pod = objects_pb2.Pod()
    pod.metadata.name = "a"
    pod.spec.containers.add(name="c")
    assert to_dict(pod) == {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}}
    lst = objects_pb2.PodList(resource_version="9")
    lst.items.add().metadata.generation = 2
    assert to_dict(lst) == {"items": [{"metadata": {"generation": 2}}], "resourceVersion": "9"}
    assert to_dict(objects_pb2.Pod()) == {}


@pytest.mark.parametrize("make", [_full_pod, _full_node, objects_pb2.Pod])
def test_round_trips(make):
    msg = make()
    assert from_dict(to_dict(msg), type(msg)) == msg
    assert from_dict(yaml.safe_load(to_yaml(msg)), type(msg)) == msg
    assert from_dict(json.loads(to_json(msg)), type(msg)) == msg


def test_to_json_indents_four():
    pod = objects_pb2.Pod(kind="Pod")
    assert to_json(pod) == '{\n    "kind": "Pod"\n}'


def test_to_yaml_reads_like_kubectl():
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = "web"
    pod.metadata.generation = 2
    pod.spec.containers.add(name="web").resources.requests["cpu"] = "1"
    assert to_yaml(pod) == textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: web
          generation: 2
        spec:
          containers:
          - name: web
            resources:
              requests:
                cpu: '1'
        """)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"metadata": {"nam": "x"}}, "metadata.nam: unknown field"),
        (
            {"spec": {"containers": [{"name": "a"}, {"imagee": "x"}]}},
            "spec.containers[1].imagee: unknown field",
        ),
        (
            {"spec": {"containers": [{"ports": [{"containerPort": 80}, {"containerPort": "81"}]}]}},
            "spec.containers[0].ports[1].containerPort: must be an integer",
        ),
        (
            {"spec": {"containers": [{"ports": [{"containerPort": 80.0}]}]}},
            "spec.containers[0].ports[0].containerPort: must be an integer",
        ),
        (
            {"spec": {"containers": [{"ports": [{"containerPort": True}]}]}},
            "spec.containers[0].ports[0].containerPort: must be an integer",
        ),
        (
            {"spec": {"containers": [{"ports": [{"containerPort": 2**31}]}]}},
            "spec.containers[0].ports[0].containerPort: must be between -2147483648 and 2147483647",
        ),
        (
            {"spec": {"terminationGracePeriodSeconds": "30"}},
            "spec.terminationGracePeriodSeconds: must be an integer",
        ),
        ({"api_version": "v1"}, "api_version: unknown field"),  # json names only, like kubectl
        ({"metadata": {"resource_version": "1"}}, "metadata.resource_version: unknown field"),
        ({"metadata": "web"}, "metadata: must be an object"),
        ({"metadata": {"labels": ["a"]}}, "metadata.labels: must be an object"),
        ({"metadata": {"labels": {"replicas": 3}}}, "metadata.labels.replicas: must be a string"),
        (
            {"metadata": {"labels": {"app.kubernetes.io/name": True}}},
            "metadata.labels[app.kubernetes.io/name]: must be a string",
        ),
        ({"metadata": {"labels": {"a": None}}}, "metadata.labels.a: must not be null"),
        ({"metadata": {"labels": {1: "a"}}}, "metadata.labels: key 1 must be a string"),
        ({"spec": {"containers": {"name": "a"}}}, "spec.containers: must be a list"),
        ({"spec": {"containers": ["a"]}}, "spec.containers[0]: must be an object"),
        ({"spec": {"containers": [None]}}, "spec.containers[0]: must not be null"),
        (
            {"spec": {"containers": [{"command": ["sh", 1]}]}},
            "spec.containers[0].command[1]: must be a string",
        ),
        ({"spec": {"containers": [{"image": 1.35}]}}, "spec.containers[0].image: must be a string"),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": True}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": float("inf")}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": [1]}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        (
            {"metadata": {"creationTimestamp": "yesterday"}},
            "metadata.creationTimestamp: must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z",
        ),
        (
            {"metadata": {"creationTimestamp": datetime.date(2026, 11, 25)}},
            "metadata.creationTimestamp: must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z",
        ),
        (
            {"metadata": {"creationTimestamp": 1764090272}},
            "metadata.creationTimestamp: must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z",
        ),
        (
            {"status": {"containerStatuses": [{"ready": "yes"}]}},
            "status.containerStatuses[0].ready: must be a boolean",
        ),
        ([], "must be an object"),
    ],
)
def test_from_dict_errors_name_the_path(data, error):
    with pytest.raises(ValidationError) as exc:
        from_dict(data, objects_pb2.Pod)
    assert str(exc.value) == error


def test_from_dict_errors_on_node_fields():
    with pytest.raises(ValidationError, match=r"^status.usage.cpuPercent: must be a number$"):
        from_dict({"status": {"usage": {"cpuPercent": "12"}}}, objects_pb2.Node)
    with pytest.raises(ValidationError, match=r"^spec.unschedulable: must be a boolean$"):
        from_dict({"spec": {"unschedulable": "true"}}, objects_pb2.Node)


def test_from_dict_prefixes_the_given_path():
    with pytest.raises(ValidationError) as exc:
        from_dict({"nam": "x"}, objects_pb2.ObjectMeta, path="items[2].metadata")
    assert exc.value.field == "items[2].metadata.nam"
    assert exc.value.detail == "unknown field"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "1"), (0.5, "0.5"), (2, "2"), ("250m", "250m"), (1e-07, "1e-07"), (100.0, "100.0")],
)
def test_from_dict_takes_yaml_numbers_as_quantities(value, expected):
    data = {
        "spec": {"containers": [{"resources": {"requests": {"cpu": value}, "limits": {"memory": value}}}]}
    }
    resources = from_dict(data, objects_pb2.Pod).spec.containers[0].resources
    assert resources.requests["cpu"] == expected
    assert resources.limits["memory"] == expected
    node = from_dict(
        {"status": {"capacity": {"cpu": value}, "allocatable": {"pods": value}}}, objects_pb2.Node
    )
    assert node.status.capacity["cpu"] == expected and node.status.allocatable["pods"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T17:04:32Z",
        "2026-11-25T18:04:32+01:00",
        datetime.datetime(2026, 11, 25, 17, 4, 32, tzinfo=datetime.UTC),
        datetime.datetime(2026, 11, 25, 17, 4, 32),  # naive: UTC, as YAML says
    ],
)
def test_from_dict_timestamps(value):
    meta = from_dict({"creationTimestamp": value}, objects_pb2.ObjectMeta)
    assert meta.creation_timestamp.ToJsonString() == "2026-11-25T17:04:32Z"


def test_from_dict_null_means_unset_and_empty_objects_set():
    pod = from_dict({"metadata": {"name": None, "labels": None}, "spec": {}, "status": None}, objects_pb2.Pod)
    assert pod.HasField("metadata") and pod.HasField("spec") and not pod.HasField("status")
    assert pod.metadata.name == "" and len(pod.metadata.labels) == 0
    spec = from_dict({"terminationGracePeriodSeconds": 0}, objects_pb2.PodSpec)
    assert spec.HasField("termination_grace_period_seconds")


def test_from_dict_yaml_unquoted_timestamp():
    meta = from_dict(yaml.safe_load("creationTimestamp: 2026-11-25T17:04:32Z"), objects_pb2.ObjectMeta)
    assert meta.creation_timestamp.seconds == 1795626272


POD_A = """\
apiVersion: v1
kind: Pod
metadata:
  name: a
  labels: {app: web}
spec:
  containers:
  - name: web
    image: pykube/busybox:1.35
    resources:
      requests: {cpu: 0.5, memory: 64Mi}
"""
POD_B = """\
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: team}
spec:
  containers: [{name: c, image: pykube/pause:3.9}]
"""
NO_IMAGE = "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec: {containers: [{name: c}]}\n"


def test_load_pods_multi_document():
    pods = load_pods(f"---\n{POD_A}---\n---\n# only a comment\n---\n{POD_B}\n---\n")
    assert [p.metadata.name for p in pods] == ["a", "b"]
    assert pods[0].spec.containers[0].resources.requests["cpu"] == "0.5"
    assert pods[1].metadata.namespace == "team"
    assert pods[0].metadata.namespace == ""  # no defaulting: the server (or -n) decides
    assert pods[0].spec.restart_policy == ""


def test_load_pods_json_and_empty():
    assert [p.metadata.name for p in load_pods(to_json(load_pods(POD_B)[0]))] == ["b"]
    assert load_pods("") == []
    assert load_pods("---\n---\n") == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (NO_IMAGE, "spec.containers[0].image: required"),  # the first document: no prefix
        (f"{POD_A}---\n{NO_IMAGE}", "document 2: spec.containers[0].image: required"),
        (
            f"{POD_A}---\n---\n{NO_IMAGE}",
            "document 3: spec.containers[0].image: required",
        ),  # counts empty ones
        (f"{POD_A}---\n- a\n", "document 2: a document must be a mapping (apiVersion, kind, ...), not list"),
        ("just text", "a document must be a mapping (apiVersion, kind, ...), not str"),
        (POD_A.replace("kind: Pod", "kind: Deployment"), "kind: unsupported kind Deployment; supported: Pod"),
        (
            POD_A.replace("apiVersion: v1", "apiVersion: apps/v1"),
            "apiVersion: unsupported apiVersion apps/v1; supported: v1",
        ),
        (POD_A.replace("kind: Pod\n", ""), "kind: required; supported: Pod"),
        (POD_A.replace("apiVersion: v1\n", ""), "apiVersion: required; supported: v1"),
        (POD_A.replace("kind: Pod", "kind: 3"), "kind: must be a string"),
        (
            f"{POD_B}---\n" + POD_A.replace("kind: Pod", "kind: Deployment"),
            "document 2: kind: unsupported kind Deployment; supported: Pod",
        ),
        (POD_A.replace("image:", "imagee:"), "spec.containers[0].imagee: unknown field"),
        (POD_A.replace("{app: web}", "{replicas: 3}"), "metadata.labels.replicas: must be a string"),
        (POD_A + "  containers: []\n", "yaml: line 12, column 3: found duplicate key 'containers'"),
        ("a: [1\n", "yaml: line 2, column 1: did not find expected ',' or ']'"),
        (
            f"{POD_A}---\nkind: Pod\n  apiVersion: v1\n",
            "yaml: line 14, column 13: mapping values are not allowed in this context",
        ),
    ],
)
def test_load_pods_errors(text, error):
    with pytest.raises(ValidationError) as exc:
        load_pods(text)
    assert str(exc.value) == error


def test_load_pods_prefixes_the_field_of_later_documents():
    with pytest.raises(ValidationError) as exc:
        load_pods(f"{POD_A}---\n{NO_IMAGE}")
    assert exc.value.field == "document 2: spec.containers[0].image"
    assert exc.value.detail == "required"


def test_load_pods_yaml_merge_keys_may_be_overridden():
    """A key given explicitly next to a "<<" merge is an override, not a duplicate."""
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: m}
        spec:
          containers:
          - &base {name: a, image: pykube/pause:3.9}
          - {<<: *base, name: b}
        """)
    containers = load_pods(text)[0].spec.containers
    assert [(c.name, c.image) for c in containers] == [("a", "pykube/pause:3.9"), ("b", "pykube/pause:3.9")]


# ---- volumes, security context, host network ----

POD_WITH_VOLUMES = """\
apiVersion: v1
kind: Pod
metadata: {name: v}
spec:
  hostNetwork: true
  containers:
  - name: web
    image: pykube/busybox:1.35
    securityContext: {privileged: true}
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: logs, mountPath: /logs, readOnly: true}
  volumes:
  - name: data
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  - name: logs
    hostPath: {path: /var/log/web, type: DirectoryOrCreate}
  - name: scratch
    emptyDir: {}
"""


def test_load_pods_volumes_security_context_host_network():
    pod = load_pods(POD_WITH_VOLUMES)[0]
    assert pod.spec.host_network
    container = pod.spec.containers[0]
    assert container.security_context.HasField("privileged") and container.security_context.privileged
    assert [(m.name, m.mount_path, m.read_only) for m in container.volume_mounts] == [
        ("data", "/data", False),
        ("logs", "/logs", True),
    ]
    data, logs, scratch = pod.spec.volumes
    assert (data.empty_dir.medium, data.empty_dir.size_limit) == ("Memory", "64Mi")
    assert (logs.host_path.path, logs.host_path.type) == ("/var/log/web", "DirectoryOrCreate")
    assert scratch.HasField("empty_dir") and not scratch.HasField("host_path")  # `emptyDir: {}` is a source
    spec = to_dict(pod)["spec"]
    assert spec["hostNetwork"] is True
    assert spec["volumes"][2] == {"name": "scratch", "emptyDir": {}}
    assert spec["containers"][0]["volumeMounts"][1] == {
        "name": "logs",
        "mountPath": "/logs",
        "readOnly": True,
    }
    assert load_pods(to_yaml(pod)) == [pod]


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "emptyDir: {}",
            "emptyDir: null",
            "spec.volumes[2]: exactly one volume source (hostPath, emptyDir) is required",
        ),
        (
            "{name: data, mountPath: /data}",
            "{name: cache, mountPath: /data}",
            'spec.containers[0].volumeMounts[0].name: volume "cache" not found',
        ),
        (
            "readOnly: true",
            "readOnly: yes please",
            "spec.containers[0].volumeMounts[1].readOnly: must be a boolean",
        ),
        (
            "{privileged: true}",
            "{privileged: 1}",
            "spec.containers[0].securityContext.privileged: must be a boolean",
        ),
        (
            "{privileged: true}",
            "{runAsUser: 0}",
            "spec.containers[0].securityContext.runAsUser: unknown field",
        ),
        (
            "type: DirectoryOrCreate",
            "type: Socket",
            'spec.volumes[1].hostPath.type: unsupported value "Socket"; '
            "supported: Directory, DirectoryOrCreate, File, FileOrCreate",
        ),
    ],
)
def test_load_pods_volume_errors(old, new, error):
    assert old in POD_WITH_VOLUMES
    with pytest.raises(ValidationError) as exc:
        load_pods(POD_WITH_VOLUMES.replace(old, new))
    assert str(exc.value) == error


# ---- hostile input ----

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "x" * (4 * MIB + 1),
        "é" * (2 * MIB + 1),  # 2 bytes each in UTF-8: the limit is on bytes
        f"{POD_A}---\n#{'x' * 4 * MIB}\n",
    ],
)
def test_load_pods_refuses_more_than_4_mib(text):
    with pytest.raises(ValidationError) as exc:
        load_pods(text)
    assert str(exc.value) == "manifest: larger than 4 MiB"


def test_load_pods_takes_up_to_4_mib():
    padding = "#" + "x" * (4 * MIB - len(POD_A) - 6) + "\n"
    text = f"{POD_A}---\n{padding}"
    assert len(text.encode()) <= 4 * MIB
    assert [p.metadata.name for p in load_pods(text)] == ["a"]


def _laughs(levels: int, width: int = 10) -> str:
    """A "billion laughs" document: each level aliases the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _aliasing_pod(name: str) -> str:
    """A valid pod whose aliases add 3000 nodes (its command list, reused three times)."""
    words = ", ".join(["x"] * 1000)
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers:
          - {{name: a, image: i, command: &c [{words}], args: *c}}
          - {{name: b, image: i, command: *c, args: *c}}
        """)


def test_load_pods_aliases_within_bounds_are_fine():
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          containers:
          - {name: a, image: pykube/pause:3.9, env: &env [{name: A, value: "1"}, {name: B, value: "2"}]}
          - {name: b, image: pykube/pause:3.9, env: *env}
        """)
    pods = load_pods(text)
    assert [[e.name for e in c.env] for c in pods[0].spec.containers] == [["A", "B"], ["A", "B"]]
    assert len(load_pods("---\n".join(_aliasing_pod(f"p{i}") for i in range(33)))) == 33  # 99,000
    with pytest.raises(ValidationError, match="^kind: required; supported: Pod$"):
        load_pods(_laughs(4))  # about 11,000 nodes: parsed, then refused as not a pod


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (_laughs(9), r"^yaml: line \d+, column \d+: aliases expand to more than 100000 nodes$"),
        # spread over valid pods: the budget is the stream's
        (
            "---\n".join(_aliasing_pod(f"p{i}") for i in range(34)),
            r"^yaml: line \d+, column \d+: aliases expand to more than 100000 nodes$",
        ),
        ("[" * 101 + "]" * 101, r"^yaml: line 1, column 100: nested deeper than 100 levels$"),
        ("a: &a [*a]\n", r"^yaml: line 1, column 4: nested deeper than 100 levels$"),  # a recursive alias
        ("a: &a {b: *a}\n", r"^yaml: line 1, column 4: nested deeper than 100 levels$"),
        ("[" * 5000 + "]" * 5000, r"^yaml: line 1, column \d+: .*nesting depth"),  # libyaml's own limit
        ("a: 2001-13-45\n", r"^yaml: line 1, column 4: invalid value: month must be in 1\.\.12$"),
        (f"a: {'1' * 5000}\n", r"^yaml: line 1, column 4: invalid value: Exceeds the limit \(4300 digits\)"),
        ("a: \udc80\n", r"^manifest: invalid text at character 3: a lone surrogate$"),
        (
            "a: !!python/object/apply:os.system [true]\n",
            r"^yaml: line 1, column 4: could not determine a constructor",
        ),
        (
            f"kind: Pod\napiVersion: 0x{'f' * 5000}\n",
            r"^apiVersion: unsupported apiVersion <int>; supported: v1$",
        ),
        (f"kind: {'K' * 1000}\n", rf"^kind: unsupported kind {'K' * 256}\.\.\.; supported: Pod$"),
        (
            f"kind: Pod\napiVersion: v1\nmetadata: {{name: a, {'z' * 1000}: 1}}\n",
            rf"^metadata\.{'z' * 256}\.\.\.: unknown field$",
        ),
    ],
)
def test_load_pods_refuses_hostile_yaml(text, error):
    with pytest.raises(ValidationError, match=error):
        load_pods(text)


def test_load_pods_nesting_up_to_the_limit_is_fine():
    with pytest.raises(ValidationError, match="^a document must be a mapping"):
        load_pods("[" * 99 + "]" * 99)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({10**5000: 1}, "<int>: unknown field"),
        ({"x\udc80": 1}, "x\\udc80: unknown field"),
        ({"metadata": {"name": "a\udc80"}}, "metadata.name: must be valid UTF-8 text (no lone surrogates)"),
        (
            {"metadata": {"labels": {"a\udc80": "b"}}},
            "metadata.labels[a\\udc80]: must be valid UTF-8 text (no lone surrogates)",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": 10**5000}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": float("inf")}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        ({"metadata": {"labels": {1: "b"}}}, "metadata.labels: key 1 must be a string"),
        ({"metadata": {"labels": {10**5000: "b"}}}, "metadata.labels: key <int> must be a string"),
        (
            {
                "metadata": {
                    "creationTimestamp": datetime.datetime(
                        1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
                    )
                }
            },
            "metadata.creationTimestamp: must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z",
        ),
        ({"spec": {"hostNetwork": "true"}}, "spec.hostNetwork: must be a boolean"),
        ({"spec": {"volumes": {"name": "a"}}}, "spec.volumes: must be a list"),
    ],
)
def test_from_dict_refuses_hostile_values(data, error):
    with pytest.raises(ValidationError) as exc:
        from_dict(data, objects_pb2.Pod)
    assert str(exc.value) == error


# Random input: whatever it is, the answer is pods or a ValidationError, never another exception.
_FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_YAML_ALPHABET = "-:{}[],&*!|>'\"#?%@`\n\t aAzZ019.eE+~<=/\\"
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
_CONTAINER_KEYS = [
    "name",
    "image",
    "command",
    "args",
    "env",
    "ports",
    "resources",
    "imagePullPolicy",
    "workingDir",
    "securityContext",
    "volumeMounts",
    "bogus",
]
_pod_like = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.just("Pod"),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "", "A", "a" * 300])}),
        "spec": st.fixed_dictionaries(
            {
                "containers": st.lists(
                    st.dictionaries(st.sampled_from(_CONTAINER_KEYS), _json_values), max_size=3
                ),
                "volumes": st.lists(
                    st.dictionaries(st.sampled_from(["name", "hostPath", "emptyDir"]), _json_values)
                ),
                "hostNetwork": _json_values,
            }
        ),
    }
)


def _only_validation_errors(fn, *args):
    try:
        return fn(*args)
    except ValidationError as e:
        assert str(e)  # a message the user can read
        return None


@_FUZZ
@given(st.text(max_size=500))
def test_fuzz_load_pods_random_text(text):
    _only_validation_errors(load_pods, text)


@_FUZZ
@given(st.text(alphabet=_YAML_ALPHABET, max_size=300))
def test_fuzz_load_pods_yaml_like_text(text):
    _only_validation_errors(load_pods, text)


@_FUZZ
@given(_json_values | _pod_like)
def test_fuzz_from_dict_random_values(data):
    _only_validation_errors(from_dict, data, objects_pb2.Pod)


@_FUZZ
@given(_pod_like)
def test_fuzz_load_pods_random_pod_like_documents(data):
    _only_validation_errors(load_pods, yaml.safe_dump(data))
    _only_validation_errors(load_pods, json.dumps(data))
