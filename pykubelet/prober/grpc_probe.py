"""The grpc probe (kubelet's ``pkg/probe/grpc``): the standard gRPC health checking protocol,
``grpc.health.v1.Health/Check`` with the probe's service ("" asks about the server as a whole),
over plaintext to the pod IP; ``SERVING`` is a success. Like the kubelet, a new connection per
attempt (no proxy) and the kubelet's messages: ``timeout: failed to connect service
"10.0.0.5:50051" within 1s: context deadline exceeded``, ``service unhealthy (responded with
"NOT_SERVING")``, ``error: health rpc probe failed: rpc error: code = NotFound desc = unknown
service``, ``error: this server does not implement the grpc health protocol ...``.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pykubelet.prober.http_probe import USER_AGENT
from pykubelet.prober.netutil import hostport
from pykubelet.prober.results import Outcome, Result

_OPTIONS = (("grpc.enable_http_proxy", 0), ("grpc.primary_user_agent", USER_AGENT))


def _duration(seconds: float) -> str:
    """Go's rendering of a duration of whole or fractional seconds ("1s", "1.5s")."""
    return f"{seconds:g}s"


def _code_name(code: grpc.StatusCode) -> str:
    """Go's name of a status code ("NotFound" for NOT_FOUND)."""
    return "".join(part.capitalize() for part in code.name.split("_"))


def timeout_message(host: str, port: int, timeout: float) -> str:
    """What a probe whose server did not answer in time says."""
    return f"timeout: failed to connect service {json.dumps(hostport(host, port))} within " \
           f"{_duration(timeout)}: context deadline exceeded"


async def probe(host: str, port: int, service: str, timeout: float) -> Outcome:
    """Asks the health service at ``host:port`` about ``service`` within ``timeout`` seconds.

    Returns:
        Success when the answer is SERVING, else a failure saying why; never raises.
    """
    deadline = time.monotonic() + timeout
    channel = grpc.aio.insecure_channel(hostport(host, port), options=_OPTIONS)
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except TimeoutError:
            return Outcome(Result.FAILURE, timeout_message(host, port, timeout))
        stub = health_pb2_grpc.HealthStub(channel)
        remaining = max(0.001, deadline - time.monotonic())
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=remaining)
        except grpc.aio.AioRpcError as err:
            return Outcome(Result.FAILURE, _rpc_error(err, timeout))
    finally:
        await channel.close()
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return Outcome(Result.FAILURE, f"service unhealthy (responded with {json.dumps(name)})")
    return Outcome(Result.SUCCESS, "service healthy")


def _rpc_error(err: grpc.aio.AioRpcError, timeout: float) -> str:
    code = err.code()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                f"{err.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timeout: health rpc did not complete within {_duration(timeout)}"
    return f"error: health rpc probe failed: rpc error: code = {_code_name(code)} desc = {err.details()}"
