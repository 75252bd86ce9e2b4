"""``pyctl get`` columns and ``describe`` of Services and EndpointSlices, as kubectl 1.32 prints
them (its printService, printEndpointSlice and the service describer): pure functions of the
objects and the current time.

- services: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE (``-o wide``: SELECTOR); PORT(S) as
  "80/TCP" or "80:30080/TCP" for a node port; EXTERNAL-IP "<none>" (pykube has no load balancers);
- endpointslices: NAME ADDRESSTYPE PORTS ENDPOINTS AGE; PORTS "<unset>" for a slice with none,
  ENDPOINTS the first three addresses and " + N more...".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymaster.api import objects_pb2
from pymaster.cli import printers as p
from pymaster.cli.describe import events_lines
from pymaster.cli.timefmt import age

MAX_SHOWN = 3  # kubectl shows the first three endpoints, then "+ N more..."
UNSET = "<unset>"


def _age(obj: Any, now: float) -> str:
    return age(obj.metadata.creation_timestamp, now, present=obj.metadata.HasField("creation_timestamp"))


def service_ports(service: objects_pb2.Service) -> str:
    """kubectl's PORT(S): "80/TCP,443:30443/TCP", "<none>" without ports."""
    parts = [
        f"{port.port}:{port.node_port}/{port.protocol or 'TCP'}" if port.node_port
        else f"{port.port}/{port.protocol or 'TCP'}"
        for port in service.spec.ports
    ]
    return ",".join(parts) or p.NONE


def selector_text(selector) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or p.NONE


def service_header(*, wide: bool = False) -> list[str]:
    return ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", *(["SELECTOR"] if wide else [])]


def service_row(service: objects_pb2.Service, now: float, *, wide: bool = False) -> list[str]:
    spec = service.spec
    row = [service.metadata.name, spec.type or "ClusterIP", spec.cluster_ip or p.NONE, p.NONE,
           service_ports(service), _age(service, now)]
    return row + ([selector_text(spec.selector)] if wide else [])


def _addresses(endpoints: Sequence[objects_pb2.Endpoint]) -> str:
    addresses = [a for e in endpoints for a in e.addresses]
    if not addresses:
        return p.NONE
    shown = ",".join(addresses[:MAX_SHOWN])
    more = len(addresses) - MAX_SHOWN
    return f"{shown} + {more} more..." if more > 0 else shown


def endpoint_slice_header(*, wide: bool = False) -> list[str]:
    return ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]


def endpoint_slice_row(
    endpoint_slice: objects_pb2.EndpointSlice, now: float, *, wide: bool = False
) -> list[str]:
    ports = ",".join(str(port.port) if port.HasField("port") else UNSET for port in endpoint_slice.ports)
    return [endpoint_slice.metadata.name, endpoint_slice.address_type, ports or UNSET,
            _addresses(endpoint_slice.endpoints), _age(endpoint_slice, now)]


def _target(port: objects_pb2.ServicePort) -> str:
    value = port.target_port
    number = value.str_value if value.WhichOneof("value") == "str_value" else str(value.int_value)
    return f"{number}/{port.protocol or 'TCP'}"


def _port_endpoints(port: objects_pb2.ServicePort, slices: Sequence[objects_pb2.EndpointSlice]) -> str:
    """The ready "ip:port" of a Service port, kubectl's Endpoints line (first three, then more)."""
    found = [
        f"{address}:{slice_port.port}"
        for endpoint_slice in slices
        for slice_port in endpoint_slice.ports
        if (slice_port.name if slice_port.HasField("name") else "") == port.name
        for endpoint in endpoint_slice.endpoints
        if not endpoint.conditions.HasField("ready") or endpoint.conditions.ready
        for address in endpoint.addresses
    ]
    if not found:
        return ""
    more = len(found) - MAX_SHOWN
    return ",".join(found[:MAX_SHOWN]) + (f" + {more} more..." if more > 0 else "")


def describe_service(
    service: objects_pb2.Service,
    slices: Sequence[objects_pb2.EndpointSlice],
    now: float,
    events: Sequence[objects_pb2.Event] | None = (),
) -> str:
    """kubectl describe service: the header, the spec, per port its TargetPort, NodePort and
    ready Endpoints, then the events (None: the section is left out)."""
    meta, spec = service.metadata, service.spec
    lines = [f"Name:\t{meta.name}", f"Namespace:\t{meta.namespace}"]
    for title, values in (("Labels", meta.labels), ("Annotations", meta.annotations)):
        pairs = [f"{k}={v}" for k, v in sorted(values.items())] or [p.NONE]
        lines.append(f"{title}:\t{pairs[0]}")
        lines.extend(f"\t{pair}" for pair in pairs[1:])
    lines += [
        f"Selector:\t{selector_text(spec.selector)}",
        f"Type:\t{spec.type}",
        f"IP Family Policy:\t{spec.ip_family_policy}",
        f"IP Families:\t{','.join(spec.ip_families) or p.NONE}",
        f"IP:\t{spec.cluster_ip or p.NONE}",
        f"IPs:\t{','.join(spec.cluster_ips) or p.NONE}",
    ]
    for port in spec.ports:
        name = port.name or UNSET
        protocol = port.protocol or "TCP"
        lines += [f"Port:\t{name}\t{port.port}/{protocol}", f"TargetPort:\t{_target(port)}"]
        if port.node_port:
            lines.append(f"NodePort:\t{name}\t{port.node_port}/{protocol}")
        lines.append(f"Endpoints:\t{_port_endpoints(port, slices)}")
    lines.append(f"Session Affinity:\t{spec.session_affinity or 'None'}")
    if spec.external_traffic_policy:
        lines.append(f"External Traffic Policy:\t{spec.external_traffic_policy}")
    lines.append(f"Internal Traffic Policy:\t{spec.internal_traffic_policy or 'Cluster'}")
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)
