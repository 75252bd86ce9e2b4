"""ConfigMaps and Secrets through the master's generic Resources API, in-process over mutual TLS
with a real SQLite store: every verb, stringData, immutability, field selectors and watches."""

from __future__ import annotations

import grpc
from master_fixtures import next_change, rpc_error

from pymaster.api import objects_pb2, services_pb2

TLS = "kubernetes.io/tls"
DOCKER = "kubernetes.io/dockerconfigjson"


def config_map(name: str = "app", data: dict[str, str] | None = None, immutable: bool | None = None,
               namespace: str = "") -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap", data=data or {"k": "v"})
    cm.metadata.name, cm.metadata.namespace = name, namespace
    if immutable is not None:
        cm.immutable = immutable
    return cm


def secret(name: str = "db", string_data: dict[str, str] | None = None, type_: str = "",
           data: dict[str, bytes] | None = None) -> objects_pb2.Secret:
    s = objects_pb2.Secret(api_version="v1", kind="Secret", string_data=string_data or {}, type=type_,
                           data=data or {})
    s.metadata.name = name
    return s


async def test_config_map_verbs(resources) -> None:
    created = await resources.create(config_map(data={"a": "1"}))
    assert (created.metadata.namespace, dict(created.data)) == ("default", {"a": "1"})
    assert created.metadata.uid
    err = await rpc_error(resources.create(config_map()))
    assert (err.code(), err.details()) == (grpc.StatusCode.ALREADY_EXISTS, 'configmaps "app" already exists')
    recorded, action = await resources.apply(config_map(data={"a": "1"}))
    assert action == "configured"  # created, not applied: the last-applied record is added
    same, action = await resources.apply(config_map(data={"a": "1"}))
    assert action == "unchanged" and same.metadata.resource_version == recorded.metadata.resource_version
    changed, action = await resources.apply(config_map(data={"a": "2"}))
    assert action == "configured" and changed.metadata.uid == created.metadata.uid
    stale = config_map(data={"a": "3"})
    stale.metadata.resource_version = created.metadata.resource_version
    err = await rpc_error(resources.update(stale))
    assert err.code() == grpc.StatusCode.ABORTED
    stale.metadata.resource_version = changed.metadata.resource_version
    updated = await resources.update(stale)
    assert dict((await resources.get("configmaps", "app")).data) == {"a": "3"} == dict(updated.data)
    assert [cm.metadata.name for cm in (await resources.list("configmaps", "default")).items] == ["app"]
    deleted = await resources.delete("configmaps", "app")
    assert deleted.metadata.uid == created.metadata.uid
    err = await rpc_error(resources.get("configmaps", "app"))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, 'configmaps "app" not found')


async def test_an_invalid_config_map_is_refused_naming_the_field(resources) -> None:
    err = await rpc_error(resources.create(config_map(data={"bad key": "1"})))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith('data[bad key]: invalid value "bad key": a valid config key')


async def test_an_immutable_config_map_keeps_its_data_but_not_its_labels(resources) -> None:
    await resources.create(config_map(data={"a": "1"}, immutable=True))
    for request, field in [(config_map(data={"a": "2"}, immutable=True), "data"),
                           (config_map(data={"a": "1"}, immutable=False), "immutable")]:
        err = await rpc_error(resources.apply(request))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, f"{field}: field is immutable when `immutable` is set"
        )
    relabelled = config_map(data={"a": "1"}, immutable=True)
    relabelled.metadata.labels["team"] = "a"
    stored, action = await resources.apply(relabelled)
    assert action == "configured" and dict(stored.metadata.labels) == {"team": "a"}


async def test_secret_string_data_is_merged_and_never_stored(resources) -> None:
    created = await resources.create(secret(string_data={"password": "s3cret"}, data={"user": b"admin"}))
    assert dict(created.data) == {"user": b"admin", "password": b"s3cret"}
    assert not created.string_data and created.type == "Opaque"
    read = await resources.get("secrets", "db")
    assert not read.string_data and dict(read.data) == dict(created.data)
    await resources.apply(secret(string_data={"password": "s3cret"}, data={"user": b"admin"}))  # recorded
    _, action = await resources.apply(secret(data={"user": b"admin", "password": b"s3cret"}))
    assert action == "unchanged"  # the same data, whether given as data or as stringData
    err = await rpc_error(resources.apply(secret(type_=TLS, string_data={"tls.crt": "c", "tls.key": "k"})))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "type: field is immutable")


async def test_secret_types_are_checked_by_the_server(resources) -> None:
    err = await rpc_error(resources.create(secret("tls", type_=TLS, string_data={"tls.crt": "c"})))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "data[tls.key]: required")
    err = await rpc_error(resources.create(secret("reg", type_=DOCKER, data={".dockerconfigjson": b"nope"})))
    assert err.details().startswith("data[.dockerconfigjson]: invalid value <secret contents redacted>")
    created = await resources.create(secret("reg", type_=DOCKER, data={".dockerconfigjson": b'{"auths":{}}'}))
    assert created.type == DOCKER


async def test_field_selectors_and_namespaces(resources) -> None:
    await resources.create(secret("plain", string_data={"a": "1"}))
    await resources.create(secret("tls", type_=TLS, string_data={"tls.crt": "c", "tls.key": "k"}))
    await resources.create(config_map("app", namespace="team"))
    listed = await resources.list("secrets", field_selector="type=kubernetes.io/tls")
    assert [s.metadata.name for s in listed.items] == ["tls"]
    listed = await resources.list("configmaps", field_selector="metadata.name=app")
    assert [(c.metadata.namespace, c.metadata.name) for c in listed.items] == [("team", "app")]
    assert (await resources.list("configmaps", "default")).items == []
    err = await rpc_error(resources.list("configmaps", field_selector="spec.nodeName=n1"))
    assert err.details() == (
        "fieldSelector: field label not supported: spec.nodeName; "
        "supported: metadata.name, metadata.namespace"
    )


async def test_watch_sees_every_write(resources) -> None:
    watch = resources.watch("configmaps", "default")
    try:
        await resources.create(config_map(data={"a": "1"}))
        await resources.apply(config_map(data={"a": "2"}))
        await resources.delete("configmaps", "app")
        changes = [await next_change(watch) for _ in range(3)]
    finally:
        watch.cancel()
    assert [(c.type, dict(c.object.data)) for c in changes] == [
        (services_pb2.ADDED, {"a": "1"}),
        (services_pb2.MODIFIED, {"a": "2"}),
        (services_pb2.DELETED, {"a": "2"}),
    ]
