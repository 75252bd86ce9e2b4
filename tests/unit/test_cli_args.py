"""pyctl's command line: parsing, kubectl's flag habits, usage errors and exit codes."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from pymaster.api import clientconfig, pki
from pymaster.cli import commands, get
from pymaster.cli.exec import exec_command
from pymaster.cli.main import (
    UsageError,
    main,
    normalize_bool_flags,
    parse_args,
    parse_duration,
    resolve_targets,
)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyctl never reads the real ~/.pykube/config here, nor a $PYKUBE_SERVER of the caller."""
    monkeypatch.setenv("PYKUBE_CONFIG", str(tmp_path / "absent-config"))
    monkeypatch.delenv("PYKUBE_SERVER", raising=False)


def _write_config(path: Path, server: str) -> Path:
    ca = pki.CertificateAuthority.create()
    key, cert = ca.issue(pki.ADMIN_CN, pki.MASTERS_GROUP, [], 3600, server=False, client=True)
    clientconfig.save_config(path, clientconfig.ClientConfig(server, ca.cert_pem, cert, key))
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("get pods", {"command": "get", "resource": "pods", "names": [], "namespace": None, "output": None}),
        ("get po web db", {"resource": "pods", "names": ["web", "db"]}),
        ("get pod/web pod/db", {"resource": "pods", "names": ["web", "db"]}),
        ("get no", {"resource": "nodes", "names": []}),
        ("get NODES n1", {"resource": "nodes", "names": ["n1"]}),
        ("get node/n1 -o yaml", {"resource": "nodes", "names": ["n1"], "output": "yaml"}),
        ("get ev", {"resource": "events", "names": []}),
        ("get Events -A --field-selector involvedObject.name=web",
         {"resource": "events", "all_namespaces": True, "field_selector": "involvedObject.name=web"}),
        ("get event/web.1 event/web.2 -o wide", {"resource": "events", "names": ["web.1", "web.2"]}),
        ("get pods -n kube -o wide", {"namespace": "kube", "output": "wide"}),
        ("-n kube get pods", {"namespace": "kube"}),
        ("--namespace=kube get pods", {"namespace": "kube"}),
        ("-n get get pods", {"namespace": "get", "command": "get"}),
        ("get pods -A -l app=web --field-selector spec.nodeName=n1",
         {"all_namespaces": True, "selector": "app=web", "field_selector": "spec.nodeName=n1"}),
        ("get pods -w", {"watch": True}),
        ("get pods --watch=true", {"watch": True}),
        ("get pods --watch=false", {"watch": False}),
        ("get pods -Aw", {"watch": True, "all_namespaces": True}),
        ("get pods --show-labels --no-headers", {"show_labels": True, "no_headers": True}),
        ("get pods web -o name", {"names": ["web"], "output": "name"}),
        ("--server h:1 get pods", {"server": "h:1"}),
        ("get pods -s h:2", {"server": "h:2"}),
        ("-s h:1 get pods --server h:3", {"server": "h:3"}),
        ("--request-timeout 5 get pods", {"request_timeout": 5.0}),
        ("get pods --request-timeout=1m", {"request_timeout": 60.0}),
        ("get pods", {"config": None, "server": None}),
        ("--config /x/admin.yaml get pods", {"config": "/x/admin.yaml"}),
        ("get pods --config=/x/a.yaml", {"config": "/x/a.yaml"}),
        ("--kubeconfig /k get pods -s h:1", {"config": "/k", "server": "h:1"}),
        ("--config get get pods", {"config": "get", "command": "get"}),
        ("describe pod web", {"command": "describe", "resource": "pods", "names": ["web"]}),
        ("describe no n1 n2", {"resource": "nodes", "names": ["n1", "n2"]}),
        ("describe pods -l app=web", {"resource": "pods", "names": [], "selector": "app=web"}),
        ("describe ev web.1", {"resource": "events", "names": ["web.1"]}),
        ("apply -f pod.yaml", {"command": "apply", "filename": ["pod.yaml"]}),
        ("apply -f - -n team", {"filename": ["-"], "namespace": "team"}),
        ("apply -f a.yaml -f b.yaml", {"filename": ["a.yaml", "b.yaml"]}),
        ("create -f pod.yaml", {"command": "create", "filename": ["pod.yaml"]}),
        ("delete pod web", {"command": "delete", "resource": "pods", "names": ["web"], "wait": True,
                            "force": False, "grace_period": -1, "timeout": 0.0}),
        ("delete pod web db -n x", {"names": ["web", "db"], "namespace": "x"}),
        ("delete pod --wait web", {"names": ["web"], "wait": True}),
        ("delete pod web --wait=false", {"wait": False}),
        ("delete pod web --no-wait", {"wait": False}),
        ("delete pod web --wait=0", {"wait": False}),
        ("delete pod --force web --grace-period 0", {"names": ["web"], "force": True, "grace_period": 0}),
        ("delete pod web --force=true", {"force": True}),
        ("delete pod web --timeout 30s", {"timeout": 30.0}),
        ("delete pods -l app=web", {"names": [], "selector": "app=web"}),
        ("delete pods --all", {"names": [], "all": True}),
        ("delete -f pod.yaml", {"filename": ["pod.yaml"], "resource": "", "names": []}),
        ("delete node n1", {"resource": "nodes", "names": ["n1"], "ignore_not_found": False}),
        ("delete events --all -n team", {"resource": "events", "all": True, "namespace": "team"}),
        ("delete ev -l app=web", {"resource": "events", "selector": "app=web"}),
        ("delete pod web --ignore-not-found", {"ignore_not_found": True}),
        ("logs web", {"command": "logs", "pod": "web", "container": "", "follow": False, "tail": -1}),
        ("logs pod/web -c app -f --tail 10 --timestamps",
         {"pod": "web", "container": "app", "follow": True, "tail": 10, "timestamps": True}),
        ("logs web sidecar", {"pod": "web", "container": "sidecar"}),
        ("logs -f web -n x", {"pod": "web", "follow": True, "namespace": "x"}),
        ("exec web -- ls -l", {"command": "exec", "pod": "web", "remote_command": ["ls", "-l"],
                               "stdin": False, "tty": False, "container": ""}),
        ("exec -it pod/web -c app -- sh", {"pod": "web", "stdin": True, "tty": True, "container": "app"}),
        ("exec web -n x -- sh -c --watch=true -- -n y",
         {"namespace": "x", "remote_command": ["sh", "-c", "--watch=true", "--", "-n", "y"]}),
        ("exec web --stdin=true -- cat", {"stdin": True, "tty": False}),
        ("cordon n1 node/n2", {"command": "cordon", "nodes": ["n1", "n2"]}),
        ("uncordon n1", {"command": "uncordon", "nodes": ["n1"]}),
        ("version", {"command": "version"}),
        ("", {"command": None}),
    ],
)
def test_parse_args(argv: str, expected: dict[str, object]) -> None:
    args = parse_args(argv.split())
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    ("command", "handler"),
    [("get pods", get.get), ("describe pod web", get.describe), ("apply -f x", commands.apply),
     ("create -f x", commands.create), ("delete pod web", commands.delete), ("logs web", commands.logs),
     ("cordon n1", commands.cordon), ("uncordon n1", commands.uncordon), ("version", commands.version),
     ("exec web -- ls", exec_command)],
)
def test_every_command_has_its_handler(command: str, handler: object) -> None:
    assert parse_args(command.split()).handler is handler


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("get", "you must specify the type of resource: pods (po), nodes (no), events (ev), configmaps (cm), "
                "secrets, deployments (deploy)"),
        ("get statefulsets", 'the server doesn\'t have a resource type "statefulsets"'),
        ("get pods,statefulsets", 'the server doesn\'t have a resource type "statefulsets"'),
        ("get pods,nodes -w", "watch is only supported on individual resources and resource collections"),
        ("get pod/web web2", "must have a single resource and name"),
        ("get cm,secrets pod/web", "no need to specify a resource type"),
        ("get pod/", "must have a single resource and name"),
        ("get pods pod/web", "no need to specify a resource type"),
        ("get pods web -A", "cannot be retrieved by name across all namespaces"),
        ("get pods web -l app=web", "name cannot be provided when a selector is specified"),
        ("get pods a b -w", "watch is only supported on one name"),
        ("get pods -o xml", "invalid choice: 'xml'"),
        ("get pods --watch=maybe", 'invalid argument "maybe" for "--watch" flag'),
        ("get pods --request-timeout soon", "invalid duration"),
        ("describe", "the following arguments are required"),
        ("apply", "the following arguments are required: -f/--filename"),
        ("delete pods", "no name was specified"),
        ("delete pods web --all", "names cannot be combined"),
        ("delete pods web -f pod.yaml", "may not specify resource arguments"),
        ("delete pods --grace-period -5 web", "--grace-period must be -1"),
        ("delete nodes -l a=b", "delete nodes by name"),
        ("delete no --all", "delete nodes by name"),
        ("delete pod/web event", "must have a single resource and name"),
        ("logs", "the following arguments are required: POD"),
        ("logs node/n1", "logs works on pods only"),
        ("logs web c1 -c c2", "only one of -c or an inline container name"),
        ("logs web --tail -3", "--tail must be"),
        ("cordon pod/web", "cordon works on nodes only"),
        ("exec web ls", "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"),
        ("exec web", "you must specify at least one command for the container"),
        ("exec web --", "you must specify at least one command for the container"),
        ("exec node/n1 -- ls", "exec works on pods only"),
        ("frobnicate", "invalid choice: 'frobnicate'"),
        ("get pods --bogus", "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors(argv: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv.split())
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--wait=false", "web"], ["--no-wait", "web"]),
        (["--wait=true"], ["--wait"]),
        (["--wait=F"], ["--no-wait"]),
        (["--force=false", "--force=1"], ["--force"]),
        (["--watch=TRUE"], ["--watch"]),
        (["--server=h:1", "-n=x"], ["--server=h:1", "-n=x"]),
        (["--", "--wait=false"], ["--", "--wait=false"]),
    ],
)
def test_normalize_bool_flags(argv: list[str], expected: list[str]) -> None:
    assert normalize_bool_flags(argv) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("2.5", 2.5), (".5", 0.5), ("0", 0.0), ("500ms", 0.5), ("30s", 30.0), ("1m", 60.0),
     ("2h", 7200.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "5d", "soon", "1m30s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["po"], ("pods", [])),
        (["pod", "a", "b"], ("pods", ["a", "b"])),
        (["po/a", "pods/b"], ("pods", ["a", "b"])),
        (["no/n1"], ("nodes", ["n1"])),
    ],
)
def test_resolve_targets(words: list[str], expected: tuple[str, list[str]]) -> None:
    assert resolve_targets(words, "get") == expected


def test_main_prints_usage_errors_like_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "statefulsets"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: the server doesn't have a resource type \"statefulsets\"\nSee 'pyctl get -h' for help.\n"
    )


def test_main_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "get" in capsys.readouterr().out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_unreachable_master_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    server = f"127.0.0.1:{_closed_port()}"
    config = _write_config(tmp_path / "admin.yaml", server if how == "config" else "127.0.0.1:1")
    argv = ["--config", str(config), "get", "pods"]
    if how == "flag":
        argv[:0] = ["--server", server]
    elif how == "env":
        monkeypatch.setenv("PYKUBE_SERVER", server)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the pykube master at {server}: ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [["get", "pods"], ["version"], ["logs", "web"]])
def test_missing_config_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: no client config at {tmp_path / 'absent-config'}; run `make up` (it writes "
        "~/.pykube/config) or pass --config <master data dir>/admin.yaml\n"
    )


def test_config_flag_beats_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.yaml"), "get", "pods"]) == 1
    assert f"error: no client config at {tmp_path / 'nope.yaml'};" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: h:1\n", "missing certificate-authority-data"),
        ("[1, 2]\n", "must be a YAML mapping"),
        ("server: h:1\ncertificate-authority-data: '%%%'\n", "invalid base64"),
    ],
)
def test_unusable_config_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["--config", str(config), "get", "nodes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}") and message in err
    assert err.count("\n") == 1


def test_apply_reports_a_bad_manifest_before_contacting_the_master(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "pods.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: busybox}]}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c}]}\n"
    )
    server = f"127.0.0.1:{_closed_port()}"  # nothing listens: the error must come first
    assert main(["--server", server, "apply", "-f", str(manifest)]) == 1
    assert capsys.readouterr().err == "error: document 2: spec.containers[0].image: required\n"


def test_apply_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", "-f", "/nonexistent/pod.yaml"]) == 1
    assert capsys.readouterr().err == 'error: the path "/nonexistent/pod.yaml" does not exist\n'


def test_apply_namespace_conflict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: team}\n"
        "spec: {containers: [{name: c, image: busybox}]}\n"
    )
    assert main(["apply", "-f", str(manifest), "-n", "other"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        'error: the namespace from the provided object "team" does not match the namespace "other"'
    )


def test_apply_names_every_unknown_field_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labelz: {}}\n"
        "spec: {containers: [{name: c, image: busybox, livenessProbee: {}}], foo: 1}\n"
    )
    assert main(["apply", "-f", str(manifest)]) == 1
    assert capsys.readouterr().err == (
        "error: metadata.labelz: unknown field; spec.containers[0].livenessProbee: unknown field; "
        "spec.foo: unknown field\n"
    )


def test_create_of_an_unknown_kind_names_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: busybox}]}\n"
        "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: a}\n"
    )
    assert main(["create", "-f", str(manifest)]) == 1
    assert capsys.readouterr().err == (
        'error: document 2: kind: unsupported kind "StatefulSet" (apps/v1); '
        "supported: v1 Pod, v1 Node, v1 Event, v1 ConfigMap, v1 Secret, apps/v1 Deployment, "
        "apps/v1 ReplicaSet, apps/v1 DaemonSet, batch/v1 Job, v1 Service, discovery.k8s.io/v1 EndpointSlice\n"
    )
