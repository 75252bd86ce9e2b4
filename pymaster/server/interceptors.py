"""The one server interceptor of the master: authenticates and authorizes every call, bounds
unary calls in time, turns errors into gRPC statuses and records the go-grpc-prometheus metrics.

- With a store (the mutual-TLS port), the caller's certificate is mapped to an identity
  (pymaster.api.identity), checked (pymaster.server.authz.authenticate: node certificates
  against their binding) and the call against the role table (authz.authorize) before the
  handler runs; refusals are UNAUTHENTICATED / PERMISSION_DENIED and counted. The identity is
  available to handlers as ``authz.current_identity()``. Without a store (the plaintext join
  port, which serves only Bootstrap and health) nothing is checked.
- A request that does not decode as its message type is INVALID_ARGUMENT (gRPC alone would
  answer UNKNOWN), never reaching the handler; in a streamed request (exec), the message that
  does not decode ends the call with INVALID_ARGUMENT where the handler reads it.
- A unary handler gets at most ``unary_timeout`` seconds (default 30), then DEADLINE_EXCEEDED, so
  a stuck call cannot hold the master's resources; streams are long-lived by design and bounded
  in memory by their queues (store watchers, bound-pods subscriptions) instead.
- ``ApiError`` (NotFound, ValidationError, ...) becomes its status code with its message, so
  servicers just raise;
- an abort the handler did itself keeps its code, and so does a code it set before raising;
- any other exception is logged with its traceback and becomes INTERNAL;
- a cancelled call (client gone, server stopping) counts as CANCELLED;
- a node may hold at most ``MAX_NODE_STREAMS`` streaming calls at once (it needs one, its
  bound-pods stream); more is RESOURCE_EXHAUSTED, so one node cannot starve the control plane of
  stream slots. The admin and the master's own client are not capped.

Streaming calls are counted when they end. Handlers may be coroutines or async generators (the
health service writes with ``context.write``), in every cardinality.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from pymaster.api import pki
from pymaster.api.errors import ApiError, Forbidden, ResourceExhausted, Unauthenticated, ValidationError
from pymaster.api.identity import Identity, identity_from_context
from pymaster.metrics import MasterMetrics
from pymaster.server import authz

log = logging.getLogger(__name__)

DEFAULT_UNARY_TIMEOUT_SECONDS = 30.0
MAX_NODE_STREAMS = 4
_PEER_CERT = "x509_pem_cert"

_GRPC_TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}
_HANDLER_FACTORIES = {
    "unary": (grpc.unary_unary_rpc_method_handler, "unary_unary"),
    "server_stream": (grpc.unary_stream_rpc_method_handler, "unary_stream"),
    "client_stream": (grpc.stream_unary_rpc_method_handler, "stream_unary"),
    "bidi_stream": (grpc.stream_stream_rpc_method_handler, "stream_stream"),
}


class _Call:
    """The bookkeeping of one call: which status it ended with, how long it took."""

    def __init__(self, metrics: MasterMetrics, grpc_type: str, service: str, method: str):
        self._metrics = metrics
        self._labels = (grpc_type, service, method)
        self._start = time.perf_counter()
        self.code = grpc.StatusCode.OK

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Sets the status for ``exc`` and re-raises (through context.abort where needed)."""
        grpc_type, service, method = self._labels
        if isinstance(exc, grpc.aio.AbortError):
            self.code = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, ApiError):
            self.code = exc.code
            await context.abort(exc.code, exc.message)
        preset = context.code()
        if isinstance(exc, Exception) and preset not in (None, grpc.StatusCode.OK):
            # The handler chose a status before raising (the generated base's UNIMPLEMENTED).
            self.code = preset
            await context.abort(preset, context.details() or "")
        if isinstance(exc, Exception):
            self.code = grpc.StatusCode.INTERNAL
            log.error(
                "unexpected error in rpc service=%s method=%s error=%r", service, method, exc, exc_info=exc
            )
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        self.code = grpc.StatusCode.CANCELLED  # CancelledError, GeneratorExit
        raise exc

    def done(self) -> None:
        self._metrics.observe_rpc(*self._labels, self.code, time.perf_counter() - self._start)


class StreamLimits:
    """Counts the streaming calls each node identity holds."""

    def __init__(self, max_per_node: int = MAX_NODE_STREAMS):
        self.max_per_node = max_per_node
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, identity: Identity | None) -> Iterator[None]:
        """Counts one stream of ``identity`` while the block runs.

        Raises:
            ResourceExhausted: a node already holds ``max_per_node`` streams.
        """
        if identity is None or identity.kind != "node":
            yield
            return
        held = self._open.get(identity.name, 0)
        if held >= self.max_per_node:
            raise ResourceExhausted(
                f'node "{identity.name}" already holds {held} streams (at most {self.max_per_node})'
            )
        self._open[identity.name] = held + 1
        try:
            yield
        finally:
            if self._open[identity.name] <= 1:
                del self._open[identity.name]
            else:
                self._open[identity.name] -= 1


class _DeadlineExceeded(ApiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


@dataclass(frozen=True)
class _Undecodable:
    """Stands for a request that did not decode: the handler wrapper answers INVALID_ARGUMENT."""

    error: str


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as err:  # DecodeError, bad UTF-8, recursion limit: all the caller's fault
            return _Undecodable(str(err))

    return parse


@functools.lru_cache(maxsize=4096)
def _issued_at(cert_pem: bytes) -> datetime.datetime:
    """When a certificate was signed: the CA backdates notBefore by pki.CLOCK_SKEW."""
    return pki.cert_info(cert_pem).not_before + pki.CLOCK_SKEW


class _Guard:
    """Authentication and authorization of the calls of one method."""

    def __init__(self, metrics: MasterMetrics, store, method: str):
        self._metrics = metrics
        self._store = store
        self._method = method
        self._short = authz.short_method(method)

    def check(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Raises Unauthenticated/Forbidden, or sets the call's identity."""
        identity = identity_from_context(context)
        try:
            issued_at = None
            if identity.kind == "node":
                issued_at = _issued_at((context.auth_context().get(_PEER_CERT) or [b""])[0])
            authz.authenticate(identity, self._store, issued_at)
            authz.authorize(self._method, identity, request, self._store)
        except (Unauthenticated, Forbidden) as err:
            self._metrics.observe_refused(err.code, identity.kind, self._short)
            log.info(
                "call refused identity=%s method=%s code=%s reason=%r",
                identity, self._short, err.code.name, err.message,
            )
            raise
        authz.set_current_identity(identity)


class MasterInterceptor(grpc.aio.ServerInterceptor):
    """Authentication, authorization, deadlines, error mapping and metrics around every handler."""

    def __init__(
        self,
        metrics: MasterMetrics,
        store=None,
        unary_timeout: float | None = DEFAULT_UNARY_TIMEOUT_SECONDS,
    ):
        """
        Args:
            metrics: Where calls and refusals are counted.
            store: Has ``get(kind, namespace, name)``: node identity bindings and pods for the
                role table. None: no authentication or authorization (the join port).
            unary_timeout: Seconds a unary handler may run; None: no limit (handlers that never
                wait, as the lease lane's).
        """
        self._metrics = metrics
        self._store = store
        self._unary_timeout = unary_timeout
        self._streams = StreamLimits()
        # The wrapped handler of each served method, built at its first call: the server's
        # methods are fixed once it starts, and building one per call cost more than some calls.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        wrapped_handler = self._wrapped.get(handler_call_details.method)
        if wrapped_handler is not None:
            return wrapped_handler
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # not served (UNIMPLEMENTED): not remembered, whatever the name
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        grpc_type = _GRPC_TYPES[(handler.request_streaming, handler.response_streaming)]
        factory, attribute = _HANDLER_FACTORIES[grpc_type]
        behavior = getattr(handler, attribute)
        new_call = functools.partial(_Call, self._metrics, grpc_type, service, method)
        guard = None
        if self._store is not None:
            guard = _Guard(self._metrics, self._store, handler_call_details.method)
        check = _checker(guard, handler.request_streaming)
        if inspect.isasyncgenfunction(behavior):
            wrapped = _wrap_generator(behavior, new_call, check, self._streams)
        else:
            timeout = self._unary_timeout if grpc_type == "unary" else None
            wrapped = _wrap_coroutine(behavior, new_call, check, timeout)
        deserializer = handler.request_deserializer
        if deserializer is not None:
            deserializer = _lenient(deserializer)
        wrapped_handler = factory(
            wrapped, request_deserializer=deserializer, response_serializer=handler.response_serializer
        )
        self._wrapped[handler_call_details.method] = wrapped_handler
        return wrapped_handler


_Check = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
# How long a refused streamed call waits for the caller's first message before its answer.
REFUSAL_READ_SECONDS = 1.0


def _checker(guard: _Guard | None, request_streaming: bool) -> _Check:
    """What runs before the handler: the request must have decoded, and the guard must pass (a
    streamed request is checked by identity only). Returns the request the handler gets: a
    streamed one checks each message as the handler reads it."""

    async def check(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            raise _undecodable(request)
        if guard is not None:
            try:
                guard.check(None if request_streaming else request, context)
            except (Unauthenticated, Forbidden):
                if request_streaming:
                    await _read_first(request)
                raise
        return _decoded(request) if request_streaming else request

    return check


async def _read_first(requests: AsyncIterator[Any]) -> None:
    """Reads the first message of a refused streamed call before the refusal goes out: a
    grpc.aio client writes it as the call starts, and when the answer arrives before its write
    completes it reports the failed write (INTERNAL "Internal error from Core") instead of the
    refusal (grpc issue 36066; seen with pyctl exec under a node's certificate)."""
    with contextlib.suppress(grpc.RpcError, StopAsyncIteration, TimeoutError):
        await asyncio.wait_for(anext(aiter(requests)), REFUSAL_READ_SECONDS)


def _undecodable(request: _Undecodable) -> ValidationError:
    return ValidationError("", f"the request is not a valid message: {request.error}")


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A streamed request whose messages that did not decode raise INVALID_ARGUMENT."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise _undecodable(request)
        yield request


def _wrap_coroutine(
    behavior: Callable[..., Awaitable[Any]],
    new_call: Callable[[], _Call],
    check: _Check,
    timeout: float | None,
) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = new_call()
        deadline = asyncio.timeout(timeout) if timeout is not None else None
        try:
            request = await check(request, context)
            if deadline is None:
                return await behavior(request, context)
            async with deadline:
                return await behavior(request, context)
        except BaseException as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                exc = _DeadlineExceeded(f"the call took longer than the server's limit of {timeout:g}s")
            await call.fail(exc, context)
        finally:
            call.done()

    return handle


def _wrap_generator(
    behavior: Callable[..., AsyncIterator[Any]],
    new_call: Callable[[], _Call],
    check: _Check,
    streams: StreamLimits,
) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = new_call()
        try:
            request = await check(request, context)
            with streams.hold(authz.current_identity()):
                async for response in behavior(request, context):
                    yield response
        except BaseException as exc:
            await call.fail(exc, context)
        finally:
            call.done()

    return handle
