"""The master in-process, secure by default: its PKI on disk, mutual TLS on the main port, joins on
the plaintext port, node identities and the role table, revocation, renewal, admission, limits
and deadlines.

Nodes join for real (token proof + CSR over the join port, master_fixtures.join) and call with
their own certificates.
"""

from __future__ import annotations

import asyncio
import base64
import stat
import time
from collections.abc import Awaitable

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from master_fixtures import (
    Node,
    Resources,
    admin_channel,
    cert_channel,
    csr_for,
    join,
    join_request,
    node_manifest,
    pod_manifest,
    rpc_error,
    start_master,
)
from prometheus_client import CollectorRegistry

from pymaster.api import objects_pb2, pki, services_pb2, services_pb2_grpc, tokens
from pymaster.api.clientconfig import load_config
from pymaster.metrics import MasterMetrics
from pymaster.server.interceptors import MasterInterceptor

# ---- helpers ----


async def next_second() -> None:
    """Waits until the wall clock enters the next whole second (certificate times have second
    resolution)."""
    start = int(time.time())
    while int(time.time()) == start:
        await asyncio.sleep(0.01)


def list_pods(channel: grpc.aio.Channel) -> Awaitable[objects_pb2.ObjectList]:
    stub = services_pb2_grpc.ResourcesStub(channel)
    return stub.List(services_pb2.ListRequest(resource="pods"), timeout=10)


# ---- the PKI on disk ----


async def test_pki_created_once_and_reused(tmp_path):
    data = tmp_path / "data"
    app = await start_master(data)
    files = [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/server.crt",
        "pki/server.key",
        "pki/master-client.crt",
        "pki/master-client.key",
        "admin.yaml",
        "token",
    ]
    try:
        first = {name: (data / name).read_bytes() for name in files}
        assert app.admin_config_path == data / "admin.yaml" and app.token_path == data / "token"
        for private in ("pki/ca.key", "pki/server.key", "pki/master-client.key", "admin.yaml", "token"):
            assert stat.S_IMODE((data / private).stat().st_mode) == 0o600, private
        server = pki.cert_info(first["pki/server.crt"])
        assert {"localhost", "127.0.0.1", "::1"} <= set(server.sans)
        client = pki.cert_info(first["pki/master-client.crt"])
        assert (client.common_name, client.organization) == ("system:pymaster", "system:masters")
        config = load_config(app.admin_config_path)
        assert config.server == app.address and config.ca_pem == first["pki/ca.crt"]
        admin = pki.cert_info(config.cert_pem)
        assert (admin.common_name, admin.organization) == ("admin", "system:masters")
    finally:
        await app.stop()

    app = await start_master(data)  # another port: only admin.yaml's server changes
    try:
        again = {name: (data / name).read_bytes() for name in files}
        assert {n: again[n] for n in files if n != "admin.yaml"} == {
            n: first[n] for n in files if n != "admin.yaml"
        }
        config = load_config(app.admin_config_path)
        assert config.server == app.address and config.cert_pem == load_config_bytes_cert(first["admin.yaml"])
    finally:
        await app.stop()

    app = await start_master(data, rotate_join_token=True, tls_sans=["api.example.com,10.1.2.3", "k8s"])
    try:
        assert (data / "token").read_bytes() != first["token"]
        assert (data / "pki/ca.crt").read_bytes() == first["pki/ca.crt"]
        assert {"api.example.com", "10.1.2.3", "k8s"} <= set(
            pki.cert_info((data / "pki/server.crt").read_bytes()).sans
        )
    finally:
        await app.stop()


def load_config_bytes_cert(text: bytes) -> bytes:
    return base64.b64decode(yaml.safe_load(text)["client-certificate-data"])


async def test_token_pins_the_ca(master):
    text = master.token_path.read_text()
    assert text.startswith("PK10") and text.endswith("\n")
    token = tokens.JoinToken.parse(text)
    assert token.ca_sha256 == pki.cert_sha256((master.data_dir / "pki/ca.crt").read_bytes())
    assert len(token.secret) == 64


async def test_old_token_stops_working_after_rotation(tmp_path):
    data = tmp_path / "data"
    app = await start_master(data)
    old_secret = tokens.JoinToken.parse(app.token_path.read_text()).secret
    await app.stop()
    app = await start_master(data, rotate_join_token=True)
    try:
        err = await rpc_error(join_request(app, "n1", secret=old_secret))
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid join token")
        await join(app, "n1")
    finally:
        await app.stop()


# ---- transport ----


async def test_client_without_certificate_cannot_connect(master):
    credentials = grpc.ssl_channel_credentials(root_certificates=master.pki.ca.cert_pem)
    async with grpc.aio.secure_channel(master.address, credentials) as ch:
        err = await rpc_error(list_pods(ch))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(master.address) as ch:
        err = await rpc_error(list_pods(ch))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_of_another_ca_cannot_connect(master):
    other = pki.CertificateAuthority.create()
    key_pem, cert_pem = other.issue("admin", "system:masters", [], 3600, server=False, client=True)
    async with cert_channel(master, key_pem, cert_pem) as ch:
        err = await rpc_error(list_pods(ch))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_unknown_subject_is_unauthenticated(master):
    key_pem, cert_pem = master.pki.ca.issue("bob", "developers", [], 3600, server=False, client=True)
    async with cert_channel(master, key_pem, cert_pem) as ch:
        err = await rpc_error(list_pods(ch))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "names no pykube identity" in err.details()
        err = await rpc_error(health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_join_port_serves_only_bootstrap_and_health(master):
    async with grpc.aio.insecure_channel(master.join_address) as ch:
        ca = await services_pb2_grpc.BootstrapStub(ch).GetCA(services_pb2.Empty())
        assert ca.ca_pem == master.pki.ca.cert_pem
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        err = await rpc_error(list_pods(ch))
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_garbage_request_is_invalid_argument(channel):
    for method in ("Resources/Get", "Resources/Create", "NodeAgent/RecordEvents"):
        call = channel.unary_unary(f"/pykube.v1.{method}")
        for garbage in (b"\xff\xff\xff", b"\x0a\x02\xff\xfe"):
            err = await rpc_error(call(garbage))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.details().startswith("the request is not a valid message")


# ---- join ----


async def test_join_signs_node_certificate(master):
    key, reply = await join_request(master, "n1", sans=("10.0.0.5", "evil.example.com", "n1"))
    assert reply.ca_pem == master.pki.ca.cert_pem
    info = pki.cert_info(reply.certificate_pem)
    assert (info.common_name, info.organization) == ("system:node:n1", "system:nodes")
    assert info.sans == ["n1"]  # the node name only, whatever the CSR asks for
    assert info.public_key_sha256 == pki.public_key_sha256(key.public_key())


async def test_join_with_wrong_proof_is_unauthenticated(master):
    err = await rpc_error(join_request(master, "n1", secret="0" * 64))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid join token")
    await join(master, "n1")  # the right token still works (after a short delay)


@pytest.mark.parametrize(
    "name, csr, field",
    [
        ("", None, "nodeName: required"),
        ("Bad_Name", None, "nodeName: invalid value"),
        ("n1", b"not a csr", "csrPem: invalid CSR"),
        ("n1", b"x" * 20000, "csrPem: at most"),
    ],
)
async def test_join_rejects_bad_requests(master, name, csr, field):
    secret = tokens.JoinToken.parse(master.token_path.read_text()).secret
    csr = csr if csr is not None else csr_for(pki.generate_key(), "n1")
    request = services_pb2.JoinRequest(
        node_name=name, csr_pem=csr, proof=tokens.join_proof(secret, name, csr)
    )
    async with grpc.aio.insecure_channel(master.join_address) as ch:
        err = await rpc_error(services_pb2_grpc.BootstrapStub(ch).Join(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(field)


async def test_held_name_cannot_be_taken_over_but_the_holder_rejoins(master):
    first = await join(master, "n1")
    err = await rpc_error(join_request(master, "n1"))  # another key
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == (
        "node name n1 is held by another identity; delete the node first (pyctl delete node n1)"
    )
    again = await join(master, "n1", first.key)
    async with again.channel:
        await again.agent.RegisterNode(node_manifest("n1"))


# ---- the role table ----


async def test_node_may_only_touch_itself_and_its_pods(master, resources):
    a, b = await join(master, "a"), await join(master, "b")
    async with a.channel, b.channel:
        await a.agent.RegisterNode(node_manifest("a"))
        await b.agent.RegisterNode(node_manifest("b"))
        pod = await resources.create(pod_manifest("web", node_name="b"))

        err = await rpc_error(a.resources.list("pods"))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            'node "a" may not list pods',
        )
        status = services_pb2.PodStatusUpdate(
            namespace="default",
            name="web",
            uid=pod.metadata.uid,
            status=objects_pb2.PodStatus(phase="Running"),
        )
        err = await rpc_error(a.agent.UpdatePodStatus(status))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.PERMISSION_DENIED,
            'node "a" may not update pod default/web bound to node "b"',
        )
        # (verb, resource) pairs: Get of its pods and what they reference, reads of nodes, services
        # and endpointslices; no other verb on anything.
        may_not = 'node "a" may not'
        assert (await a.resources.get("nodes", "b", "")).metadata.name == "b"
        denied = [
            (a.resources.get("pods", "web"), f'{may_not} read pod default/web bound to node "b"'),
            (a.resources.get("secrets", "token"), f"{may_not} read secret default/token: no pod bound to it "
                                                  "references it"),
            (a.resources.get("identities", "b", ""), f"{may_not} read identities"),
            (a.resources.get("events", "web.1"), f"{may_not} read events"),
            (a.resources.list("pods"), f"{may_not} list pods"),
            (a.resources.delete("nodes", "b", ""), f"{may_not} call Resources.Delete"),
            (a.resources.delete("pods", "web"), f"{may_not} call Resources.Delete"),
            (a.resources.create(pod_manifest("mine", node_name="a")), f"{may_not} call Resources.Create"),
            (a.resources.apply(pod_manifest("mine", node_name="a")), f"{may_not} call Resources.Apply"),
            (a.resources.update(node_manifest("a")), f"{may_not} call Resources.Update"),
            (a.agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="b")), None),
            (a.agent.ReportNodeStatus(services_pb2.NodeStatusReport(node_name="b")), None),
            (a.agent.RegisterNode(node_manifest("b")), None),
            (a.agent.ConfirmPodTerminated(
                services_pb2.PodTerminated(namespace="default", name="web", uid=pod.metadata.uid)
            ), None),
        ]
        for call, message in denied:
            err = await rpc_error(call)
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, message
            assert message is None or err.details() == message
        for stream, message in [
            (a.agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="b")), None),
            (a.resources.watch("pods"), f"{may_not} watch pods"),
        ]:
            err = await rpc_error(stream.read())
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
            assert message is None or err.details() == message

        updated = await b.agent.UpdatePodStatus(status)
        assert updated.status.phase == "Running"
        assert (await b.resources.get("pods", "web")).metadata.uid == pod.metadata.uid
        assert (await b.resources.get("nodes", "b", "")).metadata.name == "b"
        await b.agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="b"))
        snapshot = await b.agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="b")).read()
        assert [p.metadata.name for p in snapshot.pods] == ["web"]
        reply = await health_pb2_grpc.HealthStub(b.channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        # A pod that is gone is NOT_FOUND for its node too (the agent drops the status).
        gone = services_pb2.PodStatusUpdate(namespace="default", name="gone", status=objects_pb2.PodStatus())
        assert (await rpc_error(a.agent.UpdatePodStatus(gone))).code() == grpc.StatusCode.NOT_FOUND
        assert (await rpc_error(a.resources.get("pods", "gone"))).code() == grpc.StatusCode.NOT_FOUND

    def denied_count(method: str) -> float | None:
        return master.registry.get_sample_value(
            "pykube_authorization_denied_total", {"identity_kind": "node", "method": method}
        )

    assert denied_count("Resources.List") == 2
    assert denied_count("Resources.Get") == 4
    assert denied_count("NodeAgent.UpdatePodStatus") == 1


async def test_delete_node_revokes_its_certificate(master, resources):
    node = await join(master, "n1")
    async with node.channel:
        await node.agent.RegisterNode(node_manifest("n1"))
        stream = node.agent.WatchBoundPods(services_pb2.BoundPodsRequest(node_name="n1"))
        await stream.read()  # the snapshot
        await resources.delete("nodes", "n1", "")
        assert await asyncio.wait_for(stream.read(), 10) is grpc.aio.EOF  # the stream is ended
        err = await rpc_error(node.agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "certificate of node n1 is revoked or the node was deleted; join again",
        )
    assert (
        master.registry.get_sample_value(
            "pykube_authentication_failed_total", {"identity_kind": "node", "method": "NodeAgent.RenewLease"}
        )
        == 1
    )

    await next_second()
    again = await join(master, "n1", node.key)  # the token lets it back in, same key even
    async with again.channel:
        await again.agent.RegisterNode(node_manifest("n1"))
    old = Node(master, "n1", node.key, node.cert_pem)
    async with old.channel:  # but a certificate from before the deletion stays revoked
        err = await rpc_error(old.agent.RenewLease(services_pb2.RenewLeaseRequest(node_name="n1")))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_delete_node_that_only_joined_releases_the_name(master, resources):
    await join(master, "n1")
    deleted = await resources.delete("nodes", "n1", "")
    assert deleted.metadata.name == "n1"
    await join(master, "n1")  # another key may take the name now
    err = await rpc_error(resources.delete("nodes", "ghost", ""))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_renew_certificate(master, agent):
    node = await join(master, "n1")
    old = pki.cert_info(node.cert_pem)
    await next_second()
    async with node.channel:
        reply = await node.agent.RenewCertificate(
            services_pb2.CertificateSigningRequest(
                csr_pem=csr_for(node.key, "ignored", ("10.0.0.9", "x.example"))
            )
        )
        new = pki.cert_info(reply.certificate_pem)
        assert (new.common_name, new.organization) == (old.common_name, old.organization)
        assert new.not_after > old.not_after and new.serial != old.serial
        assert new.sans == ["n1"]
        assert reply.ca_pem == master.pki.ca.cert_pem

        err = await rpc_error(
            node.agent.RenewCertificate(
                services_pb2.CertificateSigningRequest(csr_pem=csr_for(pki.generate_key(), "n1"))
            )
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = await rpc_error(
            node.agent.RenewCertificate(services_pb2.CertificateSigningRequest(csr_pem=b"junk"))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    renewed = Node(master, "n1", node.key, reply.certificate_pem)
    async with renewed.channel:
        await renewed.agent.RegisterNode(node_manifest("n1"))
    err = await rpc_error(agent.RenewCertificate(services_pb2.CertificateSigningRequest(csr_pem=b"x")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


# ---- admission and limits ----


def privileged_pod() -> objects_pb2.Pod:
    pod = pod_manifest("priv")
    pod.spec.containers[0].security_context.privileged = True
    return pod


def host_network_pod() -> objects_pb2.Pod:
    pod = pod_manifest("hostnet")
    pod.spec.host_network = True
    return pod


def host_path_pod(path: str, name: str = "hostpath") -> objects_pb2.Pod:
    pod = pod_manifest(name)
    volume = pod.spec.volumes.add(name="data")
    volume.host_path.path = path
    pod.spec.containers[0].volume_mounts.add(name="data", mount_path="/data")
    return pod


async def test_admission_refuses_by_default(resources):
    cases = [
        (
            privileged_pod(),
            "spec.containers[0].securityContext.privileged: privileged containers are not "
            "allowed on this cluster (pymaster --allow-privileged)",
        ),
        (
            host_network_pod(),
            "spec.hostNetwork: host networking is not allowed on this cluster "
            "(pymaster --allow-host-network)",
        ),
        (
            host_path_pod("/var/lib"),
            "spec.volumes[0].hostPath.path: host path /var/lib is not under an "
            "allowed prefix (allowed: none; pymaster --allowed-host-path PREFIX)",
        ),
    ]
    for pod, message in cases:
        for call in (resources.create, resources.apply):
            err = await rpc_error(call(pod))
            assert (err.code(), err.details()) == (grpc.StatusCode.PERMISSION_DENIED, message)
    assert not (await resources.list("pods")).items


async def test_admission_allows_with_flags(tmp_path):
    app = await start_master(
        tmp_path / "data", allow_privileged=True, allow_host_network=True, allowed_host_paths=["/srv/data"]
    )
    try:
        async with admin_channel(app) as ch:
            resources = Resources(ch)
            await resources.create(privileged_pod())
            await resources.create(host_network_pod())
            await resources.create(host_path_pod("/srv/data/x", "inside"))
            for path in ("/srv/database", "/srv", "/"):
                err = await rpc_error(resources.create(host_path_pod(path, "outside")))
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "allowed: /srv/data;" in err.details()
    finally:
        await app.stop()


async def test_hostile_pods_are_invalid_argument(resources, cluster):
    big = pod_manifest("big")
    big.spec.containers[0].env.add(name="BLOB", value="x" * (1024 * 1024 + 1))
    err = await rpc_error(resources.create(big))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith('pod "big" is ') and "the limit is 1048576 (1 MiB)" in err.details()

    many = pod_manifest("many")
    for i in range(64):
        many.spec.containers.add(name=f"c{i}", image="busybox:1.35")
    err = await rpc_error(resources.create(many))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.containers: at most 64 containers allowed",
    )

    cases = [
        lambda: resources.get("pods", ""),
        lambda: resources.get("pods", "web", namespace="Not A Namespace"),
        lambda: resources.delete("pods", "web", grace_period_seconds=2**62),
        lambda: resources.list("pods", label_selector="a" * 5000),
        lambda: resources.watch("pods", field_selector="a" * 5000).read(),
        lambda: resources.list("events", field_selector="spec.nodeName=n1"),
        lambda: cluster.PodLogs(services_pb2.LogsRequest(name="web", tail_lines=-1)).read(),
        lambda: resources.delete("nodes", "", ""),
    ]
    for call in cases:
        assert (await rpc_error(call())).code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- deadlines ----


class SlowResources(services_pb2_grpc.ResourcesServicer):
    async def Get(self, request, context):
        await asyncio.sleep(30)
        return objects_pb2.Object()


async def test_unary_calls_have_a_deadline():
    server = grpc.aio.server(
        interceptors=[MasterInterceptor(MasterMetrics(CollectorRegistry()), unary_timeout=0.2)]
    )
    services_pb2_grpc.add_ResourcesServicer_to_server(SlowResources(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            started = time.monotonic()
            err = await rpc_error(Resources(ch).get("pods", "x"))
            assert (err.code(), err.details()) == (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the call took longer than the server's limit of 0.2s",
            )
            assert time.monotonic() - started < 10
    finally:
        await server.stop(0)
