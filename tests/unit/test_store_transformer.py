"""The SQLite store's value transformer (the hook encryption at rest uses): what is written is the
transformer's output, what is loaded goes back through it, memory keeps the plain object, and a
value it refuses stops the open."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymaster.api import objects_pb2
from pymaster.store.sqlite import SQLiteStore


class Reverser:
    """Writes every Secret's bytes reversed (and records the calls)."""

    def __init__(self, refuse: bool = False):
        self.calls: list[tuple[str, str, str, str]] = []
        self.refuse = refuse

    def to_storage(self, kind: str, namespace: str, name: str, data: bytes) -> bytes:
        self.calls.append(("to", kind, namespace, name))
        return data[::-1] if kind == "secrets" else data

    def from_storage(self, kind: str, namespace: str, name: str, stored: bytes) -> bytes:
        self.calls.append(("from", kind, namespace, name))
        if self.refuse and kind == "secrets":
            raise ValueError(f"cannot read {kind} {namespace}/{name}")
        return stored[::-1] if kind == "secrets" else stored


def secret(value: bytes) -> objects_pb2.Secret:
    s = objects_pb2.Secret(data={"k": value})
    s.metadata.namespace, s.metadata.name, s.metadata.uid = "default", "db", "u1"
    return s


async def test_writes_go_through_the_transformer_and_loads_come_back(tmp_path: Path) -> None:
    path = tmp_path / "pykube.db"
    transformer = Reverser()
    store = SQLiteStore(path, transformer=transformer)
    await store.open()
    try:
        created = await store.create("secrets", secret(b"plain-value-123"))
        assert store.get("secrets", "default", "db").data["k"] == b"plain-value-123"  # memory: plain
        await store.delete("secrets", "default", "db")
        await store.create("secrets", secret(b"plain-value-456"))
        pod = objects_pb2.Pod()
        pod.metadata.namespace, pod.metadata.name = "default", "web"
        await store.create("pods", pod)
    finally:
        await store.close()
    assert created.data["k"] == b"plain-value-123"
    assert transformer.calls == [("to", "secrets", "default", "db")] * 2 + [("to", "pods", "default", "web")]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("pykube.db*"))
    assert b"plain-value-456" not in raw and b"plain-value-456"[::-1] in raw
    reopened = SQLiteStore(path, transformer=Reverser())
    await reopened.open()
    try:
        assert reopened.get("secrets", "default", "db").data["k"] == b"plain-value-456"
    finally:
        await reopened.close()
    refusing = SQLiteStore(path, transformer=Reverser(refuse=True))
    with pytest.raises(ValueError, match="^cannot read secrets default/db$"):
        await refusing.open()
    again = SQLiteStore(path, transformer=Reverser())  # the refused open released the lock
    await again.open()
    await again.close()
