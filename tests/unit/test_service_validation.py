"""Service validation: each refusal names its field in Kubernetes' words."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.network import NetworkConfig
from pymaster.api.service_validation import default_service, validate_service
from pymaster.api.workloads import int_or_string


def make(**changes) -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name = "web"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(port=80)
    for path, value in changes.items():
        target = svc.spec
        *parents, leaf = path.split("__")
        for parent in parents:
            target = getattr(target, parent) if not parent.isdigit() else target[int(parent)]
        if isinstance(value, objects_pb2.IntOrString):
            getattr(target, leaf).CopyFrom(value)
        elif isinstance(value, list):
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return svc


def two_ports(first: str, second: str) -> objects_pb2.Service:
    svc = make()
    svc.spec.ports[0].name = first
    svc.spec.ports.add(name=second, port=81)
    return svc


CASES = [
    (make(type="LoadBalancer"), 'spec.type: Unsupported value: "LoadBalancer": supported values: '
                                '"ClusterIP", "NodePort" (pykube has no cloud load balancers; use NodePort)'),
    (make(type="ExternalName"), 'spec.type: Unsupported value: "ExternalName": supported values: '
                                '"ClusterIP", "NodePort" (pykube\'s DNS serves no CNAME records; use a '
                                'Service without a selector)'),
    (make(type="Foo"), 'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "NodePort"'),
    (make(ports__0__port=0), "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    (make(ports__0__protocol="SCTP"), 'spec.ports[0].protocol: Unsupported value: "SCTP": supported values: '
                                      '"TCP", "UDP" (pykube\'s node proxy programs no SCTP rules)'),
    (make(ports__0__target_port=int_or_string(70000)),
     "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    (make(ports__0__target_port=int_or_string("Not_A_Name")),
     'spec.ports[0].targetPort: Invalid value: "Not_A_Name": must contain at most 15 characters of a-z, 0-9 '
     "and '-', with at least one letter (an IANA_SVC_NAME)"),
    (make(ports__0__node_port=30080),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (make(type="NodePort", ports__0__node_port=80),
     "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid "
     "ports is 30000-32767"),
    (two_ports("", "b"), "spec.ports[0].name: Required value"),
    (two_ports("a", "a"), 'spec.ports[1].name: Duplicate value: "a"'),
    (make(cluster_ip="10.0.0.1"), 'spec.clusterIP: Invalid value: "10.0.0.1": provided IP is not in the '
                                  "valid range. The range of valid IPs is 10.96.0.0/12"),
    (make(cluster_ip="banana"), 'spec.clusterIP: Invalid value: "banana": must be a valid IP address, '
                                "(e.g. 10.9.8.7)"),
    (make(type="NodePort", cluster_ip="None"),
     "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"),
    (make(ip_families=["IPv6"]), 'spec.ipFamilies[0]: Unsupported value: "IPv6": supported values: "IPv4" '
                                 "(this cluster is not configured for dual-stack services)"),
    (make(ip_family_policy="RequireDualStack"),
     'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack '
     "services"),
    (make(session_affinity="Sticky"),
     'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'),
    (make(session_affinity="ClientIP", session_affinity_config__client_ip__timeout_seconds=90000),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000: must be greater than 0 and "
     "less than 86400"),
    (make(external_traffic_policy="Local"), 'spec.externalTrafficPolicy: Invalid value: "Local": may only be '
                                            "set for externally-accessible services"),
    (make(internal_traffic_policy="Nearby"),
     'spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: "Cluster", "Local"'),
]


@pytest.mark.parametrize(("svc", "message"), CASES, ids=[m.split(":")[0] + str(i) for i, (_, m) in
                                                          enumerate(CASES)])
def test_refusals(svc, message):
    default_service(svc)
    with pytest.raises(ValidationError) as err:
        validate_service(svc, NetworkConfig())
    assert str(err.value) == message


def test_service_names_are_dns1035_labels():
    svc = make()
    svc.metadata.name = "1web"
    default_service(svc)
    with pytest.raises(ValidationError, match=r'^metadata.name: Invalid value: "1web": a DNS-1035 label'):
        validate_service(svc, NetworkConfig())


def test_ports_required_unless_headless():
    svc = make()
    del svc.spec.ports[:]
    default_service(svc)
    with pytest.raises(ValidationError, match=r"^spec.ports: Required value$"):
        validate_service(svc, NetworkConfig())
    svc.spec.cluster_ip = "None"
    svc.spec.cluster_ips[:] = ["None"]
    validate_service(svc, NetworkConfig())


def test_accepted_shapes():
    for svc in (make(type="NodePort", ports__0__node_port=30080, external_traffic_policy="Local"),
                make(ports__0__target_port=int_or_string("http"), ports__0__protocol="UDP"),
                make(session_affinity="ClientIP", internal_traffic_policy="Local"),
                make(ip_family_policy="PreferDualStack", cluster_ip="10.96.0.10")):
        default_service(svc)
        validate_service(svc, NetworkConfig())
