"""Helpers for the tests of the real master app in-process (port 0, SQLite in tmp_path), driven over
grpc.aio with mutual TLS, as the admin (the client config the app writes to <data-dir>/admin.yaml)
or as a node that joined for real (token proof + CSR over the join port, see ``join``).
Its fixtures (master, channel, resources, cluster, agent) are in conftest.py.

Objects go through the Resources service (``Resources``: the stub with the ``Object`` envelope
put on and taken off); refusals stay ``grpc.aio.AioRpcError``, so tests assert on the status code
and the details the wire carries. Nodes are registered through the NodeAgent RPCs by the test
itself (the admin may call them all): this is the master alone, no agent and no Docker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import grpc
import pytest
from google.protobuf.message import Message

from pymaster.api import objects_pb2, pki, services_pb2, services_pb2_grpc, tokens
from pymaster.api.clientconfig import channel_credentials, channel_options, load_config
from pymaster.api.conditions import find_condition
from pymaster.api.kinds import unwrap, wrap
from pymaster.app import MasterApp
from pymaster.client import ObjectEvent

# ---- the master ----


async def start_master(data_dir, grace: float = 40.0, **kwargs) -> MasterApp:
    """A started master on free ports (``kwargs``: MasterApp's keyword flags)."""
    app = MasterApp(data_dir, "127.0.0.1:0", "127.0.0.1:0", node_monitor_grace_period=grace, **kwargs)
    await app.start()
    return app


def admin_channel(app: MasterApp, address: str | None = None) -> grpc.aio.Channel:
    """An mTLS channel with the admin certificate, from the config the app wrote, to its API
    port (or ``address``)."""
    config = load_config(app.admin_config_path)
    credentials = channel_credentials(config)
    return grpc.aio.secure_channel(address or config.server, credentials, options=channel_options(config))


class Listed(NamedTuple):
    items: list[Message]
    resource_version: str


class Resources:
    """pykube.v1.Resources as the tests call it: objects in, objects out (``wrap``/``unwrap`` of
    ``pymaster.api.kinds``); errors are left as ``grpc.aio.AioRpcError``. ``stub`` is the raw
    ResourcesStub, for requests the helpers cannot express."""

    def __init__(self, channel: grpc.aio.Channel):
        self.stub = services_pb2_grpc.ResourcesStub(channel)

    async def create(self, obj: Message) -> Message:
        return unwrap(await self.stub.Create(wrap(obj)))[1]

    async def apply(self, obj: Message) -> tuple[Message, str]:
        reply = await self.stub.Apply(wrap(obj))
        return unwrap(reply.object)[1], reply.action

    async def update(self, obj: Message) -> Message:
        return unwrap(await self.stub.Update(wrap(obj)))[1]

    async def get(self, resource: str, name: str, namespace: str = "default") -> Message:
        request = services_pb2.GetRequest(resource=resource, namespace=namespace, name=name)
        return unwrap(await self.stub.Get(request))[1]

    async def list(
        self, resource: str, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Listed:
        request = services_pb2.ListRequest(
            resource=resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector,
        )
        reply = await self.stub.List(request)
        return Listed([unwrap(o)[1] for o in reply.items], reply.resource_version)

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str = "default",
        grace_period_seconds: int | None = None,
        force: bool = False,
    ) -> Message:
        request = services_pb2.DeleteRequest(resource=resource, namespace=namespace, name=name, force=force)
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        return unwrap(await self.stub.Delete(request))[1]

    def watch(
        self,
        resource: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> grpc.aio.UnaryStreamCall:
        """The watch call; read it with ``next_change``, cancel it when done."""
        return self.stub.Watch(
            services_pb2.WatchRequest(
                resource=resource, namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, resource_version=resource_version,
            )
        )


# ---- waiting and errors ----


async def eventually(
    fetch: Callable[[], Awaitable[object]], predicate: Callable[[object], bool], timeout: float = 10.0
) -> object:
    """Polls ``fetch`` until ``predicate`` holds on its result; returns that result."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value: {value}")
        await asyncio.sleep(0.02)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def next_event(call: grpc.aio.Call, timeout: float = 10.0) -> Message:
    """The next message of a streaming call (fails at the end of the stream)."""
    message = await asyncio.wait_for(call.read(), timeout)
    assert message is not grpc.aio.EOF, "stream ended"
    return message


async def next_change(call: grpc.aio.Call, timeout: float = 10.0) -> ObjectEvent:
    """The next event of a Resources.Watch call, the object taken out of its envelope."""
    event = await next_event(call, timeout)
    return ObjectEvent(event.type, unwrap(event.object)[1])


# ---- objects ----


def pod_manifest(
    name: str = "web",
    cpu: str = "100m",
    labels: dict[str, str] | None = None,
    image: str = "busybox:1.35",
    containers: tuple[str, ...] = ("app",),
    node_name: str = "",
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.labels.update(labels or {"app": name})
    for container_name in containers:
        container = pod.spec.containers.add(name=container_name, image=image)
        container.resources.requests["cpu"] = cpu
    pod.spec.node_name = node_name
    return pod


def node_manifest(name: str = "n1", cpu: str = "2", kubelet_port: int = 10250) -> objects_pb2.Node:
    node = objects_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.labels["kubernetes.io/hostname"] = name
    for resources in (node.status.capacity, node.status.allocatable):
        resources.update({"cpu": cpu, "memory": "4Gi", "pods": "110"})
    node.status.addresses.add(type="InternalIP", address="127.0.0.1")
    node.status.daemon_endpoints.kubelet_endpoint.port = kubelet_port
    return node


def event_manifest(
    about: str = "web",
    reason: str = "Pulled",
    message: str = "pulled the image",
    kind: str = "Pod",
    host: str = "",
    namespace: str = "default",
    uid: str = "",
) -> objects_pb2.Event:
    """An event as a reporter sends it: name, timestamps and count left to the master."""
    event = objects_pb2.Event(api_version="v1", kind="Event", reason=reason, message=message, type="Normal")
    involved = event.involved_object
    involved.kind, involved.name, involved.uid = kind, about, uid
    involved.namespace = namespace if kind == "Pod" else ""
    event.source.component, event.source.host = ("kubelet", host) if host else ("tests", "")
    return event


def condition(pod: objects_pb2.Pod, type_: str = "PodScheduled") -> objects_pb2.PodCondition | None:
    return find_condition(pod.status.conditions, type_)


async def bound_pod(resources: Resources, agent, name: str = "web") -> objects_pb2.Pod:
    """Registers node n1, creates a pod and waits until the scheduler binds it."""
    await agent.RegisterNode(node_manifest())
    await resources.create(pod_manifest(name))
    return await eventually(lambda: resources.get("pods", name), lambda p: p.spec.node_name == "n1")


# ---- nodes that joined ----


async def serve_kubelet(
    app: MasterApp, servicer: services_pb2_grpc.KubeletServicer
) -> tuple[grpc.aio.Server, int]:
    """Serves ``servicer`` as node n1's agent API does: its node certificate, clients must present
    a certificate of the cluster CA. Returns the started server and its port."""
    server = grpc.aio.server()
    services_pb2_grpc.add_KubeletServicer_to_server(servicer, server)
    name = pki.node_common_name("n1")
    key_pem, cert_pem = app.pki.ca.issue(name, pki.NODES_GROUP, ["n1", "127.0.0.1"], 3600)
    credentials = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=app.pki.ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


def cert_channel(
    app: MasterApp, key_pem: bytes, cert_pem: bytes, ca_pem: bytes | None = None, address: str | None = None
) -> grpc.aio.Channel:
    """An mTLS channel to the app's API port (or ``address``) with the given client pair."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem or app.pki.ca.cert_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    return grpc.aio.secure_channel(address or app.address, credentials)


class Node:
    """A joined node: its key, certificate and stubs on its own mTLS channel."""

    def __init__(self, app: MasterApp, name: str, key, cert_pem: bytes):
        self.name, self.key, self.cert_pem = name, key, cert_pem
        self.key_pem = pki.key_to_pem(key)
        self.channel = cert_channel(app, self.key_pem, cert_pem)
        self.resources = Resources(self.channel)
        self.cluster = services_pb2_grpc.ClusterStub(self.channel)
        self.agent = services_pb2_grpc.NodeAgentStub(self.channel)


def csr_for(key, name: str, sans: tuple[str, ...] = ()) -> bytes:
    return pki.make_csr(key, pki.node_common_name(name), pki.NODES_GROUP, sans)


async def join_request(
    app: MasterApp, name: str, key=None, *, secret: str | None = None, sans: tuple[str, ...] = ()
) -> tuple[object, services_pb2.CertificateResponse]:
    """Joins as ``name`` over the plaintext join port: the key and the master's reply."""
    key = key or pki.generate_key()
    csr = csr_for(key, name, sans)
    token = tokens.JoinToken.parse(app.token_path.read_text())
    proof = tokens.join_proof(secret or token.secret, name, csr)
    async with grpc.aio.insecure_channel(app.join_address) as ch:
        reply = await services_pb2_grpc.BootstrapStub(ch).Join(
            services_pb2.JoinRequest(node_name=name, csr_pem=csr, proof=proof)
        )
    return key, reply


async def join(app: MasterApp, name: str, key=None) -> Node:
    key, reply = await join_request(app, name, key)
    return Node(app, name, key, reply.certificate_pem)
