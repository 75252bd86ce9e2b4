"""The agent's reader of ConfigMaps and Secrets (pykubelet.config_objects): answers reused for the
TTL (also "it does not exist"), immutable objects never read again, one read for concurrent asks,
errors passed on and not remembered."""

from __future__ import annotations

import asyncio

import pytest

from pykubelet.config_objects import ConfigObjects
from pymaster.api import errors, objects_pb2


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], object] = {}
        self.reads: list[tuple[str, str, str]] = []
        self.error: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def get(self, resource: str, name: str, namespace: str = "default"):
        self.reads.append((resource, namespace, name))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        try:
            return self.objects[(resource, namespace, name)]
        except KeyError:
            raise errors.NotFound(f'{resource} "{name}" not found') from None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def config_map(value: str, immutable: bool | None = None) -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(data={"k": value})
    if immutable is not None:
        cm.immutable = immutable
    return cm


async def test_answers_are_kept_for_the_ttl_then_read_again() -> None:
    client, clock = FakeClient(), Clock()
    objects = ConfigObjects(client, ttl=5, clock=clock)  # type: ignore[arg-type]
    client.objects[("configmaps", "ns", "app")] = config_map("1")
    assert (await objects.config_map("ns", "app")).data["k"] == "1"
    client.objects[("configmaps", "ns", "app")] = config_map("2")
    clock.now += 4
    assert (await objects.config_map("ns", "app")).data["k"] == "1"
    clock.now += 2
    assert (await objects.config_map("ns", "app")).data["k"] == "2"
    assert await objects.secret("ns", "missing") is None  # "does not exist" is an answer too
    assert await objects.secret("ns", "missing") is None
    assert client.reads.count(("secrets", "ns", "missing")) == 1


async def test_immutable_objects_are_read_once() -> None:
    client, clock = FakeClient(), Clock()
    objects = ConfigObjects(client, ttl=5, clock=clock)  # type: ignore[arg-type]
    client.objects[("configmaps", "ns", "frozen")] = config_map("1", immutable=True)
    await objects.config_map("ns", "frozen")
    clock.now += 3600
    await objects.config_map("ns", "frozen")
    assert client.reads == [("configmaps", "ns", "frozen")]
    objects.forget_namespace("ns")
    await objects.config_map("ns", "frozen")
    assert len(client.reads) == 2


async def test_concurrent_asks_share_one_read_and_errors_are_not_kept() -> None:
    client = FakeClient()
    objects = ConfigObjects(client)  # type: ignore[arg-type]
    client.objects[("secrets", "ns", "s")] = objects_pb2.Secret(data={"a": b"x"})
    client.gate.clear()
    asks = [asyncio.create_task(objects.secret("ns", "s")) for _ in range(5)]
    await asyncio.sleep(0)
    client.gate.set()
    assert [s.data["a"] for s in await asyncio.gather(*asks)] == [b"x"] * 5
    assert len(client.reads) == 1

    client.error = errors.Unavailable("master away")
    with pytest.raises(errors.Unavailable):
        await objects.config_map("ns", "later")
    client.error = None
    assert await objects.config_map("ns", "later") is None  # asked again, not remembered
