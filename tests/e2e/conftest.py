"""Shared fixtures of the end-to-end tests (real Docker Engine).

- ``docker_client``: a docker-py client for the test session, for assertions on what the engine
  really holds (inspect, list). Tests may read with it; pykube code never imports docker outside
  ``pykubelet/runtime/docker/``.
- ``runtime``: a ``DockerRuntime`` on the local engine for one test, closed afterwards.
- ``clean_node``: a unique node name (``test-rt-<hex>``) for one test; every container labelled
  with it is removed when the test ends, whatever happened. Use one per simulated node.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import docker
import pytest

from pykubelet.runtime.docker import DockerRuntime


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def runtime() -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime()
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
def clean_node(docker_client: docker.DockerClient) -> Iterator[str]:
    node_name = f"test-rt-{uuid.uuid4().hex[:8]}"
    yield node_name
    containers = docker_client.containers.list(all=True, filters={"label": f"pykube.node.name={node_name}"})
    for container in containers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
