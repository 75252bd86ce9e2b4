"""Client config files: round trip, file mode, error messages, gRPC credentials and options."""

import base64
import stat
from pathlib import Path

import grpc
import pytest
import yaml

from pymaster.api import clientconfig, pki
from pymaster.api.clientconfig import ClientConfig


@pytest.fixture(scope="module")
def cfg() -> ClientConfig:
    ca = pki.CertificateAuthority.create()
    key_pem, cert_pem = ca.issue("admin", pki.MASTERS_GROUP, [], 3600, server=False, client=True)
    return ClientConfig(server="127.0.0.1:6443", ca_pem=ca.cert_pem, cert_pem=cert_pem, key_pem=key_pem)


def test_round_trip(tmp_path, cfg):
    path = tmp_path / "sub" / "dir" / "config"
    clientconfig.save_config(path, cfg)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert clientconfig.load_config(path) == cfg
    data = yaml.safe_load(path.read_text())
    assert list(data) == [
        "server",
        "certificate-authority-data",
        "client-certificate-data",
        "client-key-data",
        "tls-server-name",
    ]
    assert base64.b64decode(data["client-key-data"]) == cfg.key_pem


def test_round_trip_server_name(tmp_path, cfg):
    named = ClientConfig(**{**cfg.__dict__, "tls_server_name": "master.local"})
    clientconfig.save_config(tmp_path / "c", named)
    assert clientconfig.load_config(tmp_path / "c").tls_server_name == "master.local"


def test_repr_hides_key(cfg):
    assert "PRIVATE KEY" not in repr(cfg)


def _write(tmp_path: Path, cfg: ClientConfig, **changes) -> Path:
    data = yaml.safe_load(clientconfig.dump_config(cfg))
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"server": None}, "missing server"),
        ({"certificate_authority_data": None}, "missing certificate-authority-data"),
        ({"client_certificate_data": ""}, "missing client-certificate-data"),
        ({"client_key_data": None}, "missing client-key-data"),
        ({"client_key_data": "!!!notbase64"}, "client-key-data: invalid base64"),
        ({"client_key_data": 12}, "client-key-data: must be a base64 string"),
        (
            {"certificate_authority_data": base64.b64encode(b"junk").decode()},
            "certificate-authority-data: invalid certificate",
        ),
        ({"client_key_data": base64.b64encode(b"junk").decode()}, "client-key-data: invalid private key"),
        ({"tls_server_name": 5}, "tls-server-name: must be a string"),
    ],
)
def test_load_errors_name_file_and_key(tmp_path, cfg, changes, message):
    path = _write(tmp_path, cfg, **changes)
    with pytest.raises(ValueError, match=message) as info:
        clientconfig.load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- a list\n", "just a string\n", "{unclosed: [\n"])
def test_load_rejects_non_mapping(tmp_path, text):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        clientconfig.load_config(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        clientconfig.load_config(tmp_path / "nope")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, Path.home() / ".pykube" / "config"),
        ("/etc/pykube/admin.yaml", Path("/etc/pykube/admin.yaml")),
    ],
)
def test_default_config_path(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("PYKUBE_CONFIG", raising=False)
    else:
        monkeypatch.setenv("PYKUBE_CONFIG", env)
    assert clientconfig.default_config_path() == expected


def test_channel_credentials(cfg):
    assert isinstance(clientconfig.channel_credentials(cfg), grpc.ChannelCredentials)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", [("grpc.ssl_target_name_override", "pymaster")]),
        ("master.local", [("grpc.ssl_target_name_override", "master.local")]),
    ],
)
def test_channel_options(cfg, name, expected):
    assert clientconfig.channel_options(ClientConfig(**{**cfg.__dict__, "tls_server_name": name})) == expected
