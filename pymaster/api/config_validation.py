"""Validation of ConfigMaps and Secrets, with Kubernetes' rules (``ValidateConfigMap``,
``ValidateSecret`` and their update rules) and field paths.

- Keys of ``data``, ``binaryData`` and ``stringData`` are config keys (Kubernetes'
  ``IsConfigMapKey``): at most 253 characters of ``[-._a-zA-Z0-9]``, not ``.``, not ``..`` and not
  starting with ``..`` (they become file names in volumes).
- A ConfigMap key may not be in both ``data`` and ``binaryData``; the values of a ConfigMap (data
  and binaryData together) or a Secret are at most 1 MiB (``MAX_DATA_BYTES``), and the whole
  object at most ``MAX_OBJECT_BYTES`` serialized (room for its metadata).
- A Secret's ``stringData`` is write-only: the registry merges it into ``data`` (its values win)
  before storing; ``merged_data`` is that merge, so a manifest is judged as the server will store
  it. Its ``type`` (default ``Opaque``) sets what ``data`` must hold: ``.dockerconfigjson`` (a JSON
  object) for ``kubernetes.io/dockerconfigjson``, ``.dockercfg`` for ``kubernetes.io/dockercfg``,
  ``tls.crt`` and ``tls.key`` for ``kubernetes.io/tls``, ``username`` or ``password`` for
  ``kubernetes.io/basic-auth``, ``ssh-privatekey`` for ``kubernetes.io/ssh-auth``. A type of the
  user's own (``example.com/token``) is taken as Kubernetes takes it: data with a label. Types
  that need something pykube does not have (service account tokens, bootstrap tokens) and
  unknown types under ``kubernetes.io/`` are refused, so that nothing is stored that promises
  behaviour no component gives.
- Updates: once ``immutable`` is true, ``data``, ``binaryData`` and ``immutable`` itself may not
  change (``field is immutable when `immutable` is set``); a Secret's ``type`` never changes.
  Labels and annotations may always change.

Messages never quote a Secret's values (``<secret contents redacted>``, as Kubernetes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    DNS1123_SUBDOMAIN_MAX,
    check_metadata,
    check_string_size,
    check_type_meta,
    key_path,
    quote,
)
from pymaster.api.errors import ValidationError

MAX_DATA_BYTES = 1024 * 1024  # Kubernetes' MaxSecretSize, for ConfigMaps too
MAX_OBJECT_BYTES = 3 * 512 * 1024  # 1.5 MiB serialized: the data and its metadata (etcd's limit)
IMMUTABLE = "field is immutable when `immutable` is set"
REDACTED = "<secret contents redacted>"

OPAQUE = "Opaque"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
TLS = "kubernetes.io/tls"
BASIC_AUTH = "kubernetes.io/basic-auth"
SSH_AUTH = "kubernetes.io/ssh-auth"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
DOCKER_CFG_KEY = ".dockercfg"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
SECRET_TYPES = (OPAQUE, DOCKER_CONFIG_JSON, DOCKER_CFG, TLS, BASIC_AUTH, SSH_AUTH)
# Kubernetes types whose meaning needs a component pykube does not have.
_UNSUPPORTED_TYPES = {
    "kubernetes.io/service-account-token": "pykube has no service accounts",
    "bootstrap.kubernetes.io/token": "nodes join with the master's join token, not bootstrap tokens",
}
_RESERVED_TYPE_DOMAINS = ("kubernetes.io/", "k8s.io/")

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# Kubernetes' wording, double spaces included.
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
    "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def config_key_error(key: str) -> str | None:
    """Why ``key`` is not a config key (Kubernetes' IsConfigMapKey), or None when it is one."""
    if len(key) > DNS1123_SUBDOMAIN_MAX:
        return f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    if not _CONFIG_KEY.fullmatch(key):
        return _CONFIG_KEY_MSG
    if key in (".", ".."):
        return f"must not be '{key}'"
    if key.startswith(".."):
        return "must not start with '..'"
    return None


def check_config_key(path: str, key: str) -> None:
    """A key of data, binaryData or stringData.

    Raises:
        ValidationError: on ``path`` (``data[app.conf]``), quoting the key.
    """
    error = config_key_error(key)
    if error is not None:
        raise ValidationError(path, f"invalid value {quote(key)}: {error}")


def _check_keys(path: str, keys: Mapping[str, object]) -> None:
    for key in sorted(keys):
        check_config_key(key_path(path, key), key)


def _check_object_size(kind: str, obj: Message) -> None:
    size = obj.ByteSize()
    if size > MAX_OBJECT_BYTES:
        name = obj.metadata.name
        limit = f"the limit is {MAX_OBJECT_BYTES} (1.5 MiB)"
        raise ValidationError("", f'{kind} "{name}" is {size} bytes serialized; {limit}')


# ---- ConfigMaps ----


def validate_config_map(config_map: objects_pb2.ConfigMap) -> None:
    """Check a ConfigMap: type meta, namespaced metadata, keys, no key in both data and
    binaryData, at most ``MAX_DATA_BYTES`` of values.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    check_type_meta(config_map.api_version, config_map.kind, "ConfigMap")
    check_metadata(config_map.metadata, namespaced=True)
    _check_keys("data", config_map.data)
    _check_keys("binaryData", config_map.binary_data)
    for key in sorted(config_map.binary_data):
        if key in config_map.data:
            raise ValidationError(key_path("binaryData", key), "duplicate of key present in data")
    # A character is at most 4 bytes: only text near the limit needs encoding to be measured.
    text = sum(len(v) for v in config_map.data.values())
    if text * 4 > MAX_DATA_BYTES:
        text = sum(len(v.encode()) for v in config_map.data.values())
    total = text + sum(len(v) for v in config_map.binary_data.values())
    if total > MAX_DATA_BYTES:
        limit = f"must have at most {MAX_DATA_BYTES} bytes in total, not {total}"
        raise ValidationError("data", f"too long: data and binaryData {limit}")
    _check_object_size("configmap", config_map)


def validate_config_map_update(old: objects_pb2.ConfigMap, new: objects_pb2.ConfigMap) -> None:
    """What an immutable ConfigMap forbids (``new`` is validated on its own too).

    Raises:
        ValidationError: on ``immutable``, ``data`` or ``binaryData``.
    """
    if not is_immutable(old):
        return
    if not is_immutable(new):
        raise ValidationError("immutable", IMMUTABLE)
    if new.data != old.data:
        raise ValidationError("data", IMMUTABLE)
    if new.binary_data != old.binary_data:
        raise ValidationError("binaryData", IMMUTABLE)


# ---- Secrets ----


def merged_data(secret: objects_pb2.Secret) -> dict[str, bytes]:
    """The data a Secret is stored with: ``data``, then ``stringData`` (UTF-8) over it."""
    data = dict(secret.data)
    data.update((key, value.encode()) for key, value in secret.string_data.items())
    return data


def validate_secret(secret: objects_pb2.Secret) -> None:
    """Check a Secret as it will be stored (``stringData`` merged into ``data``): type meta,
    namespaced metadata, keys, at most ``MAX_DATA_BYTES`` of data, and what its type requires.

    Raises:
        ValidationError: the first problem found, with its field path; never quoting a value.
    """
    check_type_meta(secret.api_version, secret.kind, "Secret")
    check_metadata(secret.metadata, namespaced=True)
    _check_keys("data", secret.data)
    _check_keys("stringData", secret.string_data)
    data = merged_data(secret)
    total = sum(len(v) for v in data.values())
    if total > MAX_DATA_BYTES:
        raise ValidationError("data", f"too long: must have at most {MAX_DATA_BYTES} bytes, not {total}")
    _check_type(secret.type or OPAQUE, data)
    _check_object_size("secret", secret)


def _check_type(type_: str, data: Mapping[str, bytes]) -> None:
    """What a Secret's type requires of its data."""
    check_string_size("type", type_, DNS1123_SUBDOMAIN_MAX)
    if type_ in _UNSUPPORTED_TYPES:
        raise ValidationError("type", f"unsupported value {quote(type_)}: {_UNSUPPORTED_TYPES[type_]}")
    if type_.startswith(_RESERVED_TYPE_DOMAINS) and type_ not in SECRET_TYPES:
        supported = f"{', '.join(SECRET_TYPES)}, or a type of your own outside kubernetes.io"
        raise ValidationError("type", f"unsupported value {quote(type_)}; supported: {supported}")
    if type_ in (DOCKER_CONFIG_JSON, DOCKER_CFG):
        key = DOCKER_CONFIG_JSON_KEY if type_ == DOCKER_CONFIG_JSON else DOCKER_CFG_KEY
        _require(data, key)
        _check_json_object(key_path("data", key), data[key])
    elif type_ == TLS:
        _require(data, TLS_CERT_KEY)
        _require(data, TLS_KEY_KEY)
    elif type_ == BASIC_AUTH:
        if "username" not in data and "password" not in data:
            raise ValidationError("data.username", "required (or data.password)")
    elif type_ == SSH_AUTH and not data.get("ssh-privatekey"):
        raise ValidationError("data.ssh-privatekey", "required")


def _require(data: Mapping[str, bytes], key: str) -> None:
    if key not in data:
        raise ValidationError(key_path("data", key), "required")


def _check_json_object(path: str, value: bytes) -> None:
    """Docker's config files are JSON objects (the error names where, never what)."""
    try:
        parsed = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f"line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) else "text"
        raise ValidationError(path, f"invalid value {REDACTED}: not valid JSON ({where})") from None
    except RecursionError:
        raise ValidationError(path, f"invalid value {REDACTED}: nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValidationError(path, f"invalid value {REDACTED}: must be a JSON object")


def validate_secret_update(old: objects_pb2.Secret, new: objects_pb2.Secret) -> None:
    """What an update may not change: the type, and the data of an immutable Secret (``new``
    is validated on its own too; both are defaulted).

    Raises:
        ValidationError: on ``type``, ``immutable`` or ``data``.
    """
    if new.type != old.type:
        raise ValidationError("type", "field is immutable")
    if not is_immutable(old):
        return
    if not is_immutable(new):
        raise ValidationError("immutable", IMMUTABLE)
    if merged_data(new) != dict(old.data):
        raise ValidationError("data", IMMUTABLE)


def is_immutable(obj: objects_pb2.ConfigMap | objects_pb2.Secret) -> bool:
    """``immutable: true`` is set."""
    return obj.HasField("immutable") and obj.immutable
