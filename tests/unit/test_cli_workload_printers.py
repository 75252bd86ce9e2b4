"""pyctl's pure workload pieces: the get columns of deployments, replicasets, daemonsets and jobs,
their describe layouts, the rollout status messages, undo's plan, set image's edit, and the command
lines of scale, rollout, set image, delete --cascade and logs TYPE/NAME."""

from __future__ import annotations

import datetime

import pytest
from google.protobuf import json_format

from pymaster.api import objects_pb2
from pymaster.cli import describe_workloads as dw
from pymaster.cli import rollout, rollout_status
from pymaster.cli import workload_printers as wp
from pymaster.cli.context import CommandError
from pymaster.cli.main import parse_args
from pymaster.cli.set_image import set_images
from pymaster.cli.targets import UsageError

NOW = 1_700_000_000.0
UTC = datetime.UTC


def _template(image: str = "nginx:1.25", labels: dict[str, str] | None = None) -> dict:
    return {"metadata": {"labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}


def deployment(**status: int) -> objects_pb2.Deployment:
    d = json_format.ParseDict({
        "metadata": {"name": "web", "namespace": "default", "generation": 2,
                     "creationTimestamp": "2023-11-14T22:11:20Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": _template(),
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": {"strValue": "25%"},
                                                "maxSurge": {"strValue": "25%"}}}},
    }, objects_pb2.Deployment())
    d.status.observed_generation = 2
    for field, value in status.items():
        setattr(d.status, field, value)
    return d


def test_deployment_columns() -> None:
    d = deployment(ready_replicas=2, updated_replicas=3, available_replicas=2)
    assert wp.deployment_header() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert wp.deployment_row(d, NOW) == ["web", "2/3", "3", "2", "2m"]
    assert wp.deployment_row(d, NOW, wide=True)[-3:] == ["web", "nginx:1.25", "app=web"]
    assert wp.deployment_header(wide=True)[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]


def test_replica_set_and_daemon_set_columns() -> None:
    rs = objects_pb2.ReplicaSet()
    rs.metadata.name = "web-abc"
    rs.spec.replicas = 3
    rs.status.replicas, rs.status.ready_replicas = 2, 1
    assert wp.replica_set_header() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert wp.replica_set_row(rs, NOW) == ["web-abc", "3", "2", "1", "<unknown>"]
    ds = objects_pb2.DaemonSet()
    ds.metadata.name = "agent"
    ds.spec.template.spec.node_selector["disk"] = "ssd"
    ds.status.desired_number_scheduled = ds.status.current_number_scheduled = 3
    ds.status.number_ready, ds.status.updated_number_scheduled, ds.status.number_available = 2, 3, 1
    assert wp.daemon_set_header() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                      "NODE SELECTOR", "AGE"]
    assert wp.daemon_set_row(ds, NOW)[:7] == ["agent", "3", "3", "2", "3", "1", "disk=ssd"]


@pytest.mark.parametrize(
    ("conditions", "deleting", "expected"),
    [
        ([], False, "Running"),
        ([("Complete", "True")], False, "Complete"),
        ([("Failed", "True")], True, "Failed"),
        ([("Failed", "False")], True, "Terminating"),
        ([("Suspended", "True")], False, "Suspended"),
    ],
)
def test_job_status_column(conditions: list[tuple[str, str]], deleting: bool, expected: str) -> None:
    job = objects_pb2.Job()
    for type_, status in conditions:
        job.status.conditions.add(type=type_, status=status)
    if deleting:
        job.metadata.deletion_timestamp.FromSeconds(int(NOW))
    assert wp.job_status(job) == expected


def test_job_completions_and_duration() -> None:
    job = objects_pb2.Job()
    job.metadata.name = "pi"
    job.spec.completions, job.spec.parallelism = 5, 2
    job.status.succeeded = 2
    job.status.start_time.FromSeconds(int(NOW) - 90)
    assert wp.job_row(job, NOW)[:4] == ["pi", "Running", "2/5", "90s"]
    job.status.completion_time.FromSeconds(int(NOW) - 30)
    assert wp.job_duration(job, NOW) == "60s"
    job.ClearField("spec")
    job.spec.parallelism = 3
    assert wp.job_completions(job) == "2/1 of 3"
    assert wp.job_duration(objects_pb2.Job(), NOW) == ""


def test_describe_deployment_layout() -> None:
    d = deployment(replicas=3, updated_replicas=3, available_replicas=3)
    new = objects_pb2.ReplicaSet()
    new.metadata.name = "web-5d4f"
    new.spec.replicas, new.status.replicas = 3, 3
    d.status.conditions.add(type="Available", status="True", reason="MinimumReplicasAvailable")
    text = dw.describe_deployment(d, [], new, NOW, tz=UTC, events=[])
    assert text.splitlines()[:12] == [
        "Name:                   web",
        "Namespace:              default",
        "CreationTimestamp:      Tue, 14 Nov 2023 22:11:20 +0000",
        "Labels:                 <none>",
        "Annotations:            <none>",
        "Selector:               app=web",
        "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "MinReadySeconds:        0",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "  Labels:  app=web",
    ]
    assert text.endswith(
        "Conditions:\n  Type           Status  Reason\n  ----           ------  ------\n"
        "  Available      True    MinimumReplicasAvailable\n"
        "OldReplicaSets:  <none>\nNewReplicaSet:   web-5d4f (3/3 replicas created)\nEvents:          <none>\n"
    )


def test_describe_replica_set_daemon_set_job() -> None:
    rs = objects_pb2.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace = "web-5d4f", "default"
    rs.metadata.owner_references.add(kind="Deployment", name="web", controller=True)
    rs.spec.replicas, rs.status.replicas = 3, 2
    pods = dw.PodCounts(running=2, waiting=1)
    text = dw.describe_replica_set(rs, pods, NOW, events=None)
    assert "Controlled By:  Deployment/web\n" in text
    assert "Replicas:       2 current / 3 desired\n" in text
    assert "Pods Status:    2 Running / 1 Waiting / 0 Succeeded / 0 Failed\n" in text
    ds = objects_pb2.DaemonSet()
    ds.metadata.name = "agent"
    ds.status.desired_number_scheduled = 3
    lines = dw.describe_daemon_set(ds, pods, NOW, events=None).splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == ["Name", "Namespace", "Selector", "Node-Selector"]
    assert "Desired Number of Nodes Scheduled:               3" in lines
    job = objects_pb2.Job()
    job.metadata.name = "pi"
    job.spec.completions, job.spec.backoff_limit = 5, 4
    job.status.active, job.status.succeeded, job.status.failed = 2, 1, 2
    job.status.start_time.FromSeconds(int(NOW) - 60)
    text = dw.describe_job(job, dw.PodCounts(ready=1), NOW, tz=UTC, events=None)
    assert "\nCompletions:      5\n" in text and "\nBackoff Limit:    4\n" in text
    assert "\nPods Statuses:    2 Active (1 Ready) / 1 Succeeded / 2 Failed\n" in text


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({"updated_replicas": 1, "replicas": 3}, 2,
         'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...'),
        ({"updated_replicas": 3, "replicas": 4}, 2,
         'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...'),
        ({"updated_replicas": 3, "replicas": 3, "available_replicas": 2}, 2,
         'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...'),
        ({"updated_replicas": 3, "replicas": 3, "available_replicas": 3}, 2,
         'deployment "web" successfully rolled out'),
        ({}, 3, "Waiting for deployment spec update to be observed..."),
    ],
)
def test_deployment_rollout_status(status: dict[str, int], generation: int, expected: str) -> None:
    d = deployment(**status)
    d.metadata.generation = generation
    message, done = rollout_status.deployment_status(d)
    assert message == expected and done == expected.endswith("rolled out")


def test_deployment_rollout_status_progress_deadline() -> None:
    d = deployment()
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(rollout_status.RolloutFailed, match='deployment "web" exceeded its progress deadline'):
        rollout_status.deployment_status(d)


def test_daemon_set_rollout_status() -> None:
    ds = objects_pb2.DaemonSet()
    ds.metadata.name = "agent"
    ds.status.desired_number_scheduled, ds.status.updated_number_scheduled = 3, 1
    assert rollout_status.daemon_set_status(ds) == (
        'Waiting for daemon set "agent" rollout to finish: 1 out of 3 new pods have been updated...', False)
    ds.status.updated_number_scheduled = ds.status.number_available = 3
    assert rollout_status.daemon_set_status(ds) == ('daemon set "agent" successfully rolled out', True)
    ds.spec.update_strategy.type = "OnDelete"
    with pytest.raises(rollout_status.RolloutFailed, match="only available for RollingUpdate"):
        rollout_status.daemon_set_status(ds)


def _rs(number: int, image: str) -> objects_pb2.ReplicaSet:
    rs = objects_pb2.ReplicaSet()
    rs.metadata.annotations["deployment.kubernetes.io/revision"] = str(number)
    rs.spec.template.CopyFrom(json_format.ParseDict(_template(image), objects_pb2.PodTemplateSpec()))
    rs.spec.template.metadata.labels["pod-template-hash"] = f"h{number}"
    return rs


def test_undo_plan_and_history() -> None:
    d = deployment()
    revisions = {1: _rs(1, "nginx:1.24"), 2: _rs(2, "nginx:1.25")}
    assert rollout.previous_revision(revisions) == 1 and rollout.previous_revision({3: _rs(3, "x")}) == 0
    assert rollout.plan_undo(d, revisions, 0) == (1, revisions[1])
    assert rollout.plan_undo(d, revisions, 2) == (2, None)  # the current template: skipped
    with pytest.raises(CommandError, match="unable to find specified revision 7 in history"):
        rollout.plan_undo(d, revisions, 7)
    with pytest.raises(CommandError, match='no rollout history found for deployment "web"'):
        rollout.plan_undo(d, {2: revisions[2]}, 0)
    d.spec.paused = True
    with pytest.raises(CommandError, match="you cannot rollback a paused deployment"):
        rollout.plan_undo(d, revisions, 1)
    revisions[1].metadata.annotations["kubernetes.io/change-cause"] = "pyctl set image"
    assert rollout.history_table(revisions) == (
        "REVISION  CHANGE-CAUSE\n1         pyctl set image\n2         <none>\n")


def test_restarted_at_is_rfc3339() -> None:
    text = rollout.restarted_at(NOW)
    assert datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() == NOW


def test_set_images() -> None:
    containers = [{"name": "web", "image": "b"}, {"name": "log", "image": "c"}]
    init = [{"name": "init", "image": "a"}]
    spec = json_format.ParseDict({"initContainers": init, "containers": containers}, objects_pb2.PodSpec())
    set_images(spec, {"web": "b:2"})
    assert [c.image for c in spec.containers] == ["b:2", "c"]
    set_images(spec, {"*": "z"})
    assert [c.image for c in [*spec.init_containers, *spec.containers]] == ["z", "z", "z"]
    with pytest.raises(CommandError, match='unable to find container named "x"'):
        set_images(spec, {"x": "y"})


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        ("delete deploy web", "propagation_policy", ""),
        ("delete deploy web --cascade=foreground", "propagation_policy", "Foreground"),
        ("delete deploy web --cascade=orphan", "propagation_policy", "Orphan"),
        ("delete deploy web --cascade=false", "propagation_policy", "Orphan"),
        ("delete deploy web --cascade", "propagation_policy", ""),
        ("scale deployment/web --replicas 3", "names", ["web"]),
        ("scale rs web --replicas 0 --current-replicas 2", "current_replicas", 2),
        ("rollout status deploy/web --watch=false", "watch", False),
        ("rollout status deploy/web", "watch", True),
        ("rollout undo deployment web --to-revision 2", "to_revision", 2),
        ("set image deployment/web web=nginx:2 log=x", "images", {"web": "nginx:2", "log": "x"}),
        ("set image pod/web web=nginx:2", "resource", "pods"),
        ("logs job/pi", "owner", "jobs"),
        ("logs deploy/web -c app", "owner", "deployments"),
        ("logs pod/web", "owner", ""),
        ("get pods --watch=false", "watch", False),
    ],
)
def test_workload_command_lines(argv: str, field: str, expected: object) -> None:
    assert getattr(parse_args(argv.split()), field) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("delete deploy web --cascade=sideways", 'invalid cascade value (sideways). Must be "background", '
                                                 '"foreground", or "orphan".'),
        ("scale deploy/web", "The --replicas=COUNT flag is required"),
        ("scale pod/web --replicas 2", "cannot scale pods: only deployments, replicasets scale"),
        ("rollout status job/pi", 'no status viewer has been implemented for "Job.batch"'),
        ("rollout history ds/agent", 'no history viewer has been implemented for "DaemonSet.apps"'),
        ("rollout undo ds/agent", 'no rollbacker has been implemented for "DaemonSet.apps"'),
        ("rollout status deploy", "required resource not specified"),
        ("set image deploy/web", "at least one image update is required"),
        ("set image cm/x a=b", "configmaps have no containers to set"),
    ],
)
def test_workload_usage_errors(argv: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv.split())
    assert message in caught.value.message
