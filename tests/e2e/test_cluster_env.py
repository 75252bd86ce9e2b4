"""A container's environment end to end (a real pymaster and pykubelet, the real Docker Engine):
env from the downward API (every field path env may ask for, container resources with divisors),
from ConfigMaps and Secrets (valueFrom and envFrom with a prefix, optional references left out,
invalid keys skipped with an event), $(VAR) expansion in env, command and args with ``$$`` and
unknown names kept, and a pod that waits with CreateContainerConfigError until its ConfigMap
exists, then runs.

One single-node cluster serves the module; every test makes its own objects and waits for the
evidence of what it claims (a log line, a status, an event).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from pymaster.api import objects_pb2
from pymaster.api.manifest import load_pods
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Cluster,
    delete_pods,
    pyctl,
    running_cluster,
    unique,
    wait_event,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Printed by the container once its env is out, so a log holding it holds all of it.
DONE = "--env printed--"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("env"), prefixes=("node-e",)) as c:
        yield c


def _pod(name: str, spec: str, metadata: str = "") -> objects_pb2.Pod:
    spec = textwrap.dedent(spec).replace("BUSYBOX", BUSYBOX)
    manifest = (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{metadata}}}\n"
        "spec:\n  terminationGracePeriodSeconds: 1\n" + textwrap.indent(spec, "  ")
    )
    return load_pods(manifest)[0]


def _meta(name: str) -> objects_pb2.ObjectMeta:
    return objects_pb2.ObjectMeta(name=name, namespace="default")


async def _logs(client: Client, name: str) -> str | None:
    text = b"".join([chunk async for chunk in client.pod_logs(name)]).decode()
    return text if DONE in text else None


async def _printed_logs(client: Client, name: str, what: str) -> str:
    """The container's log once it printed its env; else fails saying what its status shows."""
    try:
        return await wait_for(lambda: _logs(client, name), 60, what)
    except AssertionError as err:
        statuses = (await client.get_pod(name)).status.container_statuses
        raise AssertionError(f"{err}; container statuses: {list(statuses)}") from None


def _printed(logs: str) -> dict[str, str]:
    """NAME=value lines of ``env`` output (values here are one line each)."""
    return dict(line.split("=", 1) for line in logs.splitlines() if "=" in line)


async def test_env_from_the_downward_api_config_maps_secrets_and_expansion(cluster: Cluster) -> None:
    name, conf, creds = unique("env"), unique("conf"), unique("creds")
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            resources: {{limits: {{cpu: 250m, memory: 64Mi}}}}
            # $(CPU_M) is the kubelet's to expand; "$@" and $a are the shell's.
            command: ["sh", "-c", 'env; echo CMD=$(CPU_M); for a in "$@"; do echo "ARG=$a"; done; echo {DONE};
                      sleep 3600', "sh"]
            args: ["$(POD_NAME)", "$$(POD_NAME)", "$(NOPE)", "x-$(mode)-y"]
            envFrom:
              - configMapRef: {{name: {conf}}}
              - prefix: SEC_
                secretRef: {{name: {creds}}}
              - configMapRef: {{name: {unique("ghost")}, optional: true}}
            env:
              - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
              - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
              - {{name: POD_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}
              - {{name: LABEL_K, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['k']"}}}}}}
              - name: NOTE
                valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['example.com/note']"}}}}
              - {{name: NODE_NAME, valueFrom: {{fieldRef: {{apiVersion: v1, fieldPath: spec.nodeName}}}}}}
              - {{name: SA, valueFrom: {{fieldRef: {{fieldPath: spec.serviceAccountName}}}}}}
              - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
              - {{name: POD_IPS, valueFrom: {{fieldRef: {{fieldPath: status.podIPs}}}}}}
              - {{name: HOST_IP, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}
              - {{name: HOST_IPS, valueFrom: {{fieldRef: {{fieldPath: status.hostIPs}}}}}}
              - {{name: CPU_M, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}}}
              - {{name: CPU, valueFrom: {{resourceFieldRef: {{containerName: app, resource: limits.cpu}}}}}}
              - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: requests.memory, divisor: 1Mi}}}}}}
              - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: {conf}, key: mode}}}}}}
              - {{name: TOKEN, valueFrom: {{secretKeyRef: {{name: {creds}, key: token}}}}}}
              - name: NO_KEY
                valueFrom: {{configMapKeyRef: {{name: {conf}, key: absent, optional: true}}}}
              - name: NO_SECRET
                valueFrom: {{secretKeyRef: {{name: {unique("ghost")}, key: k, optional: true}}}}
              - {{name: COMPOSED, value: "$(MODE)/$(TOKEN)/$(greeting)"}}
              - {{name: ESCAPED, value: "$$(MODE)"}}
              - {{name: UNKNOWN, value: "$(NO_KEY)"}}
              - {{name: greeting, value: "hello again"}}
        """, metadata=", labels: {k: v}, annotations: {example.com/note: noted}")
    async with cluster.client() as client:
        await client.create(objects_pb2.ConfigMap(
            metadata=_meta(conf), data={"mode": "fast", "greeting": "hello", "1bad": "skipped"}
        ))
        await client.create(objects_pb2.Secret(metadata=_meta(creds), data={"token": "s3crét".encode()}))
        await client.create_pod(pod)
        logs = await _printed_logs(client, name, f"the env of {name}")
        env = _printed(logs)

        async def addressed() -> objects_pb2.Pod | None:
            # The container prints before its agent's next status report, which has the addresses.
            current = await client.get_pod(name)
            return current if current.status.pod_ip and current.status.host_ip else None

        running = await wait_for(addressed, 30, f"{name} reporting its addresses")
        assert env["POD_NAME"] == name and env["POD_NAMESPACE"] == "default"
        assert env["POD_UID"] == running.metadata.uid
        assert (env["LABEL_K"], env["NOTE"], env["SA"]) == ("v", "noted", "default")
        assert env["NODE_NAME"] == running.spec.node_name == cluster.a.node_name
        # The addresses the pod's status reports (the sandbox's and the node's).
        assert running.status.pod_ip and env["POD_IP"] == env["POD_IPS"] == running.status.pod_ip
        assert running.status.host_ip and env["HOST_IP"] == env["HOST_IPS"] == running.status.host_ip
        assert (env["CPU_M"], env["CPU"], env["MEM_MI"]) == ("250", "1", "64")
        assert (env["MODE"], env["TOKEN"]) == ("fast", "s3crét")
        assert (env["mode"], env["SEC_token"]) == ("fast", "s3crét")  # envFrom, with its prefix
        assert env["greeting"] == "hello again"  # env replaces what envFrom gave
        assert env["COMPOSED"] == "fast/s3crét/hello"  # expanded against what came before it
        assert (env["ESCAPED"], env["UNKNOWN"]) == ("$(MODE)", "$(NO_KEY)")
        assert not {"NO_KEY", "NO_SECRET", "1bad"} & set(env)
        assert env["CMD"] == "250"
        assert [line for line in logs.splitlines() if line.startswith("ARG=")] == [
            f"ARG={name}", "ARG=$(POD_NAME)", "ARG=$(NOPE)", "ARG=x-fast-y",
        ]
        await wait_event(client, name, "InvalidEnvironmentVariableNames",
                     f"Keys [1bad] from the EnvFrom configMap default/{conf} were skipped")
        await delete_pods(client, name)
        await client.delete("configmaps", conf)
        await client.delete("secrets", creds)


async def test_a_pod_waits_for_its_config_map_then_runs(cluster: Cluster) -> None:
    name, conf = unique("waits"), unique("late")
    pod = _pod(name, f"""\
        containers:
          - name: app
            image: BUSYBOX
            command: ["sh", "-c", "echo MODE=$MODE; echo {DONE}; sleep 3600"]
            env:
              - {{name: MODE, valueFrom: {{configMapKeyRef: {{name: {conf}, key: mode}}}}}}
        """)
    async with cluster.client() as client:
        await client.create_pod(pod)

        async def config_error() -> objects_pb2.ContainerStatus | None:
            current = await client.get_pod(name)
            statuses = current.status.container_statuses
            waiting = statuses[0].state.waiting if statuses else None
            if waiting is None or waiting.reason != "CreateContainerConfigError":
                return None
            return statuses[0]

        status = await wait_for(config_error, 60, f"{name} waiting with CreateContainerConfigError")
        assert status.state.waiting.message == f'configmap "{conf}" not found'
        assert (await client.get_pod(name)).status.phase == "Pending"
        await wait_event(client, name, "Failed", f'Error: configmap "{conf}" not found')
        listed = pyctl(cluster.master, "get", "pod", name)
        assert "CreateContainerConfigError" in listed.stdout, listed.stdout

        await client.create(objects_pb2.ConfigMap(metadata=_meta(conf), data={"mode": "late but here"}))
        logs = await _printed_logs(client, name, f"{name} running once {conf} exists")
        assert "MODE=late but here" in logs.splitlines()

        async def running() -> objects_pb2.Pod | None:
            # The container prints before its agent's next status report says Running.
            current = await client.get_pod(name)
            return current if current.status.phase == "Running" else None

        pod_now = await wait_for(running, 30, f"{name} Running")
        assert pod_now.status.container_statuses[0].restart_count == 0  # it never ran before
        await delete_pods(client, name)
        await client.delete("configmaps", conf)
