"""Container lifecycle hooks (the kubelet's lifecycle handler runner): ``postStart`` right after a
container starts, ``preStop`` before it is stopped, each an exec (in the container), an httpGet
or tcpSocket (to the pod's address; tcpSocket is deprecated in Kubernetes but accepted, as there)
or a sleep. The network handlers are the probes' own (``pykubelet.prober``).

A hook has at most ``timeout`` seconds (the caller passes what is left of the grace period); an
exec hook that outlives it is left running in the container, which is being stopped anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pykubelet.prober import exec_probe, http_probe, tcp_probe
from pykubelet.prober.targets import PortError, resolve_port
from pykubelet.runtime.base import Runtime
from pymaster.api import objects_pb2


@dataclass(frozen=True)
class HookResult:
    """Whether a hook succeeded, and what it said (for the FailedPostStartHook event)."""

    ok: bool
    message: str = ""


async def run_hook(
    runtime: Runtime,
    handler: objects_pb2.LifecycleHandler,
    container: objects_pb2.Container,
    container_id: str,
    pod_ip: str,
    timeout: float,
) -> HookResult:
    """Runs one lifecycle handler for a running container.

    Args:
        runtime: the container runtime (exec).
        handler: the hook.
        container: the container's spec (named ports).
        container_id: the running container.
        pod_ip: the pod's address (network hooks without a host of their own).
        timeout: seconds the hook may take.
    """
    try:
        if handler.HasField("exec"):
            outcome = await exec_probe.probe(runtime, container_id, list(handler.exec.command), timeout)
        elif handler.HasField("http_get"):
            action = handler.http_get
            port = resolve_port(action.port, container)
            headers = [(h.name, h.value) for h in action.http_headers]
            outcome = await http_probe.probe(
                action.host or pod_ip, port, action.path or "/", action.scheme or "HTTP", headers, timeout
            )
        elif handler.HasField("tcp_socket"):
            port = resolve_port(handler.tcp_socket.port, container)
            outcome = await tcp_probe.probe(handler.tcp_socket.host or pod_ip, port, timeout)
        elif handler.HasField("sleep"):
            await asyncio.sleep(min(float(handler.sleep.seconds), timeout))
            return HookResult(True)
        else:
            return HookResult(False, "the hook has no handler (exec, httpGet, tcpSocket or sleep)")
    except PortError as err:
        return HookResult(False, str(err))
    return HookResult(outcome.result.ok, outcome.message)
