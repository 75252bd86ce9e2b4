"""pyctl's workload verbs against the real master in-process (no agent, no Docker; the master's
controllers run but no pod ever starts): apply of a file mixing kinds, get of several workload
kinds, describe, scale, set image, rollout history/undo/pause/resume/restart/status and delete
--cascade. Revisions are made by the test (ReplicaSets with the Deployment controller's
annotations, owned by the Deployment), so history and undo do not depend on the controller."""

from __future__ import annotations

import re

import pytest
from test_cli_commands import NOW, Pyctl

from pymaster.api import errors, objects_pb2
from pymaster.api.workloads import controller_reference
from pymaster.app import MasterApp
from pymaster.cli import rollout
from pymaster.client import Client

CONTAINER = "{name: app, image: 'busybox:1.35', command: [sleep, '3600']}"
DEPLOYMENT = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    "spec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n"
    f"  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{CONTAINER}]}}\n"
)
MIXED = "---\n".join([
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1'}\n",
    DEPLOYMENT,
    "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\n"
    "spec:\n  selector: {matchLabels: {app: agent}}\n"
    f"  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec: {{containers: [{CONTAINER}]}}\n",
    "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n  completions: 3\n"
    "  template:\n    spec: {restartPolicy: Never, containers: [{name: pi, image: 'busybox:1.35'}]}\n",
])


@pytest.fixture
def pyctl(master: MasterApp) -> Pyctl:
    return Pyctl(master)


async def test_apply_mixed_file_then_get_several_workload_kinds(pyctl: Pyctl) -> None:
    code, out, err = await pyctl("apply", "-f", "-", stdin=MIXED)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["configmap/settings created", "deployment.apps/web created",
                                "daemonset.apps/agent created", "job.batch/pi created"]
    code, out, _ = await pyctl("apply", "-f", "-", stdin=MIXED)
    assert out.splitlines() == ["configmap/settings unchanged", "deployment.apps/web unchanged",
                                "daemonset.apps/agent unchanged", "job.batch/pi unchanged"]
    changed = MIXED.replace("replicas: 2", "replicas: 3")
    _, out, _ = await pyctl("apply", "-f", "-", stdin=changed)
    assert out.splitlines()[1] == "deployment.apps/web configured"

    code, out, _ = await pyctl("get", "deploy,ds,jobs")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:2] == ["deployment.apps/web", "0/3"]
    ds_header = next(i for i, line in enumerate(lines) if line.startswith("NAME") and "NODE SELECTOR" in line)
    assert lines[ds_header].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                        "NODE", "SELECTOR", "AGE"]
    assert lines[ds_header + 1].startswith("daemonset.apps/agent ")
    job_line = next(line for line in lines if line.startswith("job.batch/pi"))
    assert job_line.split()[2] == "0/3"
    _, out, _ = await pyctl("get", "deploy", "web", "-o", "wide")
    assert out.splitlines()[1].split()[-3:] == ["app", "busybox:1.35", "app=web"]
    _, out, _ = await pyctl("get", "deployments,jobs", "-o", "name")
    assert out.splitlines() == ["deployment.apps/web", "job.batch/pi"]
    _, out, _ = await pyctl("get", "job", "pi", "-o", "yaml")
    assert "kind: Job" in out and "batch.kubernetes.io/controller-uid" in out


async def _revision(client: Client, deployment: objects_pb2.Deployment, number: int, image: str,
                    cause: str = "") -> objects_pb2.ReplicaSet:
    """A ReplicaSet of the Deployment as its controller makes them, at revision ``number``."""
    rs = objects_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name, rs.metadata.namespace = f"web-rev{number}", "default"
    rs.metadata.annotations["deployment.kubernetes.io/revision"] = str(number)
    if cause:
        rs.metadata.annotations["kubernetes.io/change-cause"] = cause
    rs.metadata.owner_references.append(controller_reference(deployment))
    rs.spec.replicas = 0
    rs.spec.selector.CopyFrom(deployment.spec.selector)
    rs.spec.template.CopyFrom(deployment.spec.template)
    rs.spec.template.metadata.labels["pod-template-hash"] = f"h{number}"
    rs.metadata.labels.update(rs.spec.template.metadata.labels)
    rs.spec.template.spec.containers[0].image = image
    return await client.create(rs)


async def test_rollout_history_undo_pause_resume_restart(pyctl: Pyctl, master: MasterApp) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=DEPLOYMENT.replace("busybox:1.35", "busybox:3")))[0] == 0
    async with Client(config_path=pyctl.config) as client:
        deployment = await client.get("deployments", "web")
        # Numbers above the controller's own (its ReplicaSet of the current template may be listed too).
        await _revision(client, deployment, 11, "busybox:1", cause="first")
        await _revision(client, deployment, 12, "busybox:2")

    _, out, _ = await pyctl("rollout", "history", "deployment/web")
    lines = out.splitlines()
    assert lines[:2] == ["deployment.apps/web", "REVISION  CHANGE-CAUSE"] and lines[-1] == ""
    assert {"11        first", "12        <none>"} <= set(lines), out
    _, out, _ = await pyctl("rollout", "history", "deploy", "web", "--revision", "11")
    assert out.startswith("deployment.apps/web with revision #11\nPod Template:\n")
    assert re.search(r"\n    Image: +busybox:1\n", out) and "pod-template-hash=h11" in out
    code, _, err = await pyctl("rollout", "history", "deploy/web", "--revision", "9")
    assert (code, err) == (1, "error: unable to find the specified revision\n")

    code, out, _ = await pyctl("rollout", "undo", "deployment/web", "--to-revision", "11")
    assert (code, out) == (0, "deployment.apps/web rolled back\n")
    async with Client(config_path=pyctl.config) as client:
        undone = await client.get("deployments", "web")
    assert undone.spec.template.spec.containers[0].image == "busybox:1"
    assert "pod-template-hash" not in undone.spec.template.metadata.labels
    assert undone.metadata.annotations["kubernetes.io/change-cause"] == "first"
    # The controller now renumbers web-rev11 as its newest revision, as Kubernetes does.
    code, _, err = await pyctl("rollout", "undo", "deployment/web", "--to-revision", "7")
    assert (code, err) == (1, "error: unable to find specified revision 7 in history\n")

    assert (await pyctl("rollout", "pause", "deployment/web"))[1] == "deployment.apps/web paused\n"
    code, _, err = await pyctl("rollout", "pause", "deployment/web")
    assert (code, err) == (1, 'error: deployments.apps "web" is already paused\n')
    code, _, err = await pyctl("rollout", "undo", "deployment/web")
    assert code == 1 and "you cannot rollback a paused deployment" in err
    code, _, err = await pyctl("rollout", "restart", "deployment/web")
    assert code == 1 and "can't restart paused deployment (run rollout resume first)" in err
    assert (await pyctl("rollout", "resume", "deployment/web"))[1] == "deployment.apps/web resumed\n"
    code, _, err = await pyctl("rollout", "resume", "deployment/web")
    assert (code, err) == (1, 'error: deployments.apps "web" is not paused\n')

    assert (await pyctl("rollout", "restart", "deployment/web"))[1] == "deployment.apps/web restarted\n"
    async with Client(config_path=pyctl.config) as client:
        restarted = await client.get("deployments", "web")
    annotation = restarted.spec.template.metadata.annotations[rollout.RESTARTED_AT]
    assert annotation == rollout.restarted_at(NOW)


async def test_rollout_status_without_watch_and_with_timeout(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=DEPLOYMENT))[0] == 0
    # No agent runs the pods, so the rollout never finishes.
    code, out, _ = await pyctl("rollout", "status", "deployment/web", "--watch=false")
    assert code == 0 and out.startswith("Waiting for ")
    code, out, err = await pyctl("rollout", "status", "deployment/web", "--timeout", "300ms")
    assert (code, err) == (1, "error: timed out waiting for the condition\n")
    assert out.startswith("Waiting for ")


async def test_scale_and_set_image(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=DEPLOYMENT))[0] == 0
    assert (await pyctl("scale", "deployment/web", "--replicas", "5"))[1] == "deployment.apps/web scaled\n"
    code, _, err = await pyctl("scale", "deploy", "web", "--replicas", "1", "--current-replicas", "4")
    assert (code, err) == (1, "error: Expected replicas to be 4, was 5\n")
    code, _, err = await pyctl("scale", "deploy", "web", "--replicas", "1", "--current-replicas", "5")
    assert (code, err) == (0, "")
    async with Client(config_path=pyctl.config) as client:
        assert (await client.get("deployments", "web")).spec.replicas == 1

    assert (await pyctl("set", "image", "deployment/web", "app=busybox:1.36")) == (
        0, "deployment.apps/web image updated\n", "")
    code, _, err = await pyctl("set", "image", "deployment/web", "nope=busybox:1.36")
    assert (code, err) == (1, 'error: unable to find container named "nope"\n')
    async with Client(config_path=pyctl.config) as client:
        deployment = await client.get("deployments", "web")
    assert deployment.spec.template.spec.containers[0].image == "busybox:1.36"


async def test_describe_each_workload_kind(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=MIXED))[0] == 0
    _, out, _ = await pyctl("describe", "deployment", "web")
    assert out.startswith("Name:                   web\nNamespace:              default\n"
                          "CreationTimestamp:  ")
    assert "\nReplicas:               2 desired | " in out
    assert "\nRollingUpdateStrategy:  25% max unavailable, 25% max surge\n" in out
    template = r"\nPod Template:\n  Labels: +app=web\n  Containers:\n   app:\n    Image: +busybox:1.35\n"
    assert re.search(template, out)
    assert "\nNewReplicaSet:" in out
    _, out, _ = await pyctl("describe", "ds/agent")
    assert "\nPods Status:  " in out or "Pods Status:" in out
    _, out, _ = await pyctl("describe", "jobs", "pi")
    assert "\nCompletions:      3\n" in out and "\nPods Statuses:" in out


async def test_delete_cascade_modes_reach_the_server(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=MIXED))[0] == 0
    code, out, err = await pyctl("delete", "deployment", "web", "--cascade=orphan")
    assert (code, out, err) == (0, 'deployment.apps "web" deleted\n', "")
    code, out, err = await pyctl("delete", "jobs", "--all", "--cascade=false", "--wait=false")
    assert (code, out) == (0, 'job.batch "pi" deleted\n')
    assert err == ("warning: --cascade=false is deprecated (boolean value) and can be replaced with "
                   "--cascade=orphan.\n")
    code, out, _ = await pyctl("delete", "-f", "-", "--cascade=foreground", "--wait=false", stdin=MIXED)
    assert 'daemonset.apps "agent" deleted' in out


async def test_delete_takes_names_of_several_types(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=MIXED))[0] == 0
    code, out, err = await pyctl("delete", "deploy/web", "job/pi", "--wait=false")
    assert (code, out, err) == (0, 'deployment.apps "web" deleted\njob.batch "pi" deleted\n', "")


async def test_logs_of_a_workload_reads_its_first_pod(pyctl: Pyctl) -> None:
    assert (await pyctl("apply", "-f", "-", stdin=DEPLOYMENT))[0] == 0
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-by-hand, labels: {app: web}}\n" \
          f"spec: {{containers: [{CONTAINER}]}}\n"
    assert (await pyctl("apply", "-f", "-", stdin=pod))[0] == 0
    with pytest.raises(errors.ApiError) as caught:  # no agent runs it: the master names the pod asked for
        await pyctl("logs", "deploy/web")
    assert "web-" in str(caught.value)
    with pytest.raises(errors.NotFound, match='jobs "none" not found'):
        await pyctl("logs", "job/none")
