"""ConfigMaps, Secrets and the generic editing verbs end to end: the real pyctl against a real
pymaster and pykubelet (the real Docker Engine). pyctl creates ConfigMaps and Secrets from
literals and files, lists both kinds at once, describes a Secret without its values and round
trips ``-o yaml`` through ``apply``; label, annotate and patch change a pod and a node (an
admin's extended resource survives the agent's status reports); Secrets are encrypted in the
master's database; and a node's own certificate reads a Secret only while a pod bound to it
references it.

One single-node cluster serves the module; every test makes its own objects and waits for the
evidence of what it claims, never for a fixed time.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from pymaster.api import errors, objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import BUSYBOX, Cluster, pyctl, running_cluster, unique, wait_for, wait_pod_gone

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("config-objects"), prefixes=("node-c",)) as c:
        yield c


def run(cluster: Cluster, *args: str, stdin: str | None = None, code: int = 0) -> str:
    """pyctl's stdout, after checking its exit code."""
    done = pyctl(cluster.master, *args, stdin=stdin)
    assert done.returncode == code, f"pyctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout if code == 0 else done.stderr


def test_config_maps_and_secrets_through_pyctl(cluster: Cluster, tmp_path: Path) -> None:
    cm, secret = unique("app"), unique("db")
    (tmp_path / "app.conf").write_text("color=blue\n")
    (tmp_path / "password").write_text("from-a-file")
    assert run(cluster, "create", "configmap", cm, "--from-literal", "mode=fast",
               "--from-file", str(tmp_path / "app.conf")) == f"configmap/{cm} created\n"
    assert run(cluster, "create", "secret", "generic", secret, "--from-literal", "user=admin",
               "--from-file", str(tmp_path / "password")) == f"secret/{secret} created\n"

    table = run(cluster, "get", "cm,secrets").splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and f"configmap/{cm}" in table[1]
    assert table[1].split()[1] == "2"
    secrets_table = table[table.index("") + 1:]
    assert secrets_table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert [line.split()[:3] for line in secrets_table[1:]] == [[f"secret/{secret}", "Opaque", "2"]]

    described = run(cluster, "describe", "secret", secret)
    assert "password:  11 bytes" in described and "user:      5 bytes" in described
    assert "from-a-file" not in described and base64.b64encode(b"from-a-file").decode() not in described
    assert "color=blue" in run(cluster, "describe", "configmap", cm)

    document = run(cluster, "get", "secret", secret, "-o", "yaml")
    assert yaml.safe_load(document)["data"]["password"] == base64.b64encode(b"from-a-file").decode()
    # Created, not applied: the first apply adds the last-applied record, the next changes nothing.
    assert run(cluster, "apply", "-f", "-", stdin=document) == f"secret/{secret} configured\n"
    document = run(cluster, "get", "secret", secret, "-o", "yaml")
    assert run(cluster, "apply", "-f", "-", stdin=document) == f"secret/{secret} unchanged\n"
    rotated = document.replace(base64.b64encode(b"admin").decode(), base64.b64encode(b"root").decode())
    assert run(cluster, "apply", "-f", "-", stdin=rotated) == f"secret/{secret} configured\n"
    assert yaml.safe_load(run(cluster, "get", "secret", secret, "-o", "json"))["data"]["user"] == "cm9vdA=="

    raw = b"".join(p.read_bytes() for p in cluster.master.data_dir.glob("pykube.db*"))
    assert b"from-a-file" not in raw and b"color=blue" in raw  # Secrets only are encrypted at rest

    assert run(cluster, "delete", "cm", cm) == f'configmap "{cm}" deleted\n'
    assert run(cluster, "delete", "secret", secret) == f'secret "{secret}" deleted\n'
    assert "NotFound" in run(cluster, "get", "secret", secret, code=1)


async def test_label_annotate_and_patch_a_pod_and_a_node(cluster: Cluster) -> None:
    name, node = unique("edit"), cluster.a.node_name
    manifest = (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n"
                f"spec:\n  terminationGracePeriodSeconds: 1\n"
                f"  containers: [{{name: app, image: {BUSYBOX}, command: [sleep, '3600']}}]\n")
    run(cluster, "apply", "-f", "-", stdin=manifest)
    assert run(cluster, "label", "pod", name, "tier=front") == f"pod/{name} labeled\n"
    assert "already has a value (front)" in run(cluster, "label", "pod", name, "tier=back", code=1)
    assert run(cluster, "annotate", f"pod/{name}", "owner=team-a") == f"pod/{name} annotated\n"
    assert run(cluster, "patch", "pod", name, "--type", "merge",
               "-p", '{"metadata":{"labels":{"tier":null,"patched":"yes"}}}') == f"pod/{name} patched\n"
    pod = yaml.safe_load(run(cluster, "get", "pod", name, "-o", "yaml"))
    assert pod["metadata"]["labels"] == {"patched": "yes"}
    annotations = pod["metadata"]["annotations"]
    assert annotations.pop("kubectl.kubernetes.io/last-applied-configuration")  # applied
    assert annotations == {"owner": "team-a"}

    assert run(cluster, "label", "node", node, "disk=ssd") == f"node/{node} labeled\n"
    cordon = '{"spec":{"unschedulable":true}}'
    assert run(cluster, "patch", "node", node, "-p", cordon) == f"node/{node} patched\n"
    assert "SchedulingDisabled" in run(cluster, "get", "node", node)
    run(cluster, "patch", "node", node, "-p", '{"spec":{"unschedulable":null}}')
    dongles = '{"status":{"capacity":{"example.com/dongle":"4"}}}'
    assert run(cluster, "patch", "node", node, "--subresource", "status", "--type", "merge",
               "-p", dongles) == f"node/{node} patched\n"
    patched_at = time.time()
    async with cluster.client() as client:

        async def reported_since() -> objects_pb2.Node | None:
            current = await client.get_node(node)
            usage = current.status.usage.timestamp
            return current if usage.seconds + usage.nanos / 1e9 > patched_at + 1 else None

        # The agent reported its status (every second) after the patch: the admin's resource stays.
        reported = await wait_for(reported_since, 30, f"a status report of {node} after the patch")
        assert reported.status.capacity["example.com/dongle"] == "4"
        assert reported.status.allocatable["example.com/dongle"] == "4"
        assert reported.metadata.labels["disk"] == "ssd" and not reported.spec.unschedulable
        await client.delete_pod(name)
        await wait_pod_gone(client, name)
    run(cluster, "patch", "node", node, "--subresource", "status", "--type", "merge",
        "-p", '{"status":{"capacity":{"example.com/dongle":null}}}')
    run(cluster, "label", "node", node, "disk-")


async def test_a_node_reads_a_secret_only_while_a_pod_bound_to_it_references_it(cluster: Cluster) -> None:
    secret, pod_name, node = unique("token"), unique("reader"), cluster.a.node_name
    run(cluster, "create", "secret", "generic", secret, "--from-literal", "token=s3cret")
    pod = load_pods(
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod_name}}}\n"
        f"spec:\n  terminationGracePeriodSeconds: 1\n"
        f"  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
        f"    env: [{{name: TOKEN, valueFrom: {{secretKeyRef: {{name: {secret}, key: token}}}}}}]\n"
    )[0]
    async with cluster.client() as admin, Client(config=cluster.a.node_config(), timeout=10) as as_node:

        async def node_read() -> objects_pb2.Secret | grpc.StatusCode:
            try:
                return await as_node.get("secrets", secret)
            except errors.Forbidden:
                return grpc.StatusCode.PERMISSION_DENIED

        refusal = f'node "{node}" may not read secret default/{secret}: no pod bound to it references it'
        with pytest.raises(errors.Forbidden, match=refusal):
            await as_node.get("secrets", secret)
        with pytest.raises(errors.Forbidden, match="may not list secrets"):
            await as_node.list("secrets")

        await admin.create_pod(pod)
        await wait_for(lambda: _bound(admin, pod_name, node), 30, f"{pod_name} bound to {node}")
        read = await wait_for(lambda: _readable(node_read), 30, f"{node} reading {secret}")
        assert dict(read.data) == {"token": b"s3cret"}

        await admin.delete_pod(pod_name)
        await wait_pod_gone(admin, pod_name)
        await wait_for(lambda: _denied(node_read), 30, f"{node} refused {secret} once the pod is gone")
    run(cluster, "delete", "secret", secret)


async def _bound(client: Client, name: str, node: str) -> bool:
    return (await client.get_pod(name)).spec.node_name == node


async def _readable(read) -> objects_pb2.Secret | None:
    result = await read()
    return result if isinstance(result, objects_pb2.Secret) else None


async def _denied(read) -> bool:
    return await read() == grpc.StatusCode.PERMISSION_DENIED
