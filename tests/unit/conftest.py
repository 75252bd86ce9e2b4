"""Shared fixtures of the unit tests: the real master app in-process (see master_fixtures.py), with an
admin channel, the Resources service on it (``resources``: objects of every kind) and its Cluster
(logs) and NodeAgent stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from master_fixtures import Resources, admin_channel, start_master

from pymaster.api import services_pb2_grpc
from pymaster.app import MasterApp


@pytest.fixture
async def master(tmp_path) -> AsyncIterator[MasterApp]:
    app = await start_master(tmp_path / "data")
    yield app
    await app.stop()


@pytest.fixture
async def channel(master) -> AsyncIterator[grpc.aio.Channel]:
    async with admin_channel(master) as ch:
        yield ch


@pytest.fixture
def resources(channel) -> Resources:
    return Resources(channel)


@pytest.fixture
def cluster(channel) -> services_pb2_grpc.ClusterStub:
    return services_pb2_grpc.ClusterStub(channel)


@pytest.fixture
def agent(channel) -> services_pb2_grpc.NodeAgentStub:
    return services_pb2_grpc.NodeAgentStub(channel)
