"""From a container's probe to one attempt of it: which handler, which host and port (a port may be
named after one of the container's ports), and what an attempt that ran out of time says.

``run_probe`` is the default ``Runner`` of the probe workers; unit tests give workers a fake one.
The host of a network probe is its own ``host`` field, else the pod's IP (the infra container's,
or the node's address under hostNetwork); a pod without an IP yet cannot be probed over the
network, and such an attempt is thrown away (unknown) rather than counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pykubelet.prober import exec_probe, grpc_probe, http_probe, tcp_probe
from pykubelet.prober.results import Outcome, ProbeType, Result
from pykubelet.runtime.base import Runtime
from pymaster.api import objects_pb2


@dataclass(frozen=True)
class ProbeTarget:
    """One probe of one running container, as a worker runs it.

    Attributes:
        probe_type: liveness, readiness or startup.
        probe: the probe's spec.
        container: the container's spec (for named ports).
        container_id: the running container (exec runs in it).
        pod_ip: the pod's address ("" while it has none).
    """

    probe_type: ProbeType
    probe: objects_pb2.Probe
    container: objects_pb2.Container
    container_id: str
    pod_ip: str


# How a worker runs one attempt: (target, timeout seconds) -> outcome.
Runner = Callable[[ProbeTarget, float], Awaitable[Outcome]]


class PortError(ValueError):
    """A probe's port names no port of the container, or is out of range."""


def resolve_port(port: objects_pb2.IntOrString, container: objects_pb2.Container) -> int:
    """The port number of a probe's ``port``: a number, or the name of one of the container's
    ports (a string of digits is taken as a number, as the kubelet does when no port has that name).

    Raises:
        PortError: unknown name, no port at all, or a number outside 1..65535.
    """
    kind = port.WhichOneof("value")
    if kind == "int_value":
        number = port.int_value
    elif kind == "str_value":
        name = port.str_value
        found = next((p.container_port for p in container.ports if p.name == name), None)
        if found is None and name.isdigit():
            found = int(name)
        if found is None:
            raise PortError(f"port {name!r} not found in the ports of container {container.name}")
        number = found
    else:
        raise PortError("probe has no port")
    if not 0 < number < 65536:
        raise PortError(f"invalid port number: {number}")
    return number


def _host(target: ProbeTarget, host: str) -> str:
    return host or target.pod_ip


async def run_probe(runtime: Runtime, target: ProbeTarget, timeout: float) -> Outcome:
    """Runs one attempt of ``target``'s probe with the handler its spec names.

    Returns:
        The outcome; a bad port is a failure, a missing pod IP or handler an unknown outcome.
    """
    probe = target.probe
    try:
        if probe.HasField("exec"):
            return await exec_probe.probe(runtime, target.container_id, list(probe.exec.command), timeout)
        if probe.HasField("http_get"):
            action = probe.http_get
            port = resolve_port(action.port, target.container)
            host = _host(target, action.host)
            if not host:
                return Outcome(Result.UNKNOWN, "the pod has no IP yet")
            headers = [(h.name, h.value) for h in action.http_headers]
            path, scheme = action.path or "/", action.scheme or "HTTP"
            return await http_probe.probe(host, port, path, scheme, headers, timeout)
        if probe.HasField("tcp_socket"):
            port = resolve_port(probe.tcp_socket.port, target.container)
            host = _host(target, probe.tcp_socket.host)
            if not host:
                return Outcome(Result.UNKNOWN, "the pod has no IP yet")
            return await tcp_probe.probe(host, port, timeout)
        if probe.HasField("grpc"):
            port = resolve_port(objects_pb2.IntOrString(int_value=probe.grpc.port), target.container)
            if not target.pod_ip:
                return Outcome(Result.UNKNOWN, "the pod has no IP yet")
            return await grpc_probe.probe(target.pod_ip, port, probe.grpc.service, timeout)
    except PortError as err:
        return Outcome(Result.FAILURE, str(err))
    return Outcome(Result.UNKNOWN, "probe has no handler (exec, httpGet, tcpSocket or grpc)")


def timeout_message(target: ProbeTarget, timeout: float) -> str:
    """What an attempt of ``target`` that did not end within ``timeout`` seconds says: the words
    its handler uses for its own timeout, so a hung attempt reads like a slow one."""
    probe = target.probe
    try:
        if probe.HasField("exec"):
            return exec_probe.timeout_message(list(probe.exec.command))
        if probe.HasField("http_get"):
            action = probe.http_get
            port = resolve_port(action.port, target.container)
            return http_probe.timeout_message(
                action.scheme or "HTTP", _host(target, action.host), port, action.path or "/"
            )
        if probe.HasField("tcp_socket"):
            port = resolve_port(probe.tcp_socket.port, target.container)
            return tcp_probe.timeout_message(_host(target, probe.tcp_socket.host), port)
        if probe.HasField("grpc"):
            return grpc_probe.timeout_message(target.pod_ip, probe.grpc.port, timeout)
    except PortError as err:
        return str(err)
    return f"probe timed out after {timeout:g}s"
