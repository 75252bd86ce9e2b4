"""Helpers for the tests of the real master app in-process (port 0, SQLite in tmp_path), driven over
grpc.aio with mutual TLS, as the admin (the client config the app writes to <data-dir>/admin.yaml).
Its fixtures (master, channel, cluster, agent) are in conftest.py.

Nodes are registered through the NodeAgent RPCs by the test itself (the admin may call them
all): this is the master alone, no agent and no Docker. What nodes may and may not do is
tests/unit/test_master_tls.py's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf.message import Message

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.clientconfig import channel_credentials, channel_options, load_config
from pymaster.api.conditions import find_condition
from pymaster.app import MasterApp

# ---- helpers ----


async def start_master(data_dir, grace: float = 40.0) -> MasterApp:
    app = MasterApp(data_dir, "127.0.0.1:0", "127.0.0.1:0", node_monitor_grace_period=grace)
    await app.start()
    return app


def admin_channel(app: MasterApp) -> grpc.aio.Channel:
    """An mTLS channel with the admin certificate, from the config the app wrote."""
    config = load_config(app.admin_config_path)
    credentials = channel_credentials(config)
    return grpc.aio.secure_channel(config.server, credentials, options=channel_options(config))


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


def pod_manifest(
    name: str = "web",
    cpu: str = "100m",
    labels: dict[str, str] | None = None,
    image: str = "busybox:1.35",
    containers: tuple[str, ...] = ("app",),
) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name = name
    pod.metadata.labels.update(labels or {"app": name})
    for container_name in containers:
        container = pod.spec.containers.add(name=container_name, image=image)
        container.resources.requests["cpu"] = cpu
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


def get(name: str, namespace: str = "default") -> services_pb2.GetRequest:
    return services_pb2.GetRequest(namespace=namespace, name=name)


def condition(pod: objects_pb2.Pod, type_: str = "PodScheduled") -> objects_pb2.PodCondition | None:
    return find_condition(pod.status.conditions, type_)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def next_event(call: grpc.aio.Call, timeout: float = 10.0) -> Message:
    """The next message of a streaming call (fails at the end of the stream)."""
    message = await asyncio.wait_for(call.read(), timeout)
    assert message is not grpc.aio.EOF, "stream ended"
    return message


async def bound_pod(cluster, agent, name: str = "web") -> objects_pb2.Pod:
    """Registers node n1, creates a pod and waits until the scheduler binds it."""
    await agent.RegisterNode(node_manifest())
    await cluster.CreatePod(pod_manifest(name))
    return await eventually(lambda: cluster.GetPod(get(name)), lambda p: p.spec.node_name == "n1")
