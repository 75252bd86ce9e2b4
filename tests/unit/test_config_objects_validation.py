"""ConfigMaps and Secrets without a server: validation (pymaster.api.config_validation), what a pod
references (pymaster.api.references) and the registries' pure rules (create and update)."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.config_validation import (
    MAX_DATA_BYTES,
    config_key_error,
    validate_config_map,
    validate_secret,
)
from pymaster.api.errors import ValidationError
from pymaster.api.references import referenced
from pymaster.registry import configmaps, secrets

IMMUTABLE = "field is immutable when `immutable` is set"
DOCKER = "kubernetes.io/dockerconfigjson"
REDACTED = "invalid value <secret contents redacted>"


def config_map(data: dict[str, str] | None = None, binary: dict[str, bytes] | None = None,
               immutable: bool | None = None, name: str = "app") -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap", data=data or {}, binary_data=binary or {})
    cm.metadata.name, cm.metadata.namespace = name, "default"
    if immutable is not None:
        cm.immutable = immutable
    return cm


def secret(data: dict[str, bytes] | None = None, string_data: dict[str, str] | None = None, type_: str = "",
           immutable: bool | None = None) -> objects_pb2.Secret:
    s = objects_pb2.Secret(api_version="v1", kind="Secret", data=data or {}, string_data=string_data or {},
                           type=type_)
    s.metadata.name, s.metadata.namespace = "db", "default"
    if immutable is not None:
        s.immutable = immutable
    return s


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("app.conf", None),
        ("KEY_name-1", None),
        (".hidden", None),
        ("a" * 253, None),
        ("a" * 254, "must be no more than 253 characters"),
        ("a/b", "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
        ("a b", "regex used for validation is '[-._a-zA-Z0-9]+'"),
        ("", "a valid config key"),
        (".", "must not be '.'"),
        ("..", "must not be '..'"),
        ("..data", "must not start with '..'"),
    ],
)
def test_config_keys_are_kubernetes_is_config_map_key(key: str, error: str | None) -> None:
    found = config_key_error(key)
    assert (found is None) if error is None else (found is not None and error in found)


@pytest.mark.parametrize(
    ("cm", "message"),
    [
        (config_map({"a/b": "1"}), 'data[a/b]: invalid value "a/b": a valid config key must consist'),
        (config_map(binary={"..x": b"1"}), 'binaryData[..x]: invalid value "..x": must not start with'),
        (config_map({"k": "1"}, {"k": b"2"}), "binaryData.k: duplicate of key present in data"),
        (config_map({"big": "x" * MAX_DATA_BYTES}, {"more": b"y"}),
         f"data: too long: data and binaryData must have at most {MAX_DATA_BYTES} bytes in total, "
         f"not {MAX_DATA_BYTES + 1}"),
        (config_map(name="Not_A_Name"), 'metadata.name: invalid value "Not_A_Name"'),
        (objects_pb2.ConfigMap(kind="Secret"), "kind: must be ConfigMap, not \"Secret\""),
    ],
)
def test_invalid_config_maps(cm: objects_pb2.ConfigMap, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_config_map(cm)
    assert str(err.value).startswith(message), str(err.value)


def test_a_config_map_of_one_mebibyte_is_valid() -> None:
    validate_config_map(config_map({"big": "x" * (MAX_DATA_BYTES - 3)}, {"b": b"123"}))
    with pytest.raises(ValidationError, match="too long"):
        validate_config_map(config_map({"big": "é" * (MAX_DATA_BYTES // 2)}, {"b": b"1"}))  # 2 bytes each


@pytest.mark.parametrize(
    ("s", "message"),
    [
        (secret({"a b": b"1"}), 'data[a b]: invalid value "a b"'),
        (secret(string_data={"a/b": "1"}), 'stringData[a/b]: invalid value "a/b"'),
        (secret({"big": b"x" * MAX_DATA_BYTES}, {"more": "y"}), "data: too long: must have at most 1048576"),
        (secret(type_="kubernetes.io/tls", string_data={"tls.crt": "c"}), "data[tls.key]: required"),
        (secret(type_="kubernetes.io/tls"), "data[tls.crt]: required"),
        (secret(type_="kubernetes.io/dockerconfigjson"), "data[.dockerconfigjson]: required"),
        (secret({".dockerconfigjson": b"{not json"}, type_=DOCKER),
         f"data[.dockerconfigjson]: {REDACTED}: not valid JSON (line 1 column 2)"),
        (secret({".dockerconfigjson": b"[1]"}, type_=DOCKER),
         f"data[.dockerconfigjson]: {REDACTED}: must be a JSON object"),
        (secret({".dockercfg": b"\xff"}, type_="kubernetes.io/dockercfg"), f"data[.dockercfg]: {REDACTED}"),
        (secret(type_="kubernetes.io/basic-auth"), "data.username: required (or data.password)"),
        (secret({"ssh-privatekey": b""}, type_="kubernetes.io/ssh-auth"), "data.ssh-privatekey: required"),
        (secret(type_="kubernetes.io/service-account-token"),
         'type: unsupported value "kubernetes.io/service-account-token": pykube has no service accounts'),
        (secret(type_="kubernetes.io/tsl"), 'type: unsupported value "kubernetes.io/tsl"; supported: Opaque'),
    ],
)
def test_invalid_secrets(s: objects_pb2.Secret, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_secret(s)
    assert str(err.value).startswith(message), str(err.value)


def test_valid_secrets_of_each_type() -> None:
    validate_secret(secret({"password": b"\x00\xff"}))
    validate_secret(secret(string_data={"tls.crt": "c", "tls.key": "k"}, type_="kubernetes.io/tls"))
    validate_secret(secret({".dockerconfigjson": b'{"auths": {}}'}, type_="kubernetes.io/dockerconfigjson"))
    validate_secret(secret(string_data={"password": ""}, type_="kubernetes.io/basic-auth"))
    validate_secret(secret({"token": b"t"}, type_="example.com/token"))  # a type of the user's own


def test_a_secret_value_is_never_quoted_in_an_error() -> None:
    with pytest.raises(ValidationError) as err:
        validate_secret(secret({".dockerconfigjson": b'{"password": hunter2}'}, type_=DOCKER))
    assert "hunter2" not in str(err.value)


# ---- references ----


def test_referenced_finds_volumes_projections_env_and_env_from_of_every_container() -> None:
    pod = objects_pb2.Pod()
    pod.spec.volumes.add(name="v1").config_map.name = "cm-volume"
    pod.spec.volumes.add(name="v2").secret.secret_name = "secret-volume"
    projected = pod.spec.volumes.add(name="v3").projected
    projected.sources.add().config_map.name = "cm-projected"
    projected.sources.add().secret.name = "secret-projected"
    projected.sources.add().downward_api.items.add(path="labels")
    pod.spec.volumes.add(name="v4").empty_dir.SetInParent()
    init = pod.spec.init_containers.add(name="init")
    init.env.add(name="A").value_from.config_map_key_ref.name = "cm-env"
    app = pod.spec.containers.add(name="app")
    app.env.add(name="B").value_from.secret_key_ref.name = "secret-env"
    app.env.add(name="C", value="plain")
    app.env.add(name="D").value_from.field_ref.field_path = "metadata.name"
    app.env_from.add().config_map_ref.name = "cm-env-from"
    app.env_from.add(prefix="S_").secret_ref.name = "secret-env-from"
    app.env_from.add().secret_ref.name = "secret-env"  # twice: one reference
    assert referenced(pod) == {
        ("configmaps", "cm-volume"), ("secrets", "secret-volume"), ("configmaps", "cm-projected"),
        ("secrets", "secret-projected"), ("configmaps", "cm-env"), ("secrets", "secret-env"),
        ("configmaps", "cm-env-from"), ("secrets", "secret-env-from"),
    }
    assert referenced(objects_pb2.Pod()) == set()


# ---- the registries' pure rules ----


def test_config_map_create_defaults_and_sets_the_server_fields() -> None:
    cm = config_map({"a": "1"})
    cm.api_version, cm.kind, cm.metadata.namespace = "", "", ""
    cm.metadata.uid, cm.metadata.resource_version, cm.metadata.generation = "forged", "99", 7
    configmaps.prepare_create(cm, "uid-1", 1000.0)
    assert (cm.api_version, cm.kind, cm.metadata.namespace) == ("v1", "ConfigMap", "default")
    assert (cm.metadata.uid, cm.metadata.resource_version, cm.metadata.generation) == ("uid-1", "", 0)
    assert cm.metadata.creation_timestamp.seconds == 1000


def test_config_map_update_replaces_what_a_user_may_change() -> None:
    current = config_map({"a": "1"}, {"b": b"2"})
    current.metadata.uid = "uid-1"
    current.metadata.labels["old"] = "x"
    request = config_map({"a": "2"})
    request.metadata.labels["new"] = "y"
    request.metadata.uid = "forged"
    merged = configmaps.prepare_update(current, request)
    assert merged is not None
    assert (dict(merged.data), dict(merged.binary_data)) == ({"a": "2"}, {})
    assert dict(merged.metadata.labels) == {"new": "y"} and merged.metadata.uid == "uid-1"
    assert configmaps.prepare_update(merged, request) is None  # nothing changes


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (config_map({"a": "2"}, immutable=True), "data"),
        (config_map({"a": "1"}, {"b": b"1"}, immutable=True), "binaryData"),
        (config_map({"a": "1"}, immutable=False), "immutable"),
        (config_map({"a": "1"}), "immutable"),
    ],
)
def test_an_immutable_config_map_keeps_its_data(request_: objects_pb2.ConfigMap, field: str) -> None:
    current = config_map({"a": "1"}, immutable=True)
    with pytest.raises(ValidationError) as err:
        configmaps.prepare_update(current, request_)
    assert str(err.value) == f"{field}: {IMMUTABLE}"


def test_an_immutable_config_map_may_change_its_labels() -> None:
    request = config_map({"a": "1"}, immutable=True)
    request.metadata.labels["team"] = "a"
    merged = configmaps.prepare_update(config_map({"a": "1"}, immutable=True), request)
    assert merged is not None and dict(merged.metadata.labels) == {"team": "a"}


def test_secret_create_folds_string_data_into_data_and_defaults_the_type() -> None:
    s = secret({"a": b"1", "b": b"old"}, {"b": "new", "c": "3"})
    secrets.prepare_create(s, "uid-1", 1000.0)
    assert dict(s.data) == {"a": b"1", "b": b"new", "c": b"3"}
    assert not s.string_data and s.type == "Opaque"


def test_secret_update_keeps_the_type_and_the_data_of_an_immutable_secret() -> None:
    current = secret({"a": b"1"}, type_="Opaque")
    merged = secrets.prepare_update(current, secret(string_data={"a": "2"}))
    assert merged is not None and dict(merged.data) == {"a": b"2"} and not merged.string_data
    with pytest.raises(ValidationError, match=r"^type: field is immutable$"):
        secrets.prepare_update(current, secret({"tls.crt": b"c", "tls.key": b"k"}, type_="kubernetes.io/tls"))
    frozen = secret({"a": b"1"}, type_="Opaque", immutable=True)
    with pytest.raises(ValidationError, match=r"^data: field is immutable when `immutable` is set$"):
        secrets.prepare_update(frozen, secret(string_data={"a": "2"}, immutable=True))
    with pytest.raises(ValidationError, match=r"^immutable: field is immutable"):
        secrets.prepare_update(frozen, secret({"a": b"1"}, immutable=False))
    relabelled = secret(string_data={"a": "1"}, immutable=True)  # the same data, as stringData
    relabelled.metadata.labels["x"] = "y"
    merged = secrets.prepare_update(frozen, relabelled)
    assert merged is not None and dict(merged.metadata.labels) == {"x": "y"}
    assert secrets.prepare_update(merged, relabelled) is None
