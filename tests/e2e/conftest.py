"""Shared fixtures of the end-to-end tests (real Docker Engine).

- ``docker_client``: a docker-py client for the test session, for assertions on what the engine
  really holds (inspect, list). Tests may read with it; pykube code never imports docker outside
  ``pykubelet/runtime/docker/``.
- ``runtime``: a ``DockerRuntime`` on the local engine for one test, closed afterwards.
- ``clean_node``: a unique node name (``test-rt-<hex>``) for one test; every container labelled
  with it is removed when the test ends, whatever happened. Use one per simulated node.
- At the end of each module, the pod networks (``pykube.node.name``-labelled Docker networks)
  that no container uses any more are removed: agents started outside ``running_cluster`` leave
  theirs, and the host is left as the tests found it.
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


@pytest.fixture(scope="module", autouse=True)
def remove_unused_pod_networks(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for network in docker_client.networks.list(filters={"label": "pykube.node.name"}):
        network.reload()
        if not network.attrs.get("Containers"):
            try:
                network.remove()
            except docker.errors.APIError:
                pass  # in use after all, or already gone


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
