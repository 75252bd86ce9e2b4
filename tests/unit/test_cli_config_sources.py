"""How pyctl builds ConfigMaps and Secrets from its flags (pymaster.cli.config_sources): kubectl's
literal, file, directory and env-file sources, TLS pairs and registry credentials, with kubectl's
messages."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pymaster.api import pki
from pymaster.cli import config_sources as cs
from pymaster.cli.context import CommandError


@pytest.mark.parametrize(
    ("source", "expected"),
    [("a=1", ("a", "1")), ("url=http://x?a=b", ("url", "http://x?a=b")), ("empty=", ("empty", ""))],
)
def test_literal_sources(source: str, expected: tuple[str, str]) -> None:
    assert cs.parse_literal_source(source) == expected


@pytest.mark.parametrize("source", ["novalue", "=1"])
def test_bad_literal_sources(source: str) -> None:
    with pytest.raises(CommandError, match=f"^invalid literal source {source}, expected key=value$"):
        cs.parse_literal_source(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [("dir/app.conf", ("app.conf", "dir/app.conf")), ("conf=dir/app.conf", ("conf", "dir/app.conf")),
     ("configs/", ("configs", "configs/"))],
)
def test_file_sources(source: str, expected: tuple[str, str]) -> None:
    assert cs.parse_file_source(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [("=path", "key name for file path path missing"), ("key=", "file path for key name key missing"),
     ("a=b=c", "key names or file paths cannot contain '='")],
)
def test_bad_file_sources(source: str, message: str) -> None:
    with pytest.raises(CommandError, match=f"^{message}$"):
        cs.parse_file_source(source)


def test_config_map_from_files_directories_and_literals(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.txt").write_text("alpha")
    (conf / "logo.png").write_bytes(b"\x89PNG\xff")
    (conf / "sub").mkdir()
    (conf / "link").symlink_to(conf / "a.txt")
    (tmp_path / "single").write_text("one")
    cm = cs.config_map_from_sources("app", "team", ["x=1"], [str(conf), f"renamed={tmp_path / 'single'}"], [])
    assert (cm.metadata.name, cm.metadata.namespace) == ("app", "team")
    assert dict(cm.data) == {"a.txt": "alpha", "renamed": "one", "x": "1"}
    assert dict(cm.binary_data) == {"logo.png": b"\x89PNG\xff"}  # not UTF-8: binaryData


def test_config_map_source_errors(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    absent = tmp_path / "absent"
    cases = [
        ((["a=1", "a=2"], [], []),
         'cannot add key "a", another key by that name already exists in Data for ConfigMap "app"'),
        ((["bad key=1"], [], []), '"bad key" is not a valid key name for a ConfigMap: a valid config key'),
        (([], [f"k={tmp_path}"], []), "cannot give a key name for a directory path"),
        (([], [str(absent)], []), f"error reading {absent}: no such file or directory"),
        ((["a=1"], [], [str(tmp_path / "f")]),
         "from-env-file cannot be combined with from-file or from-literal"),
    ]
    for (literals, files, env_files), message in cases:
        with pytest.raises(CommandError) as err:
            cs.config_map_from_sources("app", "", literals, files, env_files)
        assert str(err.value).startswith(message), str(err.value)


def test_env_files_follow_kubectl(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_bytes(b"\xef\xbb\xbfFIRST=1\r\n# a comment\n\n   SPACED=a b \nEQUALS=x=y\nFROM_ENV\nUNSET\n")
    assert cs.parse_env_file(str(env), {"FROM_ENV": "from pyctl's environment"}) == [
        ("FIRST", "1"), ("SPACED", "a b "), ("EQUALS", "x=y"), ("FROM_ENV", "from pyctl's environment"),
        ("UNSET", ""),
    ]
    env.write_text("1BAD=x\n")
    with pytest.raises(CommandError, match='^"1BAD" is not a valid key name: a valid environment variable'):
        cs.parse_env_file(str(env))
    env.write_bytes(b"OK=1\nBAD=\xff\n")
    with pytest.raises(CommandError, match="contains invalid utf8 bytes at line 2"):
        cs.parse_env_file(str(env))
    with pytest.raises(CommandError, match="cannot be a directory"):
        cs.parse_env_file(str(tmp_path))


def test_secret_generic_keeps_bytes_and_its_type(tmp_path: Path) -> None:
    (tmp_path / "key.bin").write_bytes(b"\x00\xff")
    env = tmp_path / "e.env"
    env.write_text("A=1\n")
    secret = cs.secret_from_sources("db", "", "example.com/token", ["pw=s3cret"], [str(tmp_path / "key.bin")],
                                    [])
    assert dict(secret.data) == {"pw": b"s3cret", "key.bin": b"\x00\xff"}
    assert secret.type == "example.com/token"
    assert dict(cs.secret_from_sources("e", "", "", [], [], [str(env)]).data) == {"A": b"1"}
    with pytest.raises(CommandError, match="^cannot add key pw, another key by that name already exists$"):
        cs.secret_from_sources("db", "", "", ["pw=1", "pw=2"], [], [])
    with pytest.raises(CommandError, match='^"a b" is not valid key name for a Secret a valid config key'):
        cs.secret_from_sources("db", "", "", ["a b=1"], [], [])


def _pair(tmp_path: Path, name: str) -> tuple[str, str]:
    key_pem, cert_pem = pki.CertificateAuthority.create().issue(name, "", [name], 3600)
    (tmp_path / f"{name}.crt").write_bytes(cert_pem)
    (tmp_path / f"{name}.key").write_bytes(key_pem)
    return str(tmp_path / f"{name}.crt"), str(tmp_path / f"{name}.key")


def test_tls_secrets_take_a_matching_pem_pair(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "web")
    secret = cs.tls_secret("web-tls", "", cert, key)
    assert secret.type == "kubernetes.io/tls"
    assert secret.data["tls.crt"] == Path(cert).read_bytes()
    assert secret.data["tls.key"] == Path(key).read_bytes()
    other_cert, _ = _pair(tmp_path, "other")
    cases = [
        ((other_cert, key), "tls: private key does not match public key"),
        ((key, key), "tls: failed to find certificate PEM data in certificate input"),
        ((cert, cert), "tls: failed to parse private key"),
        ((str(tmp_path / "web.key.absent"), key), "Cannot read file"),
        (("", key), "key and cert must be specified"),
    ]
    (tmp_path / "empty").write_text("")
    cases.append(((str(tmp_path / "empty"), key), "tls: failed to find any PEM data in certificate input"))
    for (cert_path, key_path), message in cases:
        with pytest.raises(CommandError) as err:
            cs.tls_secret("web-tls", "", cert_path, key_path)
        assert str(err.value).startswith(message), str(err.value)


def test_docker_registry_secrets_hold_a_docker_config(tmp_path: Path) -> None:
    secret = cs.docker_registry_secret("reg", "", "registry.example:5000", "me", "pw", "", [])
    assert secret.type == "kubernetes.io/dockerconfigjson"
    config = json.loads(secret.data[".dockerconfigjson"])
    assert config == {"auths": {"registry.example:5000": {
        "username": "me", "password": "pw", "auth": base64.b64encode(b"me:pw").decode(),
    }}}
    with pytest.raises(CommandError, match="^either --from-file or the combination of --docker-username"):
        cs.docker_registry_secret("reg", "", cs.DEFAULT_DOCKER_SERVER, "me", "", "", [])
    config_file = tmp_path / "config.json"
    config_file.write_text('{"auths": {}}')
    from_file = cs.docker_registry_secret("reg", "", "", "", "", "", [f".dockerconfigjson={config_file}"])
    assert from_file.data[".dockerconfigjson"] == b'{"auths": {}}'
