"""The Python client for pykube: typed async methods for every RPC of the master's Resources
(the object verbs of every kind), Cluster (logs, exec) and NodeAgent services, over one mutual-TLS
grpc.aio channel, and ``BootstrapClient`` for the master's plaintext join port (a node that has
no certificate yet).

Every other part uses it: pyctl for Resources and Cluster, the agent for the NodeAgent service and
to join (``BootstrapClient``) and renew its certificate (``Client.renew_certificate``).
gRPC errors come back as the typed exceptions of ``pymaster.api.errors`` (``NotFound``,
``ValidationError``, ``Forbidden`` ...), so callers never inspect status codes themselves.

The client always speaks TLS with a client certificate, from a client config file (kubeconfig-like,
see ``pymaster.api.clientconfig``): ``config_path``, else $PYKUBE_CONFIG, else ~/.pykube/config.
``make up`` installs the master's ``<data-dir>/admin.yaml`` there; an agent passes its own config.

Several masters (``--server a,b,c``, or ``servers:`` in the config): the client talks to one at a
time; when a call fails with UNAVAILABLE it moves to the next. A call that changes nothing when
repeated (every call but Create and RecordEvents) is then retried there, once per server; Create
and RecordEvents only when gRPC reports that the connection could not be made at all (so the call
never reached a master): otherwise a create that the dead master may have written would be
written twice (``generateName``) or fail with AlreadyExists. A stream that fails before its first
message is reopened on the next server; one that fails later (or that the client's own
``reconnect`` closed) raises ``Unavailable`` and its caller reopens it (it resumes from what it
saw: a watch from its last resourceVersion, an agent's bound-pods stream from the snapshot it is
sent first), on the next server.

Node lease renewals (``renew_lease``) move to the master's lease lane (its own port, named in the
API port's reply) and back to the API port when the lane cannot be reached
(``pymaster.client_lease``).

Example::

    async with Client() as client:  # ~/.pykube/config
        pod = await client.get_pod("web", namespace="default")
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message

from pymaster.api import errors, objects_pb2, services_pb2, services_pb2_grpc
from pymaster.api.clientconfig import (
    ClientConfig,
    channel_credentials,
    channel_options,
    default_config_path,
    load_config,
    split_servers,
)
from pymaster.api.kinds import kind_of, unwrap, wrap
from pymaster.client_exec import ExecSession, exec_start
from pymaster.client_lease import LANE_DOWN, LeaseLaneRoute

DEFAULT_SERVER = "127.0.0.1:6443"
# Calls not retried on another master after an UNAVAILABLE that may have reached the first one.
NOT_IDEMPOTENT = frozenset({"Create", "RecordEvents"})
# gRPC's wording when no connection could be made (the request was never sent).
_NOT_CONNECTED = ("failed to connect", "connection refused", "connections to all backends failing")
# Lists of thousands of pods are larger than gRPC's 4 MiB default; a request stays far smaller
# (the master refuses big ones itself), so sending is capped lower.
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_SEND_MESSAGE_BYTES = 16 * 1024 * 1024
# Seconds calls still in flight on the old channel get after reconnect() before it is closed.
RECONNECT_GRACE_SECONDS = 2.0

# Which exception each status code becomes; anything else is a plain ApiError with that code.
_ERRORS_BY_CODE: dict[grpc.StatusCode, type[errors.ApiError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.OUT_OF_RANGE: errors.TooOld,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: errors.Forbidden,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: errors.MethodNotAllowed,
}


class ObjectEvent(NamedTuple):
    """One change a watch reports: ``type`` is services_pb2.ADDED/MODIFIED/DELETED, ``object``
    the object (a Pod, a Node ...) after it."""

    type: int
    object: Message


class MissingConfigError(FileNotFoundError):
    """No client config file where the client looked; the message says how to get one."""

    def __init__(self, path: Path):
        super().__init__(
            f"no client config at {path}; run `make up` (it writes ~/.pykube/config) "
            "or pass --config <master data dir>/admin.yaml"
        )
        self.path = path


class InvalidConfigError(ValueError):
    """A client config file that cannot be used (missing key, bad PEM); the message names it."""


def api_error(err: grpc.aio.AioRpcError) -> errors.ApiError:
    """Turns a gRPC error into the matching ``pymaster.api.errors`` exception."""
    code, message = err.code(), err.details() or err.code().name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, sep, detail = message.partition(": ")
        return errors.ValidationError(field, detail) if sep else errors.ValidationError("", message)
    cls = _ERRORS_BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    exc = errors.ApiError(message)
    exc.code = code
    return exc


def load_client_config(path: str | Path | None = None) -> ClientConfig:
    """Reads a client config: ``path``, else $PYKUBE_CONFIG, else ~/.pykube/config.

    Raises:
        MissingConfigError: no file there.
        InvalidConfigError: the file exists but is not a usable config.
    """
    config_path = Path(path).expanduser() if path else default_config_path()
    if not config_path.is_file():
        raise MissingConfigError(config_path)
    try:
        return load_config(config_path)
    except FileNotFoundError:
        raise MissingConfigError(config_path) from None
    except (OSError, ValueError) as exc:
        raise InvalidConfigError(str(exc)) from None


class Client:
    """An async client of the pykube master, over mutual TLS.

    Args:
        server: "HOST:PORT" of the master, or several as "a:6443,b:6443"; defaults to
            $PYKUBE_SERVER, else the config's ``servers`` (or ``server``).
        timeout: deadline in seconds for every unary call (streams have none).
        config: the client config (CA, client certificate and key); loaded from ``config_path``
            when None.
        config_path: the config file when ``config`` is None; defaults to $PYKUBE_CONFIG, else
            ~/.pykube/config.

    Raises:
        MissingConfigError: no config given and no file where it was looked for.
        InvalidConfigError: the config file is not usable.
    """

    def __init__(
        self,
        server: str | None = None,
        timeout: float = 10.0,
        config: ClientConfig | None = None,
        config_path: str | Path | None = None,
    ):
        self.config = config if config is not None else load_client_config(config_path)
        named = server or os.environ.get("PYKUBE_SERVER")
        self.servers = split_servers(named) if named else list(self.config.servers) or [DEFAULT_SERVER]
        self.server = self.servers[0]
        self.timeout = timeout
        self._closing: set[asyncio.Task[None]] = set()
        self._lease_lane = LeaseLaneRoute()
        self._stubs(self._open(self.config))

    def _stubs(self, channel: grpc.aio.Channel) -> None:
        """Makes ``channel`` the one every later call uses."""
        self._channel = channel
        self._resources = services_pb2_grpc.ResourcesStub(channel)
        self._cluster = services_pb2_grpc.ClusterStub(channel)
        self._agent = services_pb2_grpc.NodeAgentStub(channel)

    def _open(self, config: ClientConfig, address: str | None = None) -> grpc.aio.Channel:
        options = [
            *channel_options(config),
            ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
        ]
        return grpc.aio.secure_channel(address or self.server, channel_credentials(config), options=options)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._close_lease_lane()
        await self._channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def reconnect(self, config: ClientConfig, grace: float = RECONNECT_GRACE_SECONDS) -> None:
        """Switches to a new config (a renewed certificate) for every later call.

        Calls in flight on the old channel get ``grace`` seconds to finish, then are cancelled
        (a stream ends with CANCELLED: its caller re-opens it on the new channel).
        """
        old = self._channel
        self._stubs(self._open(config))
        self.config = config
        self._close_lease_lane()
        self._close_later(old, grace)

    def _failover(self, failed: grpc.aio.Channel) -> bool:
        """Moves to the next server after ``failed`` (the channel a call failed on) was
        UNAVAILABLE; False when there is no other server. Calls that failed together move once."""
        if len(self.servers) < 2:
            return False
        if self._channel is failed:
            self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
            self._stubs(self._open(self.config))
            self._close_later(failed, RECONNECT_GRACE_SECONDS)
        return True

    async def _unary(self, stub: str, name: str, request: Any, timeout: float | None = None) -> Any:
        """Calls ``stub``'s ``name`` (e.g. "_resources", "Get"), failing over as the module says."""
        for attempt in range(len(self.servers)):
            channel = self._channel
            try:
                return await getattr(getattr(self, stub), name)(request, timeout=timeout or self.timeout)
            except grpc.aio.AioRpcError as err:
                moved = err.code() == grpc.StatusCode.UNAVAILABLE and self._failover(channel)
                if not moved or attempt == len(self.servers) - 1:
                    raise api_error(err) from None
                if name in NOT_IDEMPOTENT and not _never_sent(err):
                    raise api_error(err) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _stream(self, stub: str, name: str, request: Any) -> AsyncIterator[Any]:
        """Streams ``stub``'s ``name``; reopened on the next server when it fails before its first
        message, else the error is raised (and later calls go to the next server). A stream whose
        channel this client closed (``reconnect``, a failover) raises Unavailable."""
        for attempt in range(len(self.servers)):
            channel = self._channel
            call = getattr(getattr(self, stub), name)(request)
            received = False
            try:
                async for item in call:
                    received = True
                    yield item
                return
            except grpc.aio.AioRpcError as err:
                moved = err.code() == grpc.StatusCode.UNAVAILABLE and self._failover(channel)
                if not moved or received or attempt == len(self.servers) - 1:
                    raise api_error(err) from None
            except asyncio.CancelledError:
                # grpc.aio ends the streams of a closed channel with CancelledError, though the
                # caller's task was not cancelled: to the caller that is the connection gone.
                task = asyncio.current_task()
                if channel is self._channel or task is None or task.cancelling():
                    raise
                raise errors.Unavailable(f"{name} stream closed by a reconnect; open it again") from None
            finally:
                call.cancel()

    # ---- objects of every kind (Resources service) ----

    async def create(self, obj: Message) -> Message:
        """Creates an object of any served kind; returns it as stored."""
        return unwrap(await self._unary("_resources", "Create", wrap(obj)))[1]

    async def apply(self, obj: Message) -> tuple[Message, str]:
        """Creates the object or updates what may change; returns it and kubectl's action word
        ("created", "configured" or "unchanged")."""
        reply = await self._unary("_resources", "Apply", wrap(obj))
        return unwrap(reply.object)[1], reply.action

    async def update(self, obj: Message) -> Message:
        """Updates what a user may change; metadata.resourceVersion, when set, must be current."""
        return unwrap(await self._unary("_resources", "Update", wrap(obj)))[1]

    async def get(self, resource: str, name: str, namespace: str = "default") -> Message:
        """One object ("pods", "nodes", "events" ...; the namespace is ignored for nodes)."""
        request = services_pb2.GetRequest(resource=resource, namespace=namespace, name=name)
        return unwrap(await self._unary("_resources", "Get", request))[1]

    async def list(
        self, resource: str, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> Message:
        """The objects of a kind (an empty namespace: all), as the kind's list message
        (``PodList``, ``NodeList`` ...) with the resourceVersion to watch from."""
        request = services_pb2.ListRequest(
            resource=resource, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector,
        )
        reply = await self._unary("_resources", "List", request)
        list_message = kind_of(resource).list_message
        assert list_message is not None  # every served kind has one
        items = [unwrap(o)[1] for o in reply.items]
        return list_message(items=items, resource_version=reply.resource_version)

    async def delete(
        self,
        resource: str,
        name: str,
        namespace: str = "default",
        grace_period_seconds: int | None = None,
        force: bool = False,
        propagation_policy: str = "",
    ) -> Message:
        """Deletes an object; pods gracefully (returned as marked, or as removed when removed at
        once); ``propagation_policy`` Background (""), Foreground or Orphan for the owners of
        dependents (workloads; returned as marked when the owner waits)."""
        request = services_pb2.DeleteRequest(
            resource=resource, namespace=namespace, name=name, force=force,
            propagation_policy=propagation_policy,
        )
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        return unwrap(await self._unary("_resources", "Delete", request))[1]

    async def watch(
        self,
        resource: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[ObjectEvent]:
        """Streams changes of a kind; without resource_version, ADDED for the current objects first."""
        request = services_pb2.WatchRequest(
            resource=resource,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
        )
        received = False
        try:
            async for batch in self._stream("_resources", "WatchBatched", request):
                received = True
                for event in batch.events:
                    yield ObjectEvent(event.type, unwrap(event.object)[1])
        except errors.MethodNotAllowed:  # UNIMPLEMENTED
            if received:
                raise
            # A master from before WatchBatched (during an upgrade): one event per message.
            async for event in self._stream("_resources", "Watch", request):
                yield ObjectEvent(event.type, unwrap(event.object)[1])

    async def scale(
        self, resource: str, name: str, namespace: str = "default", replicas: int | None = None,
        resource_version: str = "",
    ) -> objects_pb2.Scale:
        """Reads (``replicas`` None) or sets the replicas of a Deployment or ReplicaSet."""
        request = services_pb2.ScaleRequest(
            resource=resource, namespace=namespace, name=name, resource_version=resource_version
        )
        if replicas is not None:
            request.replicas = replicas
        return await self._unary("_resources", "Scale", request)

    # ---- pods and nodes by name (shorthands of the above) ----

    async def create_pod(self, pod: objects_pb2.Pod) -> objects_pb2.Pod:
        return await self.create(pod)

    async def get_pod(self, name: str, namespace: str = "default") -> objects_pb2.Pod:
        return await self.get("pods", name, namespace)

    async def list_pods(
        self, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> objects_pb2.PodList:
        """Lists pods; an empty namespace means all namespaces."""
        return await self.list("pods", namespace, label_selector, field_selector)

    async def delete_pod(
        self,
        name: str,
        namespace: str = "default",
        grace_period_seconds: int | None = None,
        force: bool = False,
    ) -> objects_pb2.Pod:
        """Deletes gracefully; returns the pod as marked (or as removed, when removed at once)."""
        return await self.delete("pods", name, namespace, grace_period_seconds, force)

    def watch_pods(
        self,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[ObjectEvent]:
        """Streams pod events; without resource_version, ADDED for the current pods first."""
        return self.watch("pods", namespace, label_selector, field_selector, resource_version)

    async def get_node(self, name: str) -> objects_pb2.Node:
        return await self.get("nodes", name, "")

    async def list_nodes(self, label_selector: str = "", field_selector: str = "") -> objects_pb2.NodeList:
        return await self.list("nodes", "", label_selector, field_selector)

    async def update_node(self, node: objects_pb2.Node) -> objects_pb2.Node:
        return await self.update(node)

    async def delete_node(self, name: str) -> objects_pb2.Node:
        return await self.delete("nodes", name, "")

    def watch_nodes(
        self, label_selector: str = "", field_selector: str = "", resource_version: str = ""
    ) -> AsyncIterator[ObjectEvent]:
        return self.watch("nodes", "", label_selector, field_selector, resource_version)

    # ---- what is not an object (Cluster service) ----

    def pod_logs(
        self,
        name: str,
        namespace: str = "default",
        container: str = "",
        follow: bool = False,
        tail_lines: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """Streams a container's log bytes, proxied by the master from the pod's agent."""
        request = services_pb2.LogsRequest(
            namespace=namespace, name=name, container=container, follow=follow, timestamps=timestamps
        )
        if tail_lines is not None:
            request.tail_lines = tail_lines
        return self._log_bytes(request)

    async def _log_bytes(self, request: services_pb2.LogsRequest) -> AsyncIterator[bytes]:
        async for chunk in self._stream("_cluster", "PodLogs", request):
            yield chunk.data

    def exec(
        self,
        namespace: str,
        name: str,
        command: list[str],
        container: str = "",
        stdin: AsyncIterable[bytes] | bool | None = None,
        tty: bool = False,
        size: tuple[int, int] | None = None,
        resizes: AsyncIterable[tuple[int, int]] | None = None,
    ) -> ExecSession:
        """Runs ``command`` in a container of a pod (``pyctl exec``), proxied by the master to the
        pod's agent; admin only. See ``pymaster.client_exec`` for the session and an example.

        Args:
            container: the container; may be empty when the pod has one.
            stdin: the command's standard input: bytes to send, then end of input; True to send
                them with ``ExecSession.send_stdin``; None or False for none.
            tty: a terminal for the command (stdout and stderr are then one stream).
            size: the terminal's initial (width, height).
            resizes: (width, height) terminal sizes, sent as they come.

        Returns:
            The session: iterate it for ``ExecChunk(stream, data)``, then read ``exit_code``.
        """
        start = exec_start(namespace, name, list(command), container, bool(stdin), tty, size)
        source = None if isinstance(stdin, bool) else stdin
        return ExecSession(self._cluster.Exec, start, api_error, source, resizes)

    # ---- the agent's calls (NodeAgent service) ----

    async def register_node(self, node: objects_pb2.Node) -> services_pb2.RegisterNodeResponse:
        return await self._unary("_agent", "RegisterNode", node)

    async def renew_lease(self, node_name: str, requested_seconds: float) -> services_pb2.RenewLeaseResponse:
        """Renews the node's lease; raises NotFound when the master does not know the node.

        On the master's lease lane once a renewal on the API port has named it (``lease_port``);
        back on the API port when the lane cannot be reached (``pymaster.client_lease``).
        """
        request = services_pb2.RenewLeaseRequest(node_name=node_name, requested_seconds=requested_seconds)
        lane = self._lease_lane.stub(self.server)
        if lane is not None:
            try:
                return await lane.RenewLease(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() not in LANE_DOWN:
                    raise api_error(err) from None
                self._lease_lane.failed(self.server)
        self._close_lease_lane()
        reply = await self._unary("_agent", "RenewLease", request)
        self._lease_lane.named(self.server, reply.lease_port, lambda at: self._open(self.config, at))
        return reply

    def _close_lease_lane(self) -> None:
        channel = self._lease_lane.close()
        if channel is not None:
            self._close_later(channel, RECONNECT_GRACE_SECONDS)

    def _close_later(self, channel: grpc.aio.Channel, grace: float) -> None:
        """Closes a channel no longer used, giving its calls in flight ``grace`` seconds
        (``close`` waits for it)."""
        task = asyncio.create_task(channel.close(grace))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def report_node_status(self, node_name: str, status: objects_pb2.NodeStatus) -> objects_pb2.Node:
        request = services_pb2.NodeStatusReport(node_name=node_name, status=status)
        return await self._unary("_agent", "ReportNodeStatus", request)

    def watch_bound_pods(self, node_name: str) -> AsyncIterator[services_pb2.BoundPodsEvent]:
        """Streams the pods bound to the node: a SNAPSHOT first, then UPSERT/REMOVED."""
        return self._stream("_agent", "WatchBoundPods", services_pb2.BoundPodsRequest(node_name=node_name))

    async def update_pod_status(
        self, namespace: str, name: str, uid: str, status: objects_pb2.PodStatus
    ) -> objects_pb2.Pod:
        request = services_pb2.PodStatusUpdate(namespace=namespace, name=name, uid=uid, status=status)
        return await self._unary("_agent", "UpdatePodStatus", request)

    async def confirm_pod_terminated(self, namespace: str, name: str, uid: str) -> None:
        """Tells the master every container of a pod marked for deletion is gone."""
        request = services_pb2.PodTerminated(namespace=namespace, name=name, uid=uid)
        await self._unary("_agent", "ConfirmPodTerminated", request)

    async def record_events(self, events: list[objects_pb2.Event]) -> int:
        """Reports events about this node and its pods; returns how many the master took (the
        rest were over the node's rate limit)."""
        reply = await self._unary("_agent", "RecordEvents", services_pb2.RecordEventsRequest(events=events))
        return reply.accepted

    async def renew_certificate(self, csr_pem: bytes) -> services_pb2.CertificateResponse:
        """Asks the master to sign a new certificate for this node (the CSR's key is kept, the
        subject is the caller's identity); call ``reconnect`` with it afterwards."""
        request = services_pb2.CertificateSigningRequest(csr_pem=csr_pem)
        return await self._unary("_agent", "RenewCertificate", request)


def _never_sent(err: grpc.aio.AioRpcError) -> bool:
    """Whether an UNAVAILABLE error says no connection was made (so the call reached nobody)."""
    details = (err.details() or "").lower()
    return any(words in details for words in _NOT_CONNECTED)


class BootstrapClient:
    """A client of the master's plaintext join port (the Bootstrap service), for a node that has no
    certificate yet. Nothing it receives is trusted by itself: the caller pins the CA by the join
    token's hash before using it.

    Args:
        server: "HOST:PORT" of the master's join port (its --join-listen), or several as
            "a:6444,b:6444": a call that fails with UNAVAILABLE is retried on the next (both calls
            may be repeated).
        timeout: Deadline in seconds of each call.
    """

    def __init__(self, server: str, timeout: float = 10.0):
        self.servers = split_servers(server) or [server]
        self.server = self.servers[0]
        self.timeout = timeout
        self._connect()

    def _connect(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.server)
        self._stub = services_pb2_grpc.BootstrapStub(self._channel)

    async def __aenter__(self) -> BootstrapClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, name: str, request: Any) -> Any:
        for attempt in range(len(self.servers)):
            try:
                return await getattr(self._stub, name)(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt == len(self.servers) - 1:
                    raise api_error(err) from None
                await self._channel.close()
                self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
                self._connect()
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def get_ca(self) -> bytes:
        """The CA certificate the join port serves (unverified: check it against the token)."""
        reply = await self._call("GetCA", services_pb2.Empty())
        return reply.ca_pem

    async def join(self, node_name: str, csr_pem: bytes, proof: bytes) -> services_pb2.CertificateResponse:
        """Asks for a node certificate: the CSR and an HMAC proof of the token's secret
        (``pymaster.api.tokens.join_proof``)."""
        request = services_pb2.JoinRequest(node_name=node_name, csr_pem=csr_pem, proof=proof)
        return await self._call("Join", request)
