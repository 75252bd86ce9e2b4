"""Issue 3's "done means", end to end with real processes: who is refused and how.

- a client without a certificate, or with one from another CA, is refused in the TLS handshake;
  a certificate of the cluster CA that names no pykube role is UNAUTHENTICATED;
- an agent whose token pins another CA (or carries a wrong secret) refuses to join, says why and
  exits non-zero; a node name held by another key cannot be taken over;
- node A's certificate cannot read or update node B's node or pods (PERMISSION_DENIED);
- an agent's own API (Kubelet.ContainerLogs) accepts only the master's client certificate;
- an agent renews its certificate (lifetime 6 s on that master) and the node stays Ready, pods
  keep syncing and their logs keep flowing through the master;
- admission: privileged, host network and hostPath outside the allowed prefixes are refused with
  PERMISSION_DENIED naming the field, unless the master allows them.
"""

from __future__ import annotations

import secrets
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pymaster.api import errors, objects_pb2, pki, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import ClientConfig, save_config
from pymaster.api.manifest import load_pods
from pymaster.api.tokens import JoinToken
from pymaster.client import Client

from .harness import (
    BUSYBOX,
    Agent,
    Cluster,
    Master,
    node_ready,
    pyctl,
    remove_node_containers,
    running_cluster,
    unique,
    wait_for,
    wait_nodes_ready,
    wait_pod_gone,
)

pytestmark = pytest.mark.e2e

CALL_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("secure")) as cluster:
        yield cluster


def _issue_config(
    server: str, signer: pki.CertificateAuthority, trust_pem: bytes, cn: str, org: str
) -> ClientConfig:
    key, cert = signer.issue(cn, org, [], 3600, server=False, client=True)
    return ClientConfig(server, trust_pem, cert, key)


def _cluster_ca(master: Master) -> pki.CertificateAuthority:
    """The master's own CA, read from its data dir: what an attacker with the CA key could sign."""
    return pki.CertificateAuthority.load_or_create(master.pki_dir)


def _pod(name: str, node: str = "") -> objects_pb2.Pod:
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - name: main
              image: {BUSYBOX}
              command: ["sh", "-c", "echo up; sleep 3600"]
        """)
    pod = load_pods(manifest)[0]
    pod.spec.node_name = node
    return pod


async def _delete_and_wait_gone(client: Client, name: str) -> None:
    try:
        await client.delete_pod(name, grace_period_seconds=0, force=True)
    except errors.NotFound:
        return

    await wait_pod_gone(client, name)


# ---- transport: who can talk to the master at all ----


async def _list_nodes(channel: grpc.aio.Channel) -> objects_pb2.ObjectList:
    stub = services_pb2_grpc.ResourcesStub(channel)
    return await stub.List(services_pb2.ListRequest(resource="nodes"), timeout=CALL_TIMEOUT)


@pytest.mark.parametrize("channel_kind", ["TLS with the CA but no certificate", "plaintext"])
async def test_client_without_certificate_is_refused(secure: Cluster, channel_kind: str) -> None:
    master = secure.master
    if channel_kind == "plaintext":
        channel = grpc.aio.insecure_channel(master.address)
    else:
        ca_only = grpc.ssl_channel_credentials(master.config().ca_pem)
        channel = grpc.aio.secure_channel(master.address, ca_only)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_nodes(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()


async def test_join_port_serves_only_bootstrap(secure: Cluster) -> None:
    async with grpc.aio.insecure_channel(secure.master.join_address) as channel:
        ca = await services_pb2_grpc.BootstrapStub(channel).GetCA(services_pb2.Empty(), timeout=CALL_TIMEOUT)
        assert ca.ca_pem.strip() == secure.master.config().ca_pem.strip()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_nodes(channel)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_client_certificate_of_another_ca_is_refused(secure: Cluster, tmp_path: Path) -> None:
    master = secure.master
    other_ca = pki.CertificateAuthority.create()
    forged = _issue_config(master.address, other_ca, master.config().ca_pem, pki.ADMIN_CN, pki.MASTERS_GROUP)
    async with Client(master.address, timeout=CALL_TIMEOUT, config=forged) as client:
        with pytest.raises(errors.Unavailable):
            await client.list_nodes()
    path = tmp_path / "forged.yaml"
    save_config(path, forged)
    result = pyctl(master, "--config", str(path), "get", "nodes")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: TLS handshake with the pykube master at {master.address} failed: is --config the admin "
        "config of this master?"
    ), result.stderr
    assert result.stderr.count("\n") == 1


async def test_certificate_without_a_pykube_role_is_unauthenticated(secure: Cluster, tmp_path: Path) -> None:
    master = secure.master
    config = _issue_config(master.address, _cluster_ca(master), master.config().ca_pem, "mallory", "hackers")
    async with Client(master.address, timeout=CALL_TIMEOUT, config=config) as client:
        with pytest.raises(errors.Unauthenticated):
            await client.list_pods()
    path = tmp_path / "mallory.yaml"
    save_config(path, config)
    result = pyctl(master, "--config", str(path), "get", "pods")
    assert result.returncode == 1
    unauthorized = "error: You must be logged in to the server (Unauthorized): "
    assert result.stderr.startswith(unauthorized), result.stderr
    assert result.stderr.count("\n") == 1


def test_pyctl_with_the_admin_config_works(secure: Cluster) -> None:
    result = pyctl(secure.master, "get", "nodes", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert f"node/{secure.a.node_name}" in result.stdout.splitlines()


# ---- joining ----


async def _wait_exit(agent: Agent, timeout: float = 60) -> int:
    async def exited() -> int | None:
        code = agent.exited()
        return None if code is None else code + 1000  # truthy even for 0

    return await wait_for(exited, timeout, f"agent {agent.node_name} to exit") - 1000


async def _assert_not_registered(master: Master, name: str) -> None:
    async with master.client() as client:
        with pytest.raises(errors.NotFound):
            await client.get_node(name)


@pytest.mark.parametrize(
    ("case", "says"),
    [("token pins another CA", "does not match the token's hash"), ("wrong secret", "invalid join token")],
)
async def test_agent_with_a_wrong_token_refuses_to_join(
    secure: Cluster, tmp_path: Path, case: str, says: str
) -> None:
    real = JoinToken.parse(secure.master.token)
    if case == "wrong secret":
        bad = JoinToken(real.ca_sha256, secrets.token_hex(32))
    else:
        bad = JoinToken(pki.CertificateAuthority.create().sha256, real.secret)
    intruder = Agent(tmp_path, secure.master, unique("intruder"), token=str(bad))
    intruder.start()
    try:
        code = await _wait_exit(intruder)
    finally:
        intruder.stop()
        remove_node_containers(intruder.node_name)
    assert code != 0
    assert says in intruder.log(), intruder.log()[-3000:]
    assert not intruder.has_credentials()
    await _assert_not_registered(secure.master, intruder.node_name)


async def test_node_name_held_by_another_key_cannot_be_taken_over(secure: Cluster, tmp_path: Path) -> None:
    # Same node name as A, a new root dir: a new key.
    impostor = Agent(tmp_path, secure.master, secure.a.node_name)
    impostor.start()
    try:
        code = await _wait_exit(impostor)
    finally:
        impostor.stop()
    assert code != 0, impostor.log()[-3000:]
    assert not impostor.has_credentials()
    async with secure.master.client() as client:
        node = await client.get_node(secure.a.node_name)
        assert node_ready(node)
    # A keeps working with its own identity.
    async with Client(config=secure.a.node_config(), timeout=CALL_TIMEOUT) as as_a:
        assert (await as_a.get_node(secure.a.node_name)).metadata.name == secure.a.node_name


# ---- authorization: a node is limited to itself ----


async def test_node_certificate_cannot_touch_another_node(secure: Cluster) -> None:
    a, b = secure.a, secure.b
    name = unique("on-b")
    async with secure.master.client() as admin:
        pod = await admin.create_pod(_pod(name, node=b.node_name))
        try:
            async with Client(config=a.node_config(), timeout=CALL_TIMEOUT) as as_a:
                # Nodes are readable (pod routes need the others' pod CIDRs and addresses).
                assert (await as_a.get_node(a.node_name)).metadata.name == a.node_name
                assert (await as_a.get_node(b.node_name)).metadata.name == b.node_name
                node_b = await admin.get_node(b.node_name)
                me, b_name = f'node "{a.node_name}"', f'node "{b.node_name}"'
                on_b = f"pod default/{name} bound to {b_name}"
                refused: list[tuple[str, Callable[[], Awaitable[Any]], str]] = [
                    ("Get pod", lambda: as_a.get_pod(name), f"{me} may not read {on_b}"),
                    ("Get event", lambda: as_a.get("events", name), f"{me} may not read events"),
                    ("UpdatePodStatus", lambda: as_a.update_pod_status(
                        "default", name, pod.metadata.uid, objects_pb2.PodStatus(phase="Failed")),
                     f"{me} may not update {on_b}"),
                    ("ConfirmPodTerminated",
                     lambda: as_a.confirm_pod_terminated("default", name, pod.metadata.uid),
                     f"{me} may not delete {on_b}"),
                    ("RenewLease", lambda: as_a.renew_lease(b.node_name, 10),
                     f"{me} may not renew the lease of {b_name}"),
                    ("ReportNodeStatus",
                     lambda: as_a.report_node_status(b.node_name, objects_pb2.NodeStatus()),
                     f"{me} may not report the status of {b_name}"),
                    ("RegisterNode", lambda: as_a.register_node(node_b), f"{me} may not register {b_name}"),
                    # Admin-only calls are refused by name, whatever they would touch.
                    ("Update node", lambda: as_a.update_node(node_b), "Resources.Update"),
                    ("Delete node", lambda: as_a.delete_node(b.node_name), "Resources.Delete"),
                    ("List pods", lambda: as_a.list_pods(), f"{me} may not list pods"),
                    ("Create pod", lambda: as_a.create_pod(_pod(unique("sneaky"), node=a.node_name)),
                     "Resources.Create"),
                    ("Delete pod", lambda: as_a.delete_pod(name), "Resources.Delete"),
                    ("PodLogs", lambda: anext(as_a.pod_logs(name)), "Cluster.PodLogs"),
                ]
                for method, call, message in refused:
                    if message.startswith(("Resources.", "Cluster.")):
                        message = f"{me} may not call {message}"
                    with pytest.raises(errors.Forbidden) as caught:
                        await call()
                    assert caught.value.message == message, method
                with pytest.raises(errors.Forbidden) as caught:
                    async for _ in as_a.watch_bound_pods(b.node_name):
                        break
                assert caught.value.message == f"{me} may not watch the pods of {b_name}"
            # Nothing was written on B's behalf: B's pod and node are as B and the master made them.
            after = await admin.get_pod(name)
            assert after.status.phase != "Failed"
            assert after.metadata.deletion_timestamp.seconds == 0
            assert node_ready(await admin.get_node(b.node_name))
        finally:
            await _delete_and_wait_gone(admin, name)


# ---- the agent's own API ----


async def _container_logs_code(agent: Agent, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of Kubelet.ContainerLogs called on the agent directly with ``credentials``."""
    if credentials is None:
        channel = grpc.aio.insecure_channel(agent.address)
    else:
        # The agent serves its node certificate: its SANs carry the node name.
        options = [("grpc.ssl_target_name_override", agent.node_name)]
        channel = grpc.aio.secure_channel(agent.address, credentials, options=options)
    request = services_pb2.ContainerLogsRequest(pod_uid="no-such-pod", container="main")
    async with channel:
        stub = services_pb2_grpc.KubeletStub(channel)
        try:
            async for _ in stub.ContainerLogs(request, timeout=CALL_TIMEOUT):
                pass
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_agent_api_accepts_only_the_master(secure: Cluster) -> None:
    a, b, master = secure.a, secure.b, secure.master
    ca = master.config().ca_pem

    def creds(cert: bytes, key: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(ca, key, cert)

    admin, node_a, node_b = master.config(), a.node_config(), b.node_config()
    refused = {
        "plaintext": (None, grpc.StatusCode.UNAVAILABLE),
        "no certificate": (grpc.ssl_channel_credentials(ca), grpc.StatusCode.UNAVAILABLE),
        "admin": (creds(admin.cert_pem, admin.key_pem), grpc.StatusCode.PERMISSION_DENIED),
        "node A itself": (creds(node_a.cert_pem, node_a.key_pem), grpc.StatusCode.PERMISSION_DENIED),
        "node B": (creds(node_b.cert_pem, node_b.key_pem), grpc.StatusCode.PERMISSION_DENIED),
    }
    for who, (credentials, expected) in refused.items():
        assert await _container_logs_code(a, credentials) == expected, who
    # The master's client certificate gets through (the pod does not exist: not a refusal).
    pki_dir = master.pki_dir
    cert, key = (pki_dir / "master-client.crt").read_bytes(), (pki_dir / "master-client.key").read_bytes()
    master_creds = creds(cert, key)
    code = await _container_logs_code(a, master_creds)
    assert code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.UNAUTHENTICATED), code


# ---- admission ----

_PRIVILEGED = (
    "privileged",
    "    securityContext: {privileged: true}\n",
    "",
    "spec.containers[0].securityContext.privileged",
)
_HOST_NETWORK = ("host-network", "", "  hostNetwork: true\n", "spec.hostNetwork")
_HOST_PATH = (
    "host-path",
    "    volumeMounts: [{name: etc, mountPath: /host-etc}]\n",
    "  volumes: [{name: etc, hostPath: {path: /etc}}]\n",
    "spec.volumes[0].hostPath.path",
)


def _admission_manifest(name: str, container_extra: str, spec_extra: str) -> str:
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n"
        f"  terminationGracePeriodSeconds: 1\n{spec_extra}"
        f"  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
        f"{container_extra}"
    )


@pytest.mark.parametrize(
    ("what", "container_extra", "spec_extra", "field"), [_PRIVILEGED, _HOST_NETWORK, _HOST_PATH]
)
async def test_admission_refuses_host_access_naming_the_field(
    secure: Cluster, what: str, container_extra: str, spec_extra: str, field: str
) -> None:
    name = unique(what)
    manifest = _admission_manifest(name, container_extra, spec_extra)
    async with secure.master.client() as admin:
        with pytest.raises(errors.Forbidden) as caught:
            await admin.create_pod(load_pods(manifest)[0])
        assert field in caught.value.message
        with pytest.raises(errors.NotFound):
            await admin.get_pod(name)
    result = pyctl(secure.master, "apply", "-f", "-", stdin=manifest)
    assert result.returncode == 1
    assert result.stderr.startswith("Error from server (Forbidden): "), result.stderr
    assert field in result.stderr and result.stderr.count("\n") == 1


async def test_admission_flags_allow_host_access(tmp_path: Path) -> None:
    master = Master(tmp_path, ["--allow-privileged", "--allow-host-network", "--allowed-host-path", "/etc"])
    master.start()
    try:
        await master.wait_serving()
        async with master.client() as admin:
            for what, container_extra, spec_extra, _ in (_PRIVILEGED, _HOST_NETWORK, _HOST_PATH):
                name = unique(what)
                await admin.create_pod(load_pods(_admission_manifest(name, container_extra, spec_extra))[0])
                await admin.delete_pod(name, grace_period_seconds=0, force=True)
            # A path outside the allowed prefixes is still refused.
            outside = _admission_manifest(
                unique("var"), _HOST_PATH[1], "  volumes: [{name: etc, hostPath: {path: /var/run}}]\n"
            )
            with pytest.raises(errors.Forbidden) as caught:
                await admin.create_pod(load_pods(outside)[0])
            assert "spec.volumes[0].hostPath.path" in caught.value.message
    finally:
        master.stop()


# ---- certificate renewal ----


def _serial(agent: Agent) -> str | None:
    try:
        return pki.cert_info((agent.pki_dir / "node.crt").read_bytes()).serial
    except (OSError, ValueError):
        return None  # not written yet, or being replaced


async def _serials(agent: Agent, count: int, timeout: float) -> AsyncIterator[str]:
    """Yields the agent's certificate serial each time it changes, ``count`` times."""
    seen = _serial(agent)
    deadline = time.monotonic() + timeout
    for _ in range(count):
        async def changed(previous: str | None = seen) -> str | None:
            serial = _serial(agent)
            return serial if serial and serial != previous else None

        seen = await wait_for(changed, max(1.0, deadline - time.monotonic()), "a renewed node certificate")
        yield seen


async def test_renewed_certificate_keeps_the_node_ready(tmp_path: Path) -> None:
    master = Master(tmp_path, ["--certificate-lifetime", "6"])
    agent = Agent(tmp_path, master, unique("renew"))
    try:
        master.start()
        await master.wait_serving()
        agent.start()
        await wait_nodes_ready(master, [agent.node_name])
        async with master.client() as admin:
            first = unique("before")
            await admin.create_pod(_pod(first, node=agent.node_name))
            await wait_for(lambda: _phase_is(admin, first, "Running"), 60, f"pod {first} Running")
            serials = [_serial(agent)]
            async for serial in _serials(agent, 2, 60):
                serials.append(serial)
                node = await admin.get_node(agent.node_name)
                assert node_ready(node), node.status
            assert len(set(serials)) == 3
            renewed_at = time.time()

            # After two renewals: the lease is renewed with the new certificate, a new pod is
            # synced through the bound-pods stream, and logs flow master -> agent.
            async def heartbeat_after_renewal() -> bool:
                node = await admin.get_node(agent.node_name)
                ready = [c for c in node.status.conditions if c.type == "Ready"]
                return node_ready(node) and ready[0].last_heartbeat_time.seconds >= int(renewed_at)

            await wait_for(heartbeat_after_renewal, 30, "a heartbeat after the renewals")
            second = unique("after")
            await admin.create_pod(_pod(second, node=agent.node_name))
            await wait_for(lambda: _phase_is(admin, second, "Running"), 60, f"pod {second} Running")

            async def logged() -> bool:
                data = b"".join([chunk async for chunk in admin.pod_logs(second)])
                return b"up" in data

            await wait_for(logged, 30, "logs through the master after renewal")
            assert (await admin.get_pod(first)).status.phase == "Running"
            for name in (first, second):
                await _delete_and_wait_gone(admin, name)
        assert agent.exited() is None, agent.log()[-3000:]
    except AssertionError:
        print(f"==== pymaster ====\n{master.log()[-4000:]}\n==== pykubelet ====\n{agent.log()[-6000:]}")
        raise
    finally:
        agent.stop()
        master.stop()
        remove_node_containers(agent.node_name)


async def _phase_is(client: Client, name: str, phase: str) -> bool:
    return (await client.get_pod(name)).status.phase == phase
