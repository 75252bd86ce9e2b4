"""The one server interceptor of the master: turns errors into gRPC statuses and records the
go-grpc-prometheus metrics of every call.

- ``ApiError`` (NotFound, ValidationError, ...) becomes its status code with its message, so
  servicers just raise;
- an abort the handler did itself keeps its code, and so does a code it set before raising;
- any other exception is logged with its traceback and becomes INTERNAL;
- a cancelled call (client gone, server stopping) counts as CANCELLED.

Streaming calls are counted when they end. Handlers may be coroutines or async generators (the
health service writes with ``context.write``), in every cardinality.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from pymaster.api.errors import ApiError
from pymaster.metrics import MasterMetrics

log = logging.getLogger(__name__)

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


class MasterInterceptor(grpc.aio.ServerInterceptor):
    """Error mapping and metrics around every handler."""

    def __init__(self, metrics: MasterMetrics):
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        grpc_type = _GRPC_TYPES[(handler.request_streaming, handler.response_streaming)]
        factory, attribute = _HANDLER_FACTORIES[grpc_type]
        behavior = getattr(handler, attribute)
        new_call = functools.partial(_Call, self._metrics, grpc_type, service, method)
        wrapped = (
            _wrap_generator(behavior, new_call)
            if inspect.isasyncgenfunction(behavior)
            else (_wrap_coroutine(behavior, new_call))
        )
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _wrap_coroutine(behavior: Callable[..., Awaitable[Any]], new_call: Callable[[], _Call]) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = new_call()
        try:
            return await behavior(request, context)
        except BaseException as exc:
            await call.fail(exc, context)
        finally:
            call.done()

    return handle


def _wrap_generator(behavior: Callable[..., AsyncIterator[Any]], new_call: Callable[[], _Call]) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = new_call()
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            await call.fail(exc, context)
        finally:
            call.done()

    return handle
