"""pyctl's pure printers: pod and node columns, ages, tables, documents, errors, describe."""

from __future__ import annotations

import datetime
import json

import grpc
import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from pymaster.api import errors, objects_pb2
from pymaster.api.pods import qos_class
from pymaster.cli import describe, printers, timefmt
from pymaster.cli import errors as cli_errors
from pymaster.cli.pod_columns import PodColumns, pod_columns

NOW = 1_800_000_000.0
UTC = datetime.UTC


def ts(seconds_ago: float) -> Timestamp:
    return Timestamp(seconds=int(NOW - seconds_ago))


def make_pod(
    name: str = "web",
    phase: str = "Running",
    containers: int = 1,
    statuses: list[objects_pb2.ContainerStatus] | None = None,
    deleting: bool = False,
    reason: str = "",
    ready_condition: bool = False,
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.creation_timestamp.CopyFrom(ts(65))
    for i in range(containers):
        pod.spec.containers.add(name=f"c{i}", image="busybox")
    pod.status.phase = phase
    pod.status.reason = reason
    pod.status.container_statuses.extend(statuses or [])
    if deleting:
        pod.metadata.deletion_timestamp.CopyFrom(ts(-30))
        pod.metadata.deletion_grace_period_seconds = 30
    if ready_condition:
        pod.status.conditions.add(type="Ready", status="True")
    return pod


def running(ready: bool = True, restarts: int = 0) -> objects_pb2.ContainerStatus:
    cs = objects_pb2.ContainerStatus(name="c", ready=ready, restart_count=restarts)
    cs.state.running.started_at.CopyFrom(ts(60))
    return cs


def waiting(reason: str, restarts: int = 0) -> objects_pb2.ContainerStatus:
    cs = objects_pb2.ContainerStatus(name="c", restart_count=restarts)
    cs.state.waiting.reason = reason
    return cs


def terminated(reason: str = "", exit_code: int = 0, signal: int = 0) -> objects_pb2.ContainerStatus:
    cs = objects_pb2.ContainerStatus(name="c")
    cs.state.terminated.reason = reason
    cs.state.terminated.exit_code = exit_code
    cs.state.terminated.signal = signal
    return cs


@pytest.mark.parametrize(
    ("pod", "status"),
    [
        (make_pod(phase=""), "Pending"),
        (make_pod(phase="Pending"), "Pending"),
        (make_pod(phase="Pending", statuses=[waiting("ContainerCreating")]), "ContainerCreating"),
        (make_pod(phase="Pending", statuses=[waiting("ErrImagePull")]), "ErrImagePull"),
        (make_pod(phase="Pending", statuses=[waiting("ImagePullBackOff")]), "ImagePullBackOff"),
        (make_pod(statuses=[waiting("CrashLoopBackOff", restarts=4)]), "CrashLoopBackOff"),
        (make_pod(statuses=[running()]), "Running"),
        (make_pod(statuses=[running(ready=False)]), "Running"),
        (make_pod(phase="Succeeded", statuses=[terminated("Completed")]), "Completed"),
        (make_pod(phase="Failed", statuses=[terminated("Error", exit_code=1)]), "Error"),
        (make_pod(phase="Failed", statuses=[terminated(exit_code=3)]), "ExitCode:3"),
        (make_pod(phase="Failed", statuses=[terminated(signal=9)]), "Signal:9"),
        (make_pod(phase="Failed", reason="Evicted"), "Evicted"),
        (make_pod(statuses=[running()], deleting=True), "Terminating"),
        (make_pod(phase="Pending", deleting=True), "Terminating"),
        (make_pod(phase="Succeeded", statuses=[terminated("Completed")], deleting=True), "Completed"),
        (make_pod(reason="NodeLost", deleting=True), "Unknown"),
        # kubectl reports the first container's state when several disagree.
        (make_pod(containers=2, statuses=[waiting("CrashLoopBackOff"), running()]), "CrashLoopBackOff"),
        (make_pod(containers=2, statuses=[running(), waiting("ContainerCreating")]), "ContainerCreating"),
        # One container completed, another still runs: Running if the pod is Ready, else NotReady.
        (make_pod(containers=2, statuses=[terminated("Completed"), running()], ready_condition=True),
         "Running"),
        (make_pod(containers=2, statuses=[terminated("Completed"), running()]), "NotReady"),
    ],
)
def test_pod_status(pod: objects_pb2.Pod, status: str) -> None:
    assert pod_columns(pod, NOW).status == status


@pytest.mark.parametrize(
    ("pod", "ready"),
    [
        (make_pod(statuses=[]), "0/1"),
        (make_pod(statuses=[running()]), "1/1"),
        (make_pod(statuses=[running(ready=False)]), "0/1"),
        (make_pod(containers=2, statuses=[running(), waiting("ContainerCreating")]), "1/2"),
        (make_pod(containers=3, statuses=[running(), running(), running()]), "3/3"),
    ],
)
def test_pod_ready(pod: objects_pb2.Pod, ready: str) -> None:
    assert pod_columns(pod, NOW).ready == ready


def test_pod_restarts_sums_and_shows_the_last_restart() -> None:
    first, second = running(restarts=2), waiting("CrashLoopBackOff", restarts=3)
    first.last_state.terminated.finished_at.CopyFrom(ts(600))
    second.last_state.terminated.finished_at.CopyFrom(ts(45))
    pod = make_pod(containers=2, statuses=[first, second])
    assert pod_columns(pod, NOW).restarts == "5 (45s ago)"
    assert pod_columns(make_pod(statuses=[running(restarts=1)]), NOW).restarts == "1"
    assert pod_columns(make_pod(statuses=[running()]), NOW).restarts == "0"


def _init_pod(*inits: objects_pb2.ContainerStatus, sidecar: str = "", initialized: bool = False,
              apps: list[objects_pb2.ContainerStatus] | None = None) -> objects_pb2.Pod:
    phase = "Running" if initialized else "Pending"
    pod = make_pod(phase=phase, statuses=apps or [waiting("PodInitializing")])
    for i, cs in enumerate(inits):
        cs.name = f"i{i}"
        container = pod.spec.init_containers.add(name=cs.name, image="busybox")
        if cs.name == sidecar:
            container.restart_policy = "Always"
        pod.status.init_container_statuses.append(cs)
    pod.status.conditions.add(type="Initialized", status="True" if initialized else "False")
    return pod


def _started(cs: objects_pb2.ContainerStatus) -> objects_pb2.ContainerStatus:
    cs.started = True
    return cs


@pytest.mark.parametrize(
    ("pod", "ready", "status", "restarts"),
    [
        (_init_pod(waiting("PodInitializing"), waiting("PodInitializing")), "0/1", "Init:0/2", "0"),
        (_init_pod(terminated("Completed"), running()), "0/1", "Init:1/2", "0"),
        (_init_pod(terminated("Error", exit_code=1)), "0/1", "Init:Error", "0"),
        (_init_pod(terminated(exit_code=2)), "0/1", "Init:ExitCode:2", "0"),
        (_init_pod(waiting("CrashLoopBackOff", restarts=3)), "0/1", "Init:CrashLoopBackOff", "3"),
        # A started sidecar is initialized, and counts in READY (1 app + 1 sidecar).
        (_init_pod(_started(running()), waiting("PodInitializing"), sidecar="i0"), "1/2", "Init:1/2", "0"),
        (_init_pod(terminated("Completed"), initialized=True, apps=[running()]), "1/1", "Running", "0"),
        (_init_pod(_started(running(restarts=2)), sidecar="i0", initialized=True, apps=[running()]),
         "2/2", "Running", "2"),
    ],
)
def test_pod_columns_while_initializing(pod: objects_pb2.Pod, ready: str, status: str, restarts: str) -> None:
    assert pod_columns(pod, NOW) == PodColumns(ready, status, restarts)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5.9, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (45 * 86400, "45d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 30 * 86400, "2y30d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert timefmt.human_duration(seconds) == text


def test_age_of_an_unset_timestamp_is_unknown() -> None:
    assert timefmt.age(Timestamp(), NOW) == "<unknown>"
    assert timefmt.age(ts(65), NOW, present=False) == "<unknown>"
    assert timefmt.age(ts(65), NOW) == "65s"


def test_format_time_is_rfc1123_with_numeric_zone() -> None:
    stamp = Timestamp(seconds=int(datetime.datetime(2026, 11, 25, 17, 4, 32, tzinfo=UTC).timestamp()))
    assert timefmt.format_time(stamp, UTC) == "Wed, 25 Nov 2026 17:04:32 +0000"


@pytest.mark.parametrize(
    ("lines", "minwidth", "padding", "expected"),
    [
        (["a\tbb\tc", "aaa\tb\tc"], 0, 2, "a    bb  c\naaa  b   c\n"),
        # A line without a cell in a column ends that column's block.
        (["Name:\tweb", "Containers:", "  web:\tx", "  image-name:\ty"], 0, 2,
         "Name:  web\nContainers:\n  web:         x\n  image-name:  y\n"),
        # Continuation lines with an empty first cell align with the block (labels).
        (["Labels:\ta=1", "\tb=2", "Status:\tRunning"], 0, 2,
         "Labels:  a=1\n         b=2\nStatus:  Running\n"),
        (["NAME\tAGE", "w\t5s"], 6, 3, "NAME   AGE\nw      5s\n"),
    ],
)
def test_tabwrite(lines: list[str], minwidth: int, padding: int, expected: str) -> None:
    assert printers.tabwrite(lines, minwidth, padding) == expected


def test_pod_table_like_kubectl() -> None:
    pods = [make_pod("web", statuses=[running()]), make_pod("db-0", phase="Pending")]
    header = printers.pod_header()
    table = printers.format_table(header, [printers.pod_row(p, NOW) for p in pods])
    assert table == (
        "NAME   READY   STATUS    RESTARTS   AGE\n"
        "web    1/1     Running   0          65s\n"
        "db-0   0/1     Pending   0          65s\n"
    )


def test_pod_columns_for_all_namespaces_wide_and_labels() -> None:
    pod = make_pod(statuses=[running()])
    pod.status.pod_ip, pod.spec.node_name = "172.17.0.3", "n1"
    pod.metadata.labels.update({"tier": "fe", "app": "web"})
    header = printers.table_header(printers.pod_header(wide=True), namespace=True, labels=True)
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "LABELS"]
    row = printers.table_row(pod.metadata, printers.pod_row(pod, NOW, wide=True), namespace=True, labels=True)
    assert row == ["default", "web", "1/1", "Running", "0", "65s", "172.17.0.3", "n1", "app=web,tier=fe"]
    unscheduled = printers.pod_row(make_pod(phase="Pending"), NOW, wide=True)
    assert unscheduled[-2:] == ["<none>", "<none>"]


def test_watch_rows_keep_the_table_columns() -> None:
    header = printers.pod_header()
    first = printers.pod_row(make_pod("web", statuses=[running()]), NOW)
    widths = printers.column_widths([header, first])
    assert printers.format_row(header, widths) == "NAME   READY   STATUS    RESTARTS   AGE\n"
    later = printers.pod_row(make_pod("a-much-longer-name", phase="Pending"), NOW)
    assert printers.format_row(later, widths) == "a-much-longer-name   0/1     Pending   0          65s\n"
    assert widths[0] == len("a-much-longer-name") + 3  # later rows line up with the widest yet


def make_node(
    ready: str | None = "True", unschedulable: bool = False, usage: bool = True
) -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = "n1"
    node.metadata.creation_timestamp.CopyFrom(ts(3 * 86400 + 3600))
    node.spec.unschedulable = unschedulable
    if ready is not None:
        node.status.conditions.add(type="Ready", status=ready, reason="KubeletReady")
    node.status.capacity.update({"cpu": "8", "memory": "16Gi", "pods": "110"})
    node.status.allocatable.update({"cpu": "8", "memory": "15Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="10.0.0.5")
    node.status.addresses.add(type="Hostname", address="n1")
    info = node.status.node_info
    info.kubelet_version, info.os_image, info.kernel_version = "v0.1.0", "Debian 12", "6.1.0"
    info.container_runtime_version = "docker://27.1.1"
    if usage:
        u = node.status.usage
        u.cpu_percent, u.memory_used_bytes, u.memory_available_bytes = 12.4, int(3.1 * 1024**3), 12 * 1024**3
        u.running_pods, u.running_containers = 3, 6
        u.disk_used_bytes, u.disk_total_bytes = 40 * 1024**3, 100 * 1024**3
        u.timestamp.CopyFrom(ts(5))
    return node


@pytest.mark.parametrize(
    ("node", "status"),
    [
        (make_node("True"), "Ready"),
        (make_node("False"), "NotReady"),
        (make_node("Unknown"), "Unknown"),
        (make_node(None), "Unknown"),
        (make_node("True", unschedulable=True), "Ready,SchedulingDisabled"),
        (make_node("Unknown", unschedulable=True), "Unknown,SchedulingDisabled"),
    ],
)
def test_node_status(node: objects_pb2.Node, status: str) -> None:
    assert printers.node_status(node) == status


def test_node_row() -> None:
    row = printers.node_row(make_node(), NOW, wide=True)
    assert row == [
        "n1", "Ready", "12%/8", "3.1Gi/16Gi", "3/110", "3d1h", "v0.1.0",
        "10.0.0.5", "Debian 12", "6.1.0", "docker://27.1.1",
    ]
    assert len(printers.node_header(wide=True)) == len(row)
    assert printers.node_row(make_node(usage=False), NOW)[2:5] == ["<unknown>"] * 3


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (900, "900"), (64 * 1024, "64Ki"), (512 * 1024**2, "512Mi"), (16 * 1024**3, "16Gi"),
     (int(15.5 * 1024**3), "15.5Gi")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert printers.human_bytes(n) == text


def test_list_document_json_and_yaml_shape() -> None:
    items = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}]
    document = printers.list_document(items, "42")
    assert list(document) == ["apiVersion", "kind", "items", "metadata"]
    text = printers.dump_json(document)
    assert text.endswith("}\n") and '\n    "apiVersion": "v1",' in text  # indented 4 like kubectl
    assert json.loads(text) == {
        "apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": "42"},
    }
    assert yaml.safe_load(printers.dump_yaml(document)) == document
    assert printers.dump_yaml(document).startswith("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n")
    assert printers.resource_name("pod", "web") == "pod/web"


def _api_error(code: grpc.StatusCode, message: str) -> errors.ApiError:
    exc = errors.ApiError(message)
    exc.code = code
    return exc


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (errors.NotFound('pods "web" not found'), 'Error from server (NotFound): pods "web" not found'),
        (errors.ValidationError("spec.containers[0].image", "required"),
         "Error from server (Invalid): spec.containers[0].image: required"),
        (errors.AlreadyExists('pods "web" already exists'),
         'Error from server (AlreadyExists): pods "web" already exists'),
        (errors.Conflict("stale resourceVersion"), "Error from server (Conflict): stale resourceVersion"),
        (errors.FailedPrecondition("pod web is not scheduled yet"),
         "Error from server (BadRequest): pod web is not scheduled yet"),
        (errors.ApiError("boom\n  at line 2"), "Error from server (InternalError): boom at line 2"),
        (errors.Unavailable("failed to connect to all addresses; last error: Connection refused"),
         "error: cannot reach the pykube master at 127.0.0.1:6443: failed to connect to all addresses; "
         "last error: Connection refused (is pymaster running? try `make up`)"),
        (errors.Unavailable("node n1 is not reachable"),
         "Error from server (ServiceUnavailable): node n1 is not reachable"),
        (_api_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
         "error: the pykube master at 127.0.0.1:6443 did not answer within 10s (see --request-timeout)"),
        (errors.Forbidden('node "a" may not read pods bound to node "b"'),
         'Error from server (Forbidden): node "a" may not read pods bound to node "b"'),
        (errors.Forbidden("spec.containers[0].securityContext.privileged: not allowed"),
         "Error from server (Forbidden): spec.containers[0].securityContext.privileged: not allowed"),
        (errors.Unauthenticated("certificate expired"),
         "error: You must be logged in to the server (Unauthorized): certificate expired"),
        (errors.Unavailable("failed to connect to all addresses; last error: UNAVAILABLE: "
                            "ipv4:127.0.0.1:6443: Socket closed"),
         "error: TLS handshake with the pykube master at 127.0.0.1:6443 failed: is --config the admin "
         "config of this master? (the master closed the connection: it did not accept the client "
         "certificate)"),
        (errors.Unavailable("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:6443: "
                            "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
                            "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local "
                            "issuer certificate: OK"),
         "error: TLS handshake with the pykube master at 127.0.0.1:6443 failed: is --config the admin "
         "config of this master? (the master's certificate did not verify: unable to get local issuer "
         "certificate)"),
        (errors.Unavailable("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:6444: "
                            "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL "
                            "routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate "
                            "verification context: OK"),
         "error: TLS handshake with the pykube master at 127.0.0.1:6443 failed: is --config the admin "
         "config of this master? (the server does not speak TLS: the master's plaintext join port?)"),
        (errors.Unavailable("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:6443: "
                            "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
                            "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: "
                            "OK"),
         "error: TLS handshake with the pykube master at 127.0.0.1:6443 failed: is --config the admin "
         "config of this master? (the master's certificate did not verify: certificate has expired)"),
        (errors.Unavailable("Socket closed"), "error: cannot reach the pykube master at 127.0.0.1:6443: "
                                              "Socket closed (is pymaster running? try `make up`)"),
    ],
)
def test_format_api_error(exc: errors.ApiError, line: str) -> None:
    assert cli_errors.format_api_error(exc, "127.0.0.1:6443", 10.0) == line


def described_pod() -> objects_pb2.Pod:
    first = running(restarts=1)
    first.name, first.container_id, first.image_id = "web", "docker://abc", "sha256:def"
    first.last_state.terminated.reason, first.last_state.terminated.exit_code = "Error", 1
    first.last_state.terminated.finished_at.CopyFrom(ts(120))
    pod = make_pod(containers=2, statuses=[first, waiting("CrashLoopBackOff", restarts=4)])
    pod.status.container_statuses[1].name = "c1"
    pod.spec.containers[0].name = "web"
    pod.spec.containers[0].ports.add(container_port=80)
    pod.spec.containers[0].env.add(name="FOO", value="bar")
    pod.spec.containers[0].resources.limits.update({"cpu": "500m", "memory": "128Mi"})
    pod.spec.containers[0].resources.requests.update({"cpu": "250m"})
    pod.spec.containers[1].command.extend(["sh", "-c", "exit 1"])
    pod.spec.node_name, pod.status.host_ip, pod.status.pod_ip = "n1", "10.0.0.5", "172.17.0.3"
    pod.status.start_time.CopyFrom(ts(65))
    pod.metadata.labels.update({"app": "web", "tier": "fe"})
    pod.status.conditions.add(type="PodScheduled", status="True")
    pod.status.conditions.add(type="Ready", status="False")
    return pod


def test_describe_pod() -> None:
    text = describe.describe_pod(described_pod(), NOW, UTC)
    lines = text.splitlines()
    assert lines[:4] == ["Name:         web", "Namespace:    default", "Node:         n1/10.0.0.5",
                         "Start Time:   " + timefmt.format_time(ts(65), UTC)]
    assert "Labels:       app=web" in lines and "              tier=fe" in lines
    assert "Status:       Running" in lines and "IP:           172.17.0.3" in lines
    for expected in [
        "  web:", "    Container ID:   docker://abc", "    Port:           80/TCP",
        "    State:          Running", "    Last State:     Terminated", "      Reason:       Error",
        "      Exit Code:    1", "    Ready:          True", "    Restart Count:  1",
        "      cpu:     500m", "      FOO:  bar", "  c1:", "      Reason:       CrashLoopBackOff",
        "    Restart Count:  4", "    Environment:    <none>", "      sh", "Conditions:",
        "  PodScheduled   True ", "QoS Class:       Burstable", "Events:          <none>",
    ]:
        assert expected in lines, expected


def test_describe_terminating_pod() -> None:
    pod = make_pod(statuses=[running()], deleting=True)
    assert "Status:                    Terminating (lasts 30s)" in describe.describe_pod(pod, NOW, UTC)


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}], "BestEffort"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}],
         "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
        ([{"requests": {"memory": "64Mi"}}], "Burstable"),
    ],
)
def test_qos_class(resources: list[dict[str, dict[str, str]]], qos: str) -> None:
    pod = objects_pb2.Pod()
    for i, res in enumerate(resources):
        container = pod.spec.containers.add(name=f"c{i}")
        container.resources.limits.update(res.get("limits", {}))
        container.resources.requests.update(res.get("requests", {}))
    assert qos_class(pod) == qos


def test_describe_node() -> None:
    pod = described_pod()
    done = make_pod("done", phase="Succeeded")
    text = describe.describe_node(make_node(), [pod, done], NOW, UTC)
    lines = text.splitlines()
    assert lines[0].startswith("Name:") and lines[0].endswith(" n1")
    for expected in [
        "Unschedulable:      false", "  InternalIP:  10.0.0.5", "  cpu:     8", "  memory:  16Gi",
        "  Kernel Version:             6.1.0", "  CPU:                 12.4%",
        "  Memory:              3.1Gi used, 12Gi available",
        "  Disk:                40Gi used of 100Gi (40%)",
        "  Running Pods:        3",
    ]:
        assert expected in lines, expected
    # Like kubectl, the pod table's first column shares a block with "Non-terminated Pods:".
    assert [" ".join(line.split()) for line in lines if line.startswith(("Non-", "Events"))] == [
        "Non-terminated Pods: (1 in total)", "Events: <none>",
    ]
    # The pod requests 250m of 8 cores, limits 500m; memory: no request, so its limit (128Mi).
    pod_line = next(line for line in lines if line.startswith("  default"))
    assert pod_line.split() == ["default", "web", "250m", "(3%)", "500m", "(6%)", "128Mi", "(0%)", "128Mi",
                                "(0%)", "65s"]
    assert any(line.split() == ["cpu", "250m", "(3%)", "500m", "(6%)"] for line in lines)
    assert "Ready" in next(line for line in lines if line.startswith("  Ready"))


def test_describe_node_without_a_report() -> None:
    text = describe.describe_node(make_node(ready=None, usage=False), [], NOW, UTC)
    assert "Usage:" in text and "<unknown>" in text and "Non-terminated Pods:" in text


@pytest.mark.parametrize(
    ("probe", "text"),
    [
        ({"exec": {"command": ["cat", "/tmp/healthy"]}}, "exec [cat /tmp/healthy]"),
        ({"httpGet": {"path": "/healthz", "port": {"intValue": 8080}}}, "http-get http://:8080/healthz"),
        ({"httpGet": {"path": "/", "port": {"strValue": "http"}, "scheme": "HTTPS"}}, "http-get https://:http/"),
        ({"tcpSocket": {"port": {"intValue": 5432}}}, "tcp-socket :5432"),
        ({"grpc": {"port": 2379}}, "grpc <pod>:2379 "),
    ],
)
def test_describe_probe_like_kubectl(probe: dict, text: str) -> None:
    message = objects_pb2.Probe(period_seconds=5, timeout_seconds=1, success_threshold=1, failure_threshold=3)
    json_format.ParseDict(probe, message)
    assert describe.describe_probe(message) == f"{text} delay=0s timeout=1s period=5s #success=1 #failure=3"
