"""The Kubernetes-shaped dict/YAML/JSON form of API objects: to_dict, to_json, to_yaml and from_dict
(field names, numbers, timestamps, error paths, round trips)."""

import datetime
import json
import textwrap

import pytest
import yaml

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.manifest import from_dict, to_dict, to_json, to_yaml


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
