"""pykubelet's flags: defaults, node labels, addresses, and errors that name the flag."""

from __future__ import annotations

import pytest

from pykubelet import main


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("a=b", {"a": "b"}),
        ("a=b,c=d", {"a": "b", "c": "d"}),
        (" a = b , c=d ,", {"a": "b", "c": "d"}),
        ("zone=", {"zone": ""}),
        ("topology.kubernetes.io/zone=eu-1a", {"topology.kubernetes.io/zone": "eu-1a"}),
        ("a=1,a=2", {"a": "2"}),
    ],
)
def test_parse_node_labels(text: str, expected: dict[str, str]) -> None:
    assert main.parse_node_labels(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "--node-labels: 'a' is not key=value"),
        ("a=b,c", "--node-labels: 'c' is not key=value"),
        ("=b", "--node-labels: '=b' is not key=value"),
        ("-a=b", "--node-labels: invalid label key '-a'"),
        ("Bad_Prefix/a=b", "--node-labels: invalid label key 'Bad_Prefix/a'"),
        ("a=b c", "--node-labels: invalid value 'b c' for label 'a'"),
        ("a=" + "x" * 64, "--node-labels: invalid value"),
    ],
)
def test_parse_node_labels_errors_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        main.parse_node_labels(text)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6443", ("127.0.0.1", 6443)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:10250", ("::1", 10250)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert main.parse_address(text, "--listen") == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "host:", "host:x", "host:70000"])
def test_parse_address_errors(text: str) -> None:
    with pytest.raises(ValueError, match="^--listen: expected HOST:PORT"):
        main.parse_address(text, "--listen")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKUBE_SERVER", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(main.node_info, "hostname", lambda: "myhost")
    args = main.parse_args([])
    assert args.server == "127.0.0.1:6443"
    assert args.node_name == "myhost"
    assert args.root_dir == "/var/lib/pykubelet"
    assert args.listen == "127.0.0.1:10250"
    assert args.metrics_addr == "127.0.0.1:10255"
    assert args.status_interval == 10.0
    assert args.lease_interval == 10.0
    assert args.max_pods == 110
    assert args.node_labels == {}
    assert args.pod_infra_image == "pykube/pause:3.9"
    assert args.docker_host == "unix:///var/run/docker.sock"
    assert args.log_level == "INFO"


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKUBE_SERVER", "10.0.0.1:7000")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    args = main.parse_args([])
    assert args.server == "10.0.0.1:7000"
    assert args.docker_host == "tcp://127.0.0.1:2375"


def test_flags() -> None:
    args = main.parse_args([
        "--server", "m:1", "--node-name", "Node-A", "--status-interval", "0.5", "--lease-interval", "2",
        "--max-pods", "7", "--node-labels", "disk=ssd,zone=a", "--log-level", "debug",
    ])
    assert args.node_name == "node-a"
    assert (args.status_interval, args.lease_interval, args.max_pods) == (0.5, 2.0, 7)
    assert args.node_labels == {"disk": "ssd", "zone": "a"}
    assert args.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--node-labels", "oops"], "argument --node-labels: 'oops' is not key=value"),
        (["--status-interval", "0"], "argument --status-interval: must be a positive number"),
        (["--lease-interval", "soon"], "argument --lease-interval: 'soon' is not a number of seconds"),
        (["--max-pods", "0"], "argument --max-pods: must be a positive integer"),
        (["--listen", "10250"], "--listen: expected HOST:PORT"),
        (["--metrics-addr", "x:y"], "--metrics-addr: expected HOST:PORT"),
        (["--node-name", "my_host"], "--node-name: 'my_host' is not a valid node name"),
        (["--node-name", " "], "--node-name: '' is not a valid node name"),
        (["--node-name", "a-"], "--node-name: 'a-' is not a valid node name"),
    ],
)
def test_flag_errors_name_the_flag(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
