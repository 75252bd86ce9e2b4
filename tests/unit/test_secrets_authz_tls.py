"""The node authorizer rule for ConfigMaps and Secrets over real mutual TLS: a node that joined
with the token reads a Secret or ConfigMap only while a pod bound to it references it, and never
lists, watches or writes them; the admin does everything."""

from __future__ import annotations

import grpc
from master_fixtures import eventually, join, node_manifest, pod_manifest, rpc_error

from pymaster.api import objects_pb2


def secret(name: str) -> objects_pb2.Secret:
    s = objects_pb2.Secret(string_data={"password": f"{name}-value"})
    s.metadata.name = name
    return s


def config_map(name: str) -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(data={"app.conf": "x=1"})
    cm.metadata.name = name
    return cm


def referencing_pod(node: str) -> objects_pb2.Pod:
    """A pod bound to ``node`` with the Secret "db" in its env, the ConfigMap "cfg" as a volume and
    the Secret "absent" (that does not exist) as an optional env source."""
    pod = pod_manifest("web", node_name=node)
    container = pod.spec.containers[0]
    var = container.env.add(name="PASSWORD")
    var.value_from.secret_key_ref.name, var.value_from.secret_key_ref.key = "db", "password"
    container.env_from.add().secret_ref.name = "absent"
    container.env_from[0].secret_ref.optional = True
    pod.spec.volumes.add(name="config").config_map.name = "cfg"
    container.volume_mounts.add(name="config", mount_path="/etc/app")
    return pod


def denied(node: str, what: str) -> tuple[grpc.StatusCode, str]:
    message = f'node "{node}" may not read {what}: no pod bound to it references it'
    return grpc.StatusCode.PERMISSION_DENIED, message


async def test_a_node_reads_a_secret_only_while_its_pod_references_it(master, resources) -> None:
    a, b = await join(master, "a"), await join(master, "b")
    async with a.channel, b.channel:
        await a.agent.RegisterNode(node_manifest("a"))
        await b.agent.RegisterNode(node_manifest("b"))
        for obj in (secret("db"), secret("other"), config_map("cfg")):
            await resources.create(obj)

        err = await rpc_error(a.resources.get("secrets", "db"))
        assert (err.code(), err.details()) == denied("a", "secret default/db")

        await resources.create(referencing_pod("a"))
        read = await a.resources.get("secrets", "db")  # at once: no waiting for the graph's watch
        assert dict(read.data) == {"password": b"db-value"}
        assert dict((await a.resources.get("configmaps", "cfg")).data) == {"app.conf": "x=1"}
        err = await rpc_error(a.resources.get("secrets", "absent"))  # allowed: the servicer's answer
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, 'secrets "absent" not found')

        for call, expected in [
            (a.resources.get("secrets", "other"), denied("a", "secret default/other")),
            (a.resources.get("secrets", "cfg"), denied("a", "secret default/cfg")),
            (a.resources.get("secrets", "db", namespace="team"), denied("a", "secret team/db")),
            (b.resources.get("secrets", "db"), denied("b", "secret default/db")),
            (b.resources.get("configmaps", "cfg"), denied("b", "configmap default/cfg")),
            (a.resources.list("secrets"), (grpc.StatusCode.PERMISSION_DENIED,
                                           'node "a" may not list secrets')),
            (a.resources.watch("configmaps").read(), (grpc.StatusCode.PERMISSION_DENIED,
                                                      'node "a" may not watch configmaps')),
            (a.resources.update(secret("db")), (grpc.StatusCode.PERMISSION_DENIED,
                                                'node "a" may not call Resources.Update')),
            (a.resources.delete("secrets", "db"), (grpc.StatusCode.PERMISSION_DENIED,
                                                   'node "a" may not call Resources.Delete')),
        ]:
            err = await rpc_error(call)
            assert (err.code(), err.details()) == expected

        await resources.delete("pods", "web", grace_period_seconds=0, force=True)

        async def read_db() -> grpc.StatusCode:
            try:
                await a.resources.get("secrets", "db")
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        await eventually(read_db, lambda code: code == grpc.StatusCode.PERMISSION_DENIED)
        # The admin reads and lists everything.
        assert len((await resources.list("secrets")).items) == 2
