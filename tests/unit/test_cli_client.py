"""The Python client and pyctl against a small in-process mutual-TLS gRPC server: config lookup,
which certificate is presented, status codes as typed errors, reconnect with a renewed
certificate, and pyctl's one-line messages for TLS, authentication and authorization failures.

The server is a stand-in for the master (a few RPCs of the Resources and NodeAgent services,
answers chosen by the request), so these tests need neither a master nor Docker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from pymaster.api import clientconfig, errors, objects_pb2, pki, services_pb2, services_pb2_grpc
from pymaster.api.kinds import wrap
from pymaster.cli.main import main
from pymaster.client import Client, InvalidConfigError, MissingConfigError, api_error

LIFETIME = 3600


@dataclass
class Pki:
    ca: pki.CertificateAuthority
    other_ca: pki.CertificateAuthority

    def config(self, server: str, cn: str = pki.ADMIN_CN, ca: pki.CertificateAuthority | None = None,
               trust: pki.CertificateAuthority | None = None) -> clientconfig.ClientConfig:
        """A client config for ``server``: a certificate for ``cn`` signed by ``ca``, trusting ``trust``."""
        signer = ca or self.ca
        key, cert = signer.issue(cn, pki.MASTERS_GROUP, [], LIFETIME, server=False, client=True)
        return clientconfig.ClientConfig(server, (trust or self.ca).cert_pem, cert, key)


class _Resources(services_pb2_grpc.ResourcesServicer):
    """Get answers by name: "forbidden", "unauthenticated", "invalid"; else the pod, with the
    caller's certificate CN in an annotation. List of nodes: one node named after the caller."""

    def Get(self, request: services_pb2.GetRequest, context: grpc.ServicerContext) -> objects_pb2.Object:
        if request.name == "forbidden":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, 'node "a" cannot get pods bound to node "b"')
        if request.name == "unauthenticated":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
        if request.name == "invalid":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec.containers[0].securityContext.privileged: "
                          "privileged containers are not allowed")
        pod = objects_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = request.name, request.namespace
        pod.metadata.annotations["caller"] = _caller(context)
        return wrap(pod)

    def Watch(self, request: services_pb2.WatchRequest, context: grpc.ServicerContext
              ) -> Iterator[services_pb2.WatchEvent]:
        """One ADDED pod, then open until the caller goes. (No WatchBatched: the client falls
        back to Watch, as with a master from before it.)"""
        pod = objects_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = "web", "default"
        yield services_pb2.WatchEvent(type=services_pb2.ADDED, object=wrap(pod))
        gone = threading.Event()
        if context.add_callback(gone.set):  # False: the call has ended already
            gone.wait()

    def List(
        self, request: services_pb2.ListRequest, context: grpc.ServicerContext
    ) -> objects_pb2.ObjectList:
        node = objects_pb2.Node()
        node.metadata.name = _caller(context)
        return objects_pb2.ObjectList(items=[wrap(node)])


class _NodeAgent(services_pb2_grpc.NodeAgentServicer):
    def __init__(self, ca: pki.CertificateAuthority):
        self.ca = ca

    def RenewCertificate(
        self, request: services_pb2.CertificateSigningRequest, context: grpc.ServicerContext
    ) -> services_pb2.CertificateResponse:
        cert = self.ca.sign_csr(request.csr_pem, common_name=_caller(context) + "-renewed",
                                organization=pki.MASTERS_GROUP, sans=[], lifetime_seconds=LIFETIME)
        return services_pb2.CertificateResponse(certificate_pem=cert, ca_pem=self.ca.cert_pem)


def _caller(context: grpc.ServicerContext) -> str:
    pem = context.auth_context()["x509_pem_cert"][0]
    return pki.cert_info(pem).common_name


@pytest.fixture(scope="module")
def keys() -> Pki:
    return Pki(pki.CertificateAuthority.create(), pki.CertificateAuthority.create())


@pytest.fixture(scope="module")
def server(keys: Pki) -> Iterator[str]:
    """The stand-in master on a free port, requiring a client certificate of ``keys.ca``."""
    key, cert = keys.ca.issue("pymaster", "", ["pymaster"], LIFETIME, server=True, client=False)
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=keys.ca.cert_pem,
                                        require_client_auth=True)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    services_pb2_grpc.add_ResourcesServicer_to_server(_Resources(), grpc_server)
    services_pb2_grpc.add_NodeAgentServicer_to_server(_NodeAgent(keys.ca), grpc_server)
    port = grpc_server.add_secure_port("127.0.0.1:0", creds)
    grpc_server.start()
    yield f"127.0.0.1:{port}"
    grpc_server.stop(None)


@pytest.fixture(autouse=True)
def _hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKUBE_CONFIG", str(tmp_path / "absent-config"))
    monkeypatch.delenv("PYKUBE_SERVER", raising=False)


# ---- the client ----


async def test_presents_the_config_certificate(keys: Pki, server: str) -> None:
    async with Client(config=keys.config(server, cn="alice")) as client:
        assert client.server == server
        assert (await client.get_pod("web")).metadata.annotations["caller"] == "alice"


async def test_reads_the_config_file_from_argument_then_environment(
    keys: Pki, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clientconfig.save_config(tmp_path / "a.yaml", keys.config(server, cn="from-path"))
    clientconfig.save_config(tmp_path / "b.yaml", keys.config(server, cn="from-env"))
    monkeypatch.setenv("PYKUBE_CONFIG", str(tmp_path / "b.yaml"))
    async with Client(config_path=tmp_path / "a.yaml") as client:
        assert (await client.list_nodes()).items[0].metadata.name == "from-path"
    async with Client() as client:
        assert (await client.list_nodes()).items[0].metadata.name == "from-env"


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [(None, None, "cfg:1"), (None, "env:2", "env:2"), ("arg:3", "env:2", "arg:3")],
)
async def test_server_is_argument_then_environment_then_config(
    keys: Pki, monkeypatch: pytest.MonkeyPatch, argument: str | None, env: str | None, expected: str
) -> None:
    if env:
        monkeypatch.setenv("PYKUBE_SERVER", env)
    async with Client(argument, config=keys.config("cfg:1")) as client:
        assert client.server == expected


def test_missing_config_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(MissingConfigError) as caught:
        Client(config_path=tmp_path / "none.yaml")
    assert isinstance(caught.value, FileNotFoundError)
    assert str(caught.value) == (
        f"no client config at {tmp_path / 'none.yaml'}; run `make up` (it writes ~/.pykube/config) "
        "or pass --config <master data dir>/admin.yaml"
    )


def test_unusable_config_names_file_and_key(keys: Pki, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    clientconfig.save_config(path, keys.config("h:1"))
    path.write_text(path.read_text().replace("client-key-data", "client-kee-data"))
    with pytest.raises(InvalidConfigError, match=f"{path}: missing client-key-data"):
        Client(config_path=path)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("forbidden", errors.Forbidden, 'node "a" cannot get pods bound to node "b"'),
        ("unauthenticated", errors.Unauthenticated, "certificate revoked"),
        ("invalid", errors.ValidationError, "spec.containers[0].securityContext.privileged: "
                                            "privileged containers are not allowed"),
    ],
)
async def test_status_codes_become_typed_errors(
    keys: Pki, server: str, name: str, error: type[errors.ApiError], message: str
) -> None:
    async with Client(config=keys.config(server)) as client:
        with pytest.raises(error) as caught:
            await client.get_pod(name)
    assert caught.value.message == message


def test_api_error_keeps_unmapped_codes() -> None:
    class Err(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(grpc.StatusCode.DATA_LOSS, None, None, "too big")

    exc = api_error(Err())
    assert type(exc) is errors.ApiError and exc.code == grpc.StatusCode.DATA_LOSS


@pytest.mark.parametrize("case", ["client cert of another CA", "server cert of another CA"])
async def test_handshake_failures_are_unavailable(keys: Pki, server: str, case: str) -> None:
    if case == "client cert of another CA":
        config = keys.config(server, ca=keys.other_ca)
    else:
        config = keys.config(server, trust=keys.other_ca)
    async with Client(config=config, timeout=5) as client:
        with pytest.raises(errors.Unavailable):
            await client.list_nodes()


async def test_renew_then_reconnect_switches_certificate(keys: Pki, server: str) -> None:
    config = keys.config(server, cn="node-x")
    async with Client(config=config) as client:
        key = pki.generate_key()
        response = await client.renew_certificate(pki.make_csr(key, "ignored", ""))
        assert response.ca_pem == keys.ca.cert_pem
        renewed = clientconfig.ClientConfig(
            server, response.ca_pem, response.certificate_pem, pki.key_to_pem(key)
        )
        await client.reconnect(renewed)
        assert client.config is renewed
        assert (await client.get_pod("web")).metadata.annotations["caller"] == "node-x-renewed"


async def test_a_stream_the_reconnect_closes_ends_unavailable(keys: Pki, server: str) -> None:
    config = keys.config(server)
    async with Client(config=config) as client:
        events = aiter(client.watch("pods"))
        assert (await anext(events)).object.metadata.name == "web"
        await client.reconnect(config, grace=0)
        with pytest.raises(errors.Unavailable, match="Watch stream closed by a reconnect"):
            await anext(events)
        await events.aclose()


# ---- pyctl's lines ----


def _pyctl(config: clientconfig.ClientConfig, tmp_path: Path, *argv: str) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    clientconfig.save_config(path, config)
    return main(["--config", str(path), "--request-timeout", "5", *argv]), str(path)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("forbidden", 'Error from server (Forbidden): node "a" cannot get pods bound to node "b"\n'),
        ("unauthenticated",
         "error: You must be logged in to the server (Unauthorized): certificate revoked\n"),
    ],
)
def test_pyctl_prints_authorization_errors_on_one_line(
    keys: Pki, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, line: str
) -> None:
    code, _ = _pyctl(keys.config(server), tmp_path, "get", "pod", name)
    assert code == 1
    assert capsys.readouterr().err == line


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("client cert of another CA",
         "the master closed the connection: it did not accept the client certificate"),
        ("server cert of another CA", "the master's certificate did not verify: "),
    ],
)
def test_pyctl_names_a_failed_handshake(
    keys: Pki, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, reason: str
) -> None:
    if case == "client cert of another CA":
        config = keys.config(server, ca=keys.other_ca)
    else:
        config = keys.config(server, trust=keys.other_ca)
    code, _ = _pyctl(config, tmp_path, "get", "nodes")
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: TLS handshake with the pykube master at {server} failed: is --config the admin config "
        f"of this master? ({reason}"
    ), err
    assert err.count("\n") == 1


def test_pyctl_uses_the_config_server_and_certificate(
    keys: Pki, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _pyctl(keys.config(server, cn="pyctl-user"), tmp_path, "get", "pod", "web", "-o", "name")
    assert code == 0
    assert capsys.readouterr().out == "pod/web\n"
    code, _ = _pyctl(keys.config(server, cn="pyctl-user"), tmp_path, "get", "nodes", "-o", "name")
    assert code == 0
    assert capsys.readouterr().out == "node/pyctl-user\n"

