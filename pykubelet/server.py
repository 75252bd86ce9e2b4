"""The agent's own gRPC API (the kubelet's port 10250): ``Kubelet.ContainerLogs`` and
``Kubelet.Exec``, which the master calls to proxy ``pyctl logs`` and ``pyctl exec``, and the
standard gRPC health service.

Exec is one bidirectional stream: the first message (``start``: pod uid, container, command,
stdin, tty, terminal size) starts the command through the runtime, the following ones are its
stdin, terminal resizes and end of input (the end of the caller's stream counts as end of input
too); the replies are its stdout and stderr (one stream with a TTY) as they come, then its exit
code, last. A caller that goes away, or a server that stops, closes the exec's stream (the
runtime's threads end; the command itself may keep running, see the runtime's ``exec_stream``).

The node's InternalIP and the port this server actually bound are reported in node status
(``daemonEndpoints.kubeletEndpoint.port``), which is how the master finds it.

Only the master may call it, unlike the kubelet's port, which is anonymous by default: the server
speaks mutual TLS with the node certificate, requires a client certificate issued by the cluster
CA (no certificate: the handshake fails), and an interceptor refuses every method, health
included, to any identity but the master's (``CN=system:pymaster, O=system:masters``) with
PERMISSION_DENIED. The certificate is swapped while serving when the node's is renewed
(``grpc.dynamic_ssl_server_credentials``: the next handshake uses the new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pykubelet.runtime.base import (
    INFRA_CONTAINER_NAME,
    STDOUT,
    ContainerInfo,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerRuntimeError,
    ExecSession,
    PodRuntime,
    Runtime,
    TerminalSize,
)
from pymaster.api import services_pb2, services_pb2_grpc
from pymaster.api.identity import Identity, identity_from_context

log = logging.getLogger(__name__)

MASTER_ONLY = "only the master may call the agent API"


class ContainerLookupError(Exception):
    """The requested container cannot be served; ``code`` and the message go to the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def pick_container(pod: PodRuntime | None, pod_uid: str, name: str, node_name: str) -> ContainerInfo:
    """The newest container named ``name`` of the pod; with an empty name, the pod's only app
    container.

    Raises:
        ContainerLookupError: NOT_FOUND when the pod or container has no container on this node,
            INVALID_ARGUMENT when the name is empty and the pod has several containers.
    """
    if pod is None or not pod.containers:
        raise ContainerLookupError(
            grpc.StatusCode.NOT_FOUND, f"pod uid {pod_uid} has no containers on node {node_name}"
        )
    names = sorted({c.name for c in pod.containers if c.name != INFRA_CONTAINER_NAME})
    if not name:
        if len(names) != 1:
            raise ContainerLookupError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"container: a container name must be given for pod {pod.namespace}/{pod.name}, "
                f"choose one of: {', '.join(names)}",
            )
        name = names[0]
    container = pod.latest(name) if name != INFRA_CONTAINER_NAME else None
    if container is None:
        raise ContainerLookupError(
            grpc.StatusCode.NOT_FOUND,
            f"container {name} not found in pod {pod.namespace}/{pod.name} on node {node_name}"
            + (f"; it has: {', '.join(names)}" if names else ""),
        )
    return container


class BadExecInput(Exception):
    """An exec stream message out of place (a second start, stdin the exec was not started
    with); the exec ends with INVALID_ARGUMENT and this message."""


def terminal_size(start: services_pb2.ExecStart) -> TerminalSize | None:
    """The initial terminal size of an exec's start; None without a TTY or a size."""
    size = start.size
    if not start.tty or not start.HasField("size") or not (size.width and size.height):
        return None
    return TerminalSize(size.width, size.height)


class ExecInputRelay:
    """Feeds the messages after an exec's start into its session until the caller's stream
    ends, which is the end of input too. A message out of place (``BadExecInput``) is kept in
    ``error`` and closes the session, so its output ends and the call can say why.
    """

    def __init__(
        self,
        requests: AsyncIterator[services_pb2.ExecInput],
        session: ExecSession,
        start: services_pb2.ExecStart,
    ):
        self.error: BadExecInput | None = None
        self._requests = requests
        self._session = session
        self._start = start

    async def run(self) -> None:
        try:
            await self._relay()
        except BadExecInput as err:
            self.error = err  # before the close: the output's end must find it
            await self._session.close()

    async def _relay(self) -> None:
        session, start = self._session, self._start
        stdin_closed = False
        async for message in self._requests:
            kind = message.WhichOneof("input")
            if kind == "stdin":
                if not start.stdin:
                    raise BadExecInput("stdin: the exec was started without stdin")
                await session.write_stdin(message.stdin)
            elif kind == "resize":
                if message.resize.width and message.resize.height:  # a TTY-less exec ignores it
                    await session.resize(TerminalSize(message.resize.width, message.resize.height))
            elif kind == "close_stdin":
                if not stdin_closed:
                    stdin_closed = True
                    await session.close_stdin()
            elif kind == "start":
                raise BadExecInput("start: only the first message of an exec may start it")
        if start.stdin and not stdin_closed:
            await session.close_stdin()


def exec_output(stream: int, data: bytes) -> services_pb2.ExecOutput:
    return services_pb2.ExecOutput(stdout=data) if stream == STDOUT else services_pb2.ExecOutput(stderr=data)


class KubeletService(services_pb2_grpc.KubeletServicer):
    """Serves container logs and exec from the runtime.

    Args:
        runtime: the container runtime.
        node_name: this node; only its containers are served.
    """

    def __init__(self, runtime: Runtime, node_name: str):
        self._runtime = runtime
        self._node_name = node_name

    async def ContainerLogs(  # noqa: N802 (generated servicer's naming)
        self, request: services_pb2.ContainerLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.LogChunk]:
        try:
            pod = await self._runtime.get_pod(self._node_name, request.pod_uid)
            container = pick_container(pod, request.pod_uid, request.container, self._node_name)
        except ContainerLookupError as err:
            await context.abort(err.code, err.message)
        except ContainerRuntimeError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")
        tail = request.tail_lines if request.HasField("tail_lines") else None
        log.debug("serving logs uid=%s container=%s id=%s follow=%s", request.pod_uid, container.name,
                  container.id, request.follow)
        try:
            # aclosing: a caller that goes away closes the engine's stream at once, not at GC.
            async with contextlib.aclosing(
                self._runtime.logs(container.id, request.follow, tail, request.timestamps)
            ) as chunks:
                async for data in chunks:
                    yield services_pb2.LogChunk(data=data)
        except ContainerNotFound:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"container {container.name} of pod {container.pod_namespace}/{container.pod_name} "
                f"is gone from node {self._node_name}",
            )
        except ContainerRuntimeError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")

    async def Exec(  # noqa: N802 (generated servicer's naming)
        self, request_iterator: AsyncIterator[services_pb2.ExecInput], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[services_pb2.ExecOutput]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("input") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start: an exec must begin with its start")
        start = first.start
        if not start.command:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "command: required")
        session = await self._start_exec(start, context)
        code: int | None = None
        async with session:
            relay = ExecInputRelay(requests, session, start)
            relaying = asyncio.create_task(relay.run())
            try:
                async with contextlib.aclosing(session.output()) as output:
                    async for stream, data in output:
                        yield exec_output(stream, data)
                if relay.error is not None:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(relay.error))
                code = await session.exit_code()
            except ContainerRuntimeError as err:  # the engine failed mid-stream
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")
            finally:
                relaying.cancel()
                await asyncio.gather(relaying, return_exceptions=True)
        log.info("exec ended uid=%s container=%s exit_code=%s", start.pod_uid, start.container, code)
        yield services_pb2.ExecOutput(exit_code=code)

    async def _start_exec(
        self, start: services_pb2.ExecStart, context: grpc.aio.ServicerContext
    ) -> ExecSession:
        """The started exec of ``start`` in the container it names (chosen like logs').

        Aborts the call: NOT_FOUND (no such pod or container here), INVALID_ARGUMENT (no name and
        several containers), FAILED_PRECONDITION (the container is not running), UNAVAILABLE (the
        runtime failed).
        """
        container: ContainerInfo | None = None
        try:
            pod = await self._runtime.get_pod(self._node_name, start.pod_uid)
            container = pick_container(pod, start.pod_uid, start.container, self._node_name)
            if container.state != "running":
                raise ContainerNotRunning(container.state)
            session = await self._runtime.exec_stream(
                container.id, list(start.command), stdin=start.stdin, tty=start.tty, size=terminal_size(start)
            )
        except ContainerLookupError as err:
            await context.abort(err.code, err.message)
        except ContainerRuntimeError as err:
            if container is None or not isinstance(err, ContainerNotFound | ContainerNotRunning):
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{err.reason}: {err.message}")
            where = f"container {container.name} of pod {container.pod_namespace}/{container.pod_name}"
            if isinstance(err, ContainerNotFound):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"{where} is gone from node {self._node_name}")
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{where} is not running")
        # The program only: an exec's arguments may carry secrets (a password on a command
        # line) and the log is not the API's audit trail.
        log.info("exec started uid=%s container=%s id=%s program=%r args=%d stdin=%s tty=%s", start.pod_uid,
                 container.name, container.id[:12], start.command[0] if start.command else "",
                 max(len(start.command) - 1, 0), start.stdin, start.tty)
        return session


def master_only(identity: Identity) -> bool:
    """The agent API's authorization rule: the master's client certificate, nobody else."""
    return identity.kind == "master"


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """Runs ``allowed(identity)`` before every method of the server; a caller it refuses gets
    PERMISSION_DENIED before the method runs.

    grpc.aio interceptors do not see the caller, so the check wraps each method's handler,
    whatever its kind (unary or streaming, coroutine or async generator): a method added later
    (exec) is covered without anyone remembering to check.

    Args:
        allowed: whether an identity may call.
        denied_message: the error message of a refused call.
    """

    def __init__(self, allowed: Callable[[Identity], bool], denied_message: str = MASTER_ONLY):
        self._allowed = allowed
        self._denied_message = denied_message

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: UNIMPLEMENTED
        method = handler_call_details.method
        for kind, factory in _HANDLER_FACTORIES.items():
            behavior = getattr(handler, kind)
            if behavior is not None:
                return factory(
                    self._guard(behavior, method),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    async def _authorize(self, context: grpc.aio.ServicerContext, method: str) -> None:
        identity = identity_from_context(context)
        if not self._allowed(identity):
            log.warning("agent API call refused method=%s identity=%s peer=%s", method, identity,
                        context.peer())
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, self._denied_message)

    def _guard(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        authorize = self._authorize
        # grpc.aio tells async generators (streamed by yield) from coroutines (context.write or a
        # single reply) by inspection, so the wrapper must be of the same kind.
        if inspect.isasyncgenfunction(behavior):
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await authorize(context, method)
                async for item in behavior(request, context):
                    yield item

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await authorize(context, method)
            return await behavior(request, context)

        return call


_HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class ServerTLS:
    """The agent API's TLS material (node key and certificate, the CA that client certificates
    must chain to), replaceable while the server runs.

    gRPC asks ``_fetch`` for a new configuration at every handshake (from its own threads): it
    returns the pending one once, then None ("unchanged").
    """

    def __init__(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes):
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(key_pem, cert_pem, ca_pem), self._fetch, require_client_authentication=True
        )

    @staticmethod
    def _configuration(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)

    def update(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        """Serves ``cert_pem`` from the next TLS handshake on; open connections keep theirs."""
        configuration = self._configuration(key_pem, cert_pem, ca_pem)
        with self._lock:
            self._pending = configuration

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            configuration, self._pending = self._pending, None
        return configuration


class AgentServer:
    """The grpc.aio server of the agent API.

    Args:
        address: "HOST:PORT" to listen on; port 0 picks a free one.
        runtime: the container runtime.
        node_name: this node.
        tls: the node's TLS material (mutual TLS, client certificate required).
        allowed: who may call (the master only).
    """

    def __init__(
        self,
        address: str,
        runtime: Runtime,
        node_name: str,
        tls: ServerTLS,
        allowed: Callable[[Identity], bool] = master_only,
    ):
        self.address = address
        self._tls = tls
        self._server = grpc.aio.server(interceptors=[AuthorizationInterceptor(allowed)])
        services_pb2_grpc.add_KubeletServicer_to_server(KubeletService(runtime, node_name), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = 0

    async def start(self) -> int:
        """Binds and starts serving; returns the bound port.

        Raises:
            RuntimeError: the address could not be bound.
        """
        self.port = self._server.add_secure_port(self.address, self._tls.credentials)
        if not self.port:
            raise RuntimeError(f"cannot listen on {self.address}")
        await self._server.start()
        await self._health.set("pykube.v1.Kubelet", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """Stops serving; streams still open (followed logs) are cancelled after ``grace``."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
