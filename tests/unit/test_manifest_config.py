"""ConfigMaps and Secrets in manifests (pymaster.api.manifest): base64 ``data``/``binaryData``,
plain ``stringData``, their validation before anything is sent, and their JSON/YAML form."""

from __future__ import annotations

import base64

import pytest
import yaml

from pymaster.api import manifest, objects_pb2
from pymaster.api.errors import ValidationError

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data:
  app.conf: |
    color=blue
  mode: fast
binaryData:
  logo.png: iVBORw0K
immutable: true
"""
SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: team}
type: kubernetes.io/basic-auth
data:
  username: YWRtaW4=
stringData:
  password: s3cret
"""


def test_config_maps_and_secrets_load_from_yaml() -> None:
    cm, secret = manifest.load(CONFIG_MAP + "---\n" + SECRET)
    assert isinstance(cm, objects_pb2.ConfigMap) and isinstance(secret, objects_pb2.Secret)
    assert dict(cm.data) == {"app.conf": "color=blue\n", "mode": "fast"} and cm.immutable
    assert dict(cm.binary_data) == {"logo.png": base64.b64decode("iVBORw0K")}
    assert dict(secret.data) == {"username": b"admin"} and dict(secret.string_data) == {"password": "s3cret"}
    assert (secret.type, secret.metadata.namespace) == ("kubernetes.io/basic-auth", "team")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SECRET.replace("YWRtaW4=", "not base64!"), "data.username: must be a base64 string"),
        (SECRET.replace("password: s3cret", "password: 5"), "stringData.password: must be a string"),
        (SECRET.replace("basic-auth", "tls"), "data[tls.crt]: required"),
        (CONFIG_MAP.replace("mode: fast", "logo.png: dup"), "binaryData[logo.png]: duplicate of key present"),
        (CONFIG_MAP.replace("mode: fast", "bad key: x"), 'data[bad key]: invalid value "bad key"'),
        (CONFIG_MAP.replace("mode: fast", "port: 8080"), "data.port: must be a string"),
        (CONFIG_MAP + "---\n" + SECRET.replace("stringData:", "stringDat:"),
         "document 2: stringDat: unknown field"),
    ],
)
def test_bad_manifests_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        manifest.load(text)
    assert str(err.value).startswith(message), str(err.value)


def test_yaml_of_a_secret_is_base64_with_sorted_keys_and_loads_back() -> None:
    secret = objects_pb2.Secret(api_version="v1", kind="Secret", type="Opaque",
                                data={"z": b"\x00\xff", "a": b"plain"})
    secret.metadata.name = "db"
    text = manifest.to_yaml(secret)
    assert list(yaml.safe_load(text)["data"].items()) == [("a", "cGxhaW4="), ("z", "AP8=")]
    assert manifest.load(text) == [secret]
