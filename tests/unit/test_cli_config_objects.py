"""pyctl's ConfigMap and Secret commands against the real master in-process: create configmap and
create secret generic|tls|docker-registry, get of several kinds at once, describe without Secret
values, -o yaml round trips through apply, and their command lines."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import yaml
from test_cli_commands import Pyctl

from pymaster.api import pki
from pymaster.app import MasterApp
from pymaster.cli import create_config
from pymaster.cli.context import CommandError
from pymaster.cli.main import parse_args
from pymaster.cli.targets import UsageError


@pytest.fixture
def pyctl(master: MasterApp) -> Pyctl:
    runner = Pyctl(master)
    runner.clock = lambda: time.time() + 3600  # the AGE column reads "60m"
    return runner


async def test_create_configmap_and_secrets_then_get_both_kinds(pyctl: Pyctl, tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_text("color=blue\n")
    (tmp_path / "logo.bin").write_bytes(b"\xff\x00")
    files = ["--from-file", str(tmp_path / "app.conf"), "--from-file", f"logo={tmp_path}/logo.bin"]
    code, out, _ = await pyctl("create", "configmap", "app", "--from-literal", "mode=fast", *files)
    assert (code, out) == (0, "configmap/app created\n")
    assert (await pyctl("create", "secret", "generic", "db", "--from-literal=password=hunter2"))[1] == (
        "secret/db created\n"
    )
    registry = ["--docker-server", "registry.local:5000", "--docker-username", "me",
                "--docker-password", "pw"]
    assert (await pyctl("create", "secret", "docker-registry", "reg", *registry))[1] == "secret/reg created\n"
    code, out, err = await pyctl("get", "cm,secrets")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "NAME            DATA   AGE",
        "configmap/app   3      60m",
        "",
        "NAME         TYPE                             DATA   AGE",
        "secret/db    Opaque                           1      60m",
        "secret/reg   kubernetes.io/dockerconfigjson   1      60m",
    ]
    assert (await pyctl("get", "secrets", "-o", "name"))[1] == "secret/db\nsecret/reg\n"
    _, out, _ = await pyctl("get", "cm/app", "secret/db", "-o", "yaml")
    listed = yaml.safe_load(out)
    kinds = [(i["kind"], i["metadata"]["name"]) for i in listed["items"]]
    assert kinds == [("ConfigMap", "app"), ("Secret", "db")]
    assert listed["items"][0]["binaryData"] == {"logo": base64.b64encode(b"\xff\x00").decode()}
    assert listed["items"][1]["data"] == {"password": base64.b64encode(b"hunter2").decode()}


async def test_describe_shows_config_values_but_only_the_sizes_of_secret_values(pyctl: Pyctl) -> None:
    await pyctl("create", "configmap", "app", "--from-literal", "b=2", "--from-literal", "a=1")
    await pyctl("create", "secret", "generic", "db", "--from-literal", "password=hunter2", "-n", "team")
    code, out, _ = await pyctl("describe", "cm", "app")
    assert code == 0
    assert out.splitlines() == [
        "Name:         app", "Namespace:    default", "Labels:       <none>", "Annotations:  <none>", "",
        "Data", "====", "a:", "----", "1", "", "b:", "----", "2", "", "", "BinaryData", "====", "",
        "Events:  <none>",
    ]
    code, out, _ = await pyctl("describe", "secret", "db", "-n", "team")
    assert code == 0 and "hunter2" not in out and base64.b64encode(b"hunter2").decode() not in out
    assert out.splitlines() == [
        "Name:         db", "Namespace:    team", "Labels:       <none>", "Annotations:  <none>", "",
        "Type:  Opaque", "", "Data", "====", "password:  7 bytes",
    ]


async def test_yaml_output_applies_back_unchanged(pyctl: Pyctl) -> None:
    await pyctl("create", "secret", "generic", "db", "--from-literal", "password=hunter2")
    await pyctl("create", "configmap", "app", "--from-literal", "a=1")
    for resource in ("secret/db", "cm/app"):
        title = resource.replace("cm/", "configmap/")
        _, document, _ = await pyctl("get", resource, "-o", "yaml")
        # Created, not applied: the first apply adds the last-applied record.
        assert await pyctl("apply", "-f", "-", stdin=document) == (0, f"{title} configured\n", "")
        _, document, _ = await pyctl("get", resource, "-o", "yaml")
        assert await pyctl("apply", "-f", "-", stdin=document) == (0, f"{title} unchanged\n", "")
        assert "hunter2" not in document and base64.b64encode(b"hunter2").decode() not in document.split(
            "last-applied-configuration")[1].splitlines()[0]
    _, document, _ = await pyctl("get", "secret", "db", "-o", "json")
    changed = document.replace(base64.b64encode(b"hunter2").decode(), base64.b64encode(b"rotated").decode())
    assert (await pyctl("apply", "-f", "-", stdin=changed))[1] == "secret/db configured\n"
    manifest = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: plain}\n"
    assert (await pyctl("apply", "-f", "-", stdin=manifest))[1] == "secret/db configured\n"
    _, out, _ = await pyctl("get", "secret", "db", "-o", "yaml")
    assert yaml.safe_load(out)["data"] == {"password": base64.b64encode(b"plain").decode()}
    assert "stringData" not in out


async def test_dry_run_prints_without_creating(pyctl: Pyctl) -> None:
    code, out, _ = await pyctl("create", "secret", "generic", "db", "--from-literal", "a=b",
                               "--dry-run=client", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"a": "Yg=="},
    }
    assert (await pyctl("create", "cm", "app", "--dry-run"))[1] == "configmap/app created (dry run)\n"
    assert (await pyctl("get", "cm,secrets"))[2] == "No resources found in default namespace.\n"
    with pytest.raises(CommandError, match="--dry-run=server is not supported"):
        await pyctl("create", "cm", "app", "--dry-run=server")


async def test_create_errors_read_like_kubectl(pyctl: Pyctl, tmp_path: Path) -> None:
    await pyctl("create", "configmap", "app")
    with pytest.raises(CommandError, match=r'^failed to create configmap: configmaps "app" already exists$'):
        await pyctl("create", "configmap", "app")
    with pytest.raises(CommandError, match="^exactly one NAME is required, got 2$"):
        await pyctl("create", "configmap", "a", "b")
    with pytest.raises(CommandError, match="^invalid literal source novalue, expected key=value$"):
        await pyctl("create", "secret", "generic", "db", "--from-literal", "novalue")
    refused = '^failed to create secret: type: unsupported value "kubernetes.io/x'
    with pytest.raises(CommandError, match=refused):
        await pyctl("create", "secret", "generic", "db", "--type", "kubernetes.io/x")


async def test_create_secret_tls(pyctl: Pyctl, tmp_path: Path) -> None:
    key_pem, cert_pem = pki.CertificateAuthority.create().issue("web", "", ["web"], 3600)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    code, out, _ = await pyctl("create", "secret", "tls", "web-tls", "--cert", str(tmp_path / "tls.crt"),
                               "--key", str(tmp_path / "tls.key"))
    assert (code, out) == (0, "secret/web-tls created\n")
    _, out, _ = await pyctl("get", "secret", "web-tls")
    assert out.split("\n")[1].split()[:3] == ["web-tls", "kubernetes.io/tls", "2"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("create configmap app --from-literal a=1",
         {"command": "create configmap", "name": ["app"], "from_literal": ["a=1"],
          "handler": create_config.create_configmap}),
        ("-n team create cm app", {"command": "create configmap", "namespace": "team", "name": ["app"]}),
        ("create -n team secret generic db --type T", {"command": "create secret generic", "type": "T",
                                                        "namespace": "team"}),
        ("create secret tls t --cert c --key k", {"command": "create secret tls", "cert": "c", "key": "k"}),
        ("create secret docker-registry r --docker-username u", {"command": "create secret docker-registry",
                                                                  "docker_server": "https://index.docker.io/v1/"}),
        ("create cm app --dry-run=client -o yaml", {"dry_run": "client", "output": "yaml"}),
        ("create -f pod.yaml", {"command": "create", "filename": ["pod.yaml"]}),
        ("get cm,secrets x", {"groups": [("configmaps", ["x"]), ("secrets", ["x"])]}),
        ("get pod/web cm/a pod/db", {"groups": [("pods", ["web", "db"]), ("configmaps", ["a"])]}),
        ("describe cm,secrets", {"groups": [("configmaps", []), ("secrets", [])]}),
    ],
)
def test_parse_config_commands(argv: str, expected: dict[str, object]) -> None:
    args = parse_args(argv.split())
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("create secret", "you must specify the type of secret: generic, tls, docker-registry"),
        ("create secret opaque db", 'unknown command "opaque" for "pyctl create secret"'),
        ("create configmap app --from-literal", "expected one argument"),
        ("create secret tls t --from-literal a=b", "unrecognized arguments: --from-literal"),
    ],
)
def test_config_command_usage_errors(argv: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv.split())
    assert message in caught.value.message
