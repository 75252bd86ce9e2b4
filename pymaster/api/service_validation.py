"""Defaults and validation of Services (v1) and EndpointSlices (discovery.k8s.io/v1), with
Kubernetes' rules (``pkg/apis/core/validation`` ValidateService, ``pkg/apis/discovery/validation``)
and messages, for what pykube implements; the rest is refused with its field path:

- ``spec.type`` ClusterIP or NodePort (LoadBalancer and ExternalName are refused: no cloud
  provider, no DNS CNAMEs); ``clusterIP: None`` makes a headless ClusterIP service;
- ports: required unless headless; a name (DNS label) on each when there are several, unique;
  port 1-65535; protocol TCP or UDP (SCTP refused); targetPort a number 1-65535 or an IANA
  service name (a container port's name, resolved per pod); nodePort only for NodePort services,
  inside ``--service-node-port-range``;
- ``clusterIP``/``clusterIPs``: "None" or an IPv4 address inside ``--service-cluster-ip-range``;
  one family only (IPv4, SingleStack or PreferDualStack, which gets one family on this
  single-stack cluster as in Kubernetes); RequireDualStack and IPv6 are refused;
- sessionAffinity None or ClientIP (timeoutSeconds 1-86400), external (NodePort only) and
  internal traffic policies Cluster or Local.

The address and port allocations themselves (free or taken) are the registry's
(``pymaster.registry.services``): validation judges the shape of a request, not the cluster.
"""

from __future__ import annotations

import ipaddress
import re

from pymaster.api import objects_pb2
from pymaster.api.checks import check_labels, check_metadata, check_qualified_name, quote
from pymaster.api.errors import ValidationError
from pymaster.api.network import NetworkConfig

CLUSTER_IP, NODE_PORT = "ClusterIP", "NodePort"
SERVICE_TYPES = (CLUSTER_IP, NODE_PORT)
_REFUSED_TYPES = {
    "LoadBalancer": "pykube has no cloud load balancers; use NodePort",
    "ExternalName": "pykube's DNS serves no CNAME records; use a Service without a selector",
}
NONE = "None"  # clusterIP of a headless service
PROTOCOLS = ("TCP", "UDP")
AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
DEFAULT_AFFINITY_TIMEOUT = 10800
MAX_AFFINITY_TIMEOUT = 86400
ADDRESS_TYPES = ("IPv4",)
MAX_ENDPOINTS = 100  # per EndpointSlice (Kubernetes' maxEndpoints)
MAX_SLICE_PORTS = 20000
MAX_ADDRESSES = 100  # per endpoint
_IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def unsupported(path: str, value: str, supported: tuple[str, ...], why: str = "") -> ValidationError:
    """Kubernetes' ``Unsupported value: "x": supported values: "a", "b"`` on ``path``."""
    message = f"Unsupported value: {quote(value)}: supported values: {', '.join(quote(v) for v in supported)}"
    return ValidationError(path, f"{message} ({why})" if why else message)


def invalid(path: str, value: str | int, why: str) -> ValidationError:
    """Kubernetes' ``Invalid value: "x": why`` on ``path``."""
    shown = quote(value) if isinstance(value, str) else str(value)
    return ValidationError(path, f"Invalid value: {shown}: {why}")


def is_headless(service: objects_pb2.Service) -> bool:
    return service.spec.cluster_ip == NONE


def default_service(service: objects_pb2.Service) -> None:
    """Kubernetes' defaults of a Service, in place: type ClusterIP, protocol TCP and targetPort =
    port on each port, sessionAffinity None (ClientIP: timeoutSeconds 10800), externalTrafficPolicy
    Cluster for NodePort services, internalTrafficPolicy Cluster, ipFamilies [IPv4] and
    ipFamilyPolicy SingleStack, clusterIPs from clusterIP."""
    service.api_version = service.api_version or "v1"
    service.kind = service.kind or "Service"
    service.metadata.namespace = service.metadata.namespace or "default"
    spec = service.spec
    spec.type = spec.type or CLUSTER_IP
    for port in spec.ports:
        port.protocol = port.protocol or "TCP"
        # Kubernetes: an unset, 0 or "" targetPort means the port itself.
        if not getattr(port.target_port, port.target_port.WhichOneof("value") or "int_value"):
            port.target_port.int_value = port.port
    spec.session_affinity = spec.session_affinity or "None"
    if spec.session_affinity == "ClientIP":
        client_ip = spec.session_affinity_config.client_ip
        if not client_ip.HasField("timeout_seconds"):
            client_ip.timeout_seconds = DEFAULT_AFFINITY_TIMEOUT
    if spec.type == NODE_PORT:
        spec.external_traffic_policy = spec.external_traffic_policy or "Cluster"
    spec.internal_traffic_policy = spec.internal_traffic_policy or "Cluster"
    if not spec.ip_families:
        spec.ip_families.append("IPv4")
    if not spec.HasField("ip_family_policy"):
        spec.ip_family_policy = "SingleStack"
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips.append(spec.cluster_ip)
    elif spec.cluster_ips and not spec.cluster_ip:
        spec.cluster_ip = spec.cluster_ips[0]


def _is_port_name(name: str) -> bool:
    return len(name) <= 15 and bool(_IANA_SVC_NAME.fullmatch(name)) and "--" not in name and any(
        c.isalpha() for c in name
    )


def _check_ports(spec: objects_pb2.ServiceSpec, network: NetworkConfig) -> None:
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    low, high = network.node_ports
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        if len(spec.ports) > 1 and not port.name:
            raise ValidationError(f"{path}.name", "Required value")
        if port.name:
            if len(port.name) > 63 or not _DNS_LABEL.fullmatch(port.name):
                raise invalid(f"{path}.name", port.name, "a lowercase RFC 1123 label must consist of "
                              "lower case alphanumeric characters or '-', and must start and end with an "
                              "alphanumeric character")
            if port.name in names:
                raise ValidationError(f"{path}.name", f"Duplicate value: {quote(port.name)}")
            names.add(port.name)
        if not 1 <= port.port <= 65535:
            raise invalid(f"{path}.port", port.port, "must be between 1 and 65535, inclusive")
        if port.protocol not in PROTOCOLS:
            why = "pykube's node proxy programs no SCTP rules" if port.protocol == "SCTP" else ""
            raise unsupported(f"{path}.protocol", port.protocol, PROTOCOLS, why)
        if (port.port, port.protocol) in seen:
            raise ValidationError(path, f"Duplicate value: \"{port.port}/{port.protocol}\"")
        seen.add((port.port, port.protocol))
        target = port.target_port
        if target.WhichOneof("value") == "str_value":
            if not _is_port_name(target.str_value):
                raise invalid(f"{path}.targetPort", target.str_value, "must contain at most 15 characters "
                              "of a-z, 0-9 and '-', with at least one letter (an IANA_SVC_NAME)")
        elif not 1 <= target.int_value <= 65535:
            raise invalid(f"{path}.targetPort", target.int_value, "must be between 1 and 65535, inclusive")
        if port.node_port:
            if spec.type != NODE_PORT:
                raise ValidationError(f"{path}.nodePort",
                                      f"Forbidden: may not be used when `type` is '{spec.type}'")
            if not low <= port.node_port <= high:
                raise invalid(f"{path}.nodePort", port.node_port, "provided port is not in the valid range. "
                              f"The range of valid ports is {low}-{high}")
            if (port.node_port, port.protocol) in node_ports:
                raise ValidationError(f"{path}.nodePort", f"Duplicate value: \"{port.node_port}\"")
            node_ports.add((port.node_port, port.protocol))
        if port.HasField("app_protocol") and port.app_protocol:
            check_qualified_name(f"{path}.appProtocol", port.app_protocol)


def _check_cluster_ip(spec: objects_pb2.ServiceSpec, network: NetworkConfig) -> None:
    if spec.cluster_ips and spec.cluster_ips[0] != spec.cluster_ip:
        raise invalid("spec.clusterIPs[0]", spec.cluster_ips[0], "must match `clusterIP`")
    if len(spec.cluster_ips) > 1:
        raise invalid("spec.clusterIPs", ",".join(spec.cluster_ips),
                      "may only hold one IP: this cluster is not configured for dual-stack services")
    if not spec.cluster_ip or spec.cluster_ip == NONE:
        if spec.cluster_ip == NONE and spec.type == NODE_PORT:
            raise invalid("spec.clusterIP", NONE, "may not be set to 'None' for NodePort services")
        return
    try:
        address = ipaddress.ip_address(spec.cluster_ip)
    except ValueError:
        raise invalid("spec.clusterIP", spec.cluster_ip,
                      "must be a valid IP address, (e.g. 10.9.8.7)") from None
    cidr = ipaddress.ip_network(network.service_cidr)
    edges = (cidr.network_address, cidr.broadcast_address)
    if address.version != 4 or address not in cidr or address in edges:
        raise invalid("spec.clusterIP", spec.cluster_ip, "provided IP is not in the valid range. "
                      f"The range of valid IPs is {network.service_cidr}")


def validate_service(service: objects_pb2.Service, network: NetworkConfig) -> None:
    """Checks a defaulted Service (``default_service``) against the cluster's address plan.

    Raises:
        ValidationError: naming the field, in Kubernetes' words.
    """
    if service.api_version != "v1":
        raise ValidationError("apiVersion", f"unsupported apiVersion {quote(service.api_version)} for "
                                            "Service; supported: v1")
    if service.kind != "Service":
        raise ValidationError("kind", f"must be Service, not {quote(service.kind)}")
    check_metadata(service.metadata, namespaced=True)
    if len(service.metadata.name) > 63 or not _DNS1035_LABEL.fullmatch(service.metadata.name):
        # A Service's name is a DNS label: it becomes <svc>.<ns>.svc.<domain>.
        raise invalid("metadata.name", service.metadata.name, "a DNS-1035 label must consist of lower case "
                      "alphanumeric characters or '-', start with an alphabetic character, and end with an "
                      "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
                      "'[a-z]([-a-z0-9]*[a-z0-9])?')")
    spec = service.spec
    if spec.type in _REFUSED_TYPES:
        raise unsupported("spec.type", spec.type, SERVICE_TYPES, _REFUSED_TYPES[spec.type])
    if spec.type not in SERVICE_TYPES:
        raise unsupported("spec.type", spec.type, SERVICE_TYPES)
    if not spec.ports and not is_headless(service):
        raise ValidationError("spec.ports", "Required value")
    _check_ports(spec, network)
    _check_cluster_ip(spec, network)
    check_labels("spec.selector", spec.selector)
    if spec.session_affinity not in AFFINITIES:
        raise unsupported("spec.sessionAffinity", spec.session_affinity, AFFINITIES)
    if spec.session_affinity == "ClientIP":
        timeout = spec.session_affinity_config.client_ip.timeout_seconds
        if not 0 < timeout <= MAX_AFFINITY_TIMEOUT:
            raise invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                          f"must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}")
    elif spec.HasField("session_affinity_config"):
        raise ValidationError("spec.sessionAffinityConfig",
                              "Forbidden: must not be set when `sessionAffinity` is None")
    if spec.external_traffic_policy:
        if spec.type != NODE_PORT:
            raise invalid("spec.externalTrafficPolicy", spec.external_traffic_policy,
                          "may only be set for externally-accessible services")
        if spec.external_traffic_policy not in TRAFFIC_POLICIES:
            raise unsupported("spec.externalTrafficPolicy", spec.external_traffic_policy, TRAFFIC_POLICIES)
    if spec.internal_traffic_policy not in TRAFFIC_POLICIES:
        raise unsupported("spec.internalTrafficPolicy", spec.internal_traffic_policy, TRAFFIC_POLICIES)
    for i, family in enumerate(spec.ip_families):
        if family != "IPv4":
            raise unsupported(f"spec.ipFamilies[{i}]", family, ("IPv4",),
                              "this cluster is not configured for dual-stack services")
    if len(spec.ip_families) > 1:
        raise ValidationError("spec.ipFamilies[1]", 'Duplicate value: "IPv4"')
    if spec.ip_family_policy not in IP_FAMILY_POLICIES:
        raise unsupported("spec.ipFamilyPolicy", spec.ip_family_policy, IP_FAMILY_POLICIES)
    if spec.ip_family_policy == "RequireDualStack":
        raise invalid("spec.ipFamilyPolicy", spec.ip_family_policy,
                      "this cluster is not configured for dual-stack services")


def validate_service_update(old: objects_pb2.Service, new: objects_pb2.Service) -> None:
    """What may not change: clusterIP (and clusterIPs) once set, except a change of type; a
    headless service stays headless.

    Raises:
        ValidationError: ``spec.clusterIP: Invalid value: ...: field is immutable``.
    """
    if new.spec.cluster_ip != old.spec.cluster_ip and (new.spec.cluster_ip or old.spec.cluster_ip == NONE):
        raise invalid("spec.clusterIP", new.spec.cluster_ip, "field is immutable")


def _check_endpoint(path: str, endpoint: objects_pb2.Endpoint) -> None:
    if not endpoint.addresses:
        raise ValidationError(f"{path}.addresses", "Required value: must contain at least 1 address")
    if len(endpoint.addresses) > MAX_ADDRESSES:
        raise ValidationError(f"{path}.addresses", f"Too many: {len(endpoint.addresses)}: must have at most "
                                                   f"{MAX_ADDRESSES} items")
    for j, address in enumerate(endpoint.addresses):
        try:
            valid = ipaddress.ip_address(address).version == 4
        except ValueError:
            valid = False
        if not valid:
            raise invalid(f"{path}.addresses[{j}]", address, "must be a valid IPv4 address")
    if endpoint.HasField("hostname") and (len(endpoint.hostname) > 63
                                          or not _DNS_LABEL.fullmatch(endpoint.hostname)):
        raise invalid(f"{path}.hostname", endpoint.hostname, "a lowercase RFC 1123 label must consist of "
                      "lower case alphanumeric characters or '-'")
    if endpoint.HasField("node_name") and endpoint.node_name:
        if len(endpoint.node_name) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
                                                             endpoint.node_name):
            raise invalid(f"{path}.nodeName", endpoint.node_name, "a lowercase RFC 1123 subdomain")


def validate_endpoint_slice(endpoint_slice: objects_pb2.EndpointSlice) -> None:
    """Checks an EndpointSlice (``addressType`` IPv4 only; at most 100 endpoints; ports named
    uniquely, 1-65535, TCP or UDP).

    Raises:
        ValidationError: naming the field.
    """
    if endpoint_slice.api_version != "discovery.k8s.io/v1":
        raise ValidationError("apiVersion", f"unsupported apiVersion {quote(endpoint_slice.api_version)} "
                                            "for EndpointSlice; supported: discovery.k8s.io/v1")
    if endpoint_slice.kind != "EndpointSlice":
        raise ValidationError("kind", f"must be EndpointSlice, not {quote(endpoint_slice.kind)}")
    check_metadata(endpoint_slice.metadata, namespaced=True)
    if not endpoint_slice.address_type:
        raise ValidationError("addressType", "Required value")
    if endpoint_slice.address_type not in ADDRESS_TYPES:
        why = "this cluster is IPv4 only" if endpoint_slice.address_type in ("IPv6", "FQDN") else ""
        raise unsupported("addressType", endpoint_slice.address_type, ADDRESS_TYPES, why)
    if len(endpoint_slice.endpoints) > MAX_ENDPOINTS:
        raise ValidationError("endpoints", f"Too many: {len(endpoint_slice.endpoints)}: must have at most "
                                           f"{MAX_ENDPOINTS} items")
    for i, endpoint in enumerate(endpoint_slice.endpoints):
        _check_endpoint(f"endpoints[{i}]", endpoint)
    if len(endpoint_slice.ports) > MAX_SLICE_PORTS:
        raise ValidationError("ports", f"Too many: {len(endpoint_slice.ports)}: must have at most "
                                       f"{MAX_SLICE_PORTS} items")
    names: set[str] = set()
    for i, port in enumerate(endpoint_slice.ports):
        path = f"ports[{i}]"
        name = port.name if port.HasField("name") else ""
        if name and (len(name) > 63 or not _DNS_LABEL.fullmatch(name)):
            raise invalid(f"{path}.name", name, "a lowercase RFC 1123 label must consist of lower case "
                          "alphanumeric characters or '-'")
        if name in names:
            raise ValidationError(f"{path}.name", f"Duplicate value: {quote(name)}")
        names.add(name)
        if port.HasField("protocol") and port.protocol not in PROTOCOLS:
            raise unsupported(f"{path}.protocol", port.protocol, PROTOCOLS)
        if port.HasField("port") and not 1 <= port.port <= 65535:
            raise invalid(f"{path}.port", port.port, "must be between 1 and 65535, inclusive")
        if port.HasField("app_protocol") and port.app_protocol:
            check_qualified_name(f"{path}.appProtocol", port.app_protocol)
