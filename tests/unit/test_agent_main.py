"""pykubelet's flags: defaults, node labels, addresses, and errors that name the flag."""

from __future__ import annotations

import pytest

from pykubelet import config, main
from pykubelet.runtime.base import ContainerLogLimits
from pymaster.api.tokens import JoinToken

TOKEN = str(JoinToken.new("ab" * 32))


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
    assert config.parse_address(text, "--listen") == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "host:", "host:x", "host:70000"])
def test_parse_address_errors(text: str) -> None:
    with pytest.raises(ValueError, match="^--listen: expected HOST:PORT"):
        config.parse_address(text, "--listen")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKUBE_SERVER", raising=False)
    monkeypatch.delenv("PYKUBE_TOKEN", raising=False)
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
    assert (args.node_labels, args.register_with_taints) == ({}, [])
    assert args.pod_infra_image == "pykube/pause:3.9"
    assert args.docker_host == "unix:///var/run/docker.sock"
    assert args.log_level == "INFO"
    assert args.join_server == "127.0.0.1:6444"
    assert args.token is None
    assert (args.allow_privileged, args.allow_host_network, args.allowed_host_path) == (False, False, [])
    # The kubelet's defaults: 10Mi per file, 5 files.
    assert (args.container_log_max_size, args.container_log_max_files) == (10 * 2**20, 5)


def test_register_with_taints() -> None:
    args = main.parse_args(["--register-with-taints", "dedicated=db:NoSchedule, gpu:NoExecute"])
    assert [(t.key, t.value, t.effect) for t in args.register_with_taints] == [
        ("dedicated", "db", "NoSchedule"), ("gpu", "", "NoExecute")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dedicated", "invalid taint spec: dedicated"),
        ("a=b:Never", "invalid taint effect: Never, unsupported taint effect"),
        ("a=b c:NoSchedule", 'a=b c:NoSchedule: invalid value "b c"'),
        ("a:NoSchedule,a=x:NoSchedule", 'taints must be unique by key and effect pair: "a":NoSchedule'),
    ],
)
def test_register_with_taints_refusals(text: str, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(["--register-with-taints", text])
    assert f"argument --register-with-taints: {message}" in capsys.readouterr().err


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
        (["--token", "nope"], "--token: invalid join token: must start with PK10"),
        (["--token", TOKEN, "--token-file", "/x"], "--token-file: not allowed with argument --token"),
        (["--token-file", "/nonexistent/token"], "--token-file: cannot read /nonexistent/token"),
        (["--join-server", "6444"], "--join-server: expected HOST:PORT"),
        (["--server", "m:65535"], "--join-server: cannot default to --server's port + 1"),
        (["--allowed-host-path", "data"], "argument --allowed-host-path: 'data' is not an absolute path"),
        (["--container-log-max-size", "ten"], "argument --container-log-max-size: invalid quantity 'ten'"),
        (["--container-log-max-size", "0"], "argument --container-log-max-size: must be a positive size"),
        (["--container-log-max-size=-1Mi"], "argument --container-log-max-size: must be a positive size"),
        (["--container-log-max-size", "8Ei"], "--container-log-max-size: quantity '8Ei' is too large"),
        (["--container-log-max-files", "1"],
         "argument --container-log-max-files: must be an integer of at least 2, got '1'"),
        (["--container-log-max-files", "0"], "argument --container-log-max-files: must be an integer"),
        (["--container-log-max-files", "2.5"], "argument --container-log-max-files: must be an integer"),
        (["--container-log-max-files=-3"], "argument --container-log-max-files: must be an integer"),
    ],
)
def test_flag_errors_name_the_flag(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("server", "expected"),
    [("127.0.0.1:6443", "127.0.0.1:6444"), ("master:7000", "master:7001"), ("[::1]:6443", "[::1]:6444")],
)
def test_default_join_server(server: str, expected: str) -> None:
    assert main.parse_args(["--server", server]).join_server == expected


def test_security_flags(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYKUBE_TOKEN", raising=False)
    args = main.parse_args([
        "--join-server", "10.0.0.1:9000", "--token", TOKEN, "--allow-privileged", "--allow-host-network",
        "--allowed-host-path", "/data/", "--allowed-host-path", "/srv",
    ])
    assert args.join_server == "10.0.0.1:9000"
    assert args.token == JoinToken.parse(TOKEN)
    assert (args.allow_privileged, args.allow_host_network) == (True, True)
    assert args.allowed_host_path == ["/data", "/srv"]


def test_token_sources(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = str(JoinToken.new("cd" * 32))
    token_file = tmp_path / "token"
    token_file.write_text(other + "\n")
    monkeypatch.setenv("PYKUBE_TOKEN", TOKEN)
    assert main.parse_args([]).token == JoinToken.parse(TOKEN)
    assert main.parse_args(["--token-file", str(token_file)]).token == JoinToken.parse(other)
    assert main.parse_args(["--token", other]).token == JoinToken.parse(other)
    with pytest.raises(ValueError, match="^\\$PYKUBE_TOKEN: invalid join token"):
        main.read_token(None, None, {"PYKUBE_TOKEN": "PK10bad"})


def test_token_errors_never_show_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    bad = "PK10" + "zz" * 32 + "::supersecretsupersecret"
    with pytest.raises(SystemExit):
        main.parse_args(["--token", bad])
    err = capsys.readouterr().err
    assert "--token: invalid join token" in err and "supersecret" not in err


@pytest.mark.parametrize(
    ("size", "files", "expected"),
    [
        ("500Ki", "2", (500 * 1024, 2)),
        ("1G", "10", (10**9, 10)),  # a decimal quantity stays decimal
        ("1.5Ki", "3", (1536, 3)),
        ("1", "2", (1, 2)),
    ],
)
def test_container_log_flags(size: str, files: str, expected: tuple[int, int]) -> None:
    args = main.parse_args(["--container-log-max-size", size, "--container-log-max-files", files])
    assert (args.container_log_max_size, args.container_log_max_files) == expected


def test_container_log_flags_reach_the_agent_config(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[config.AgentConfig] = []

    class RecordingAgent:
        def __init__(self, agent_config: config.AgentConfig):
            configs.append(agent_config)

        async def run(self) -> int:
            return 0

    monkeypatch.setattr("pykubelet.agent.Agent", RecordingAgent)
    # main() sets process-wide state the other tests should not inherit.
    monkeypatch.setattr(main, "configure_logging", lambda level: None)
    monkeypatch.setattr(main.prometheus_client, "disable_created_metrics", lambda: None)
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--container-log-max-size", "64Ki", "--container-log-max-files", "3"])
    assert exit_info.value.code == 0
    assert configs[0].container_logs == ContainerLogLimits(max_size=64 * 1024, max_files=3)
    defaults = config.AgentConfig(server="s", node_name="n", docker_host="d")
    assert defaults.container_logs == ContainerLogLimits()
