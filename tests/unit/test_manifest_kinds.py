"""Manifests of every served kind read by ``manifest.load`` (kinds mixed in one stream, unknown
kinds, each kind's validation), every unknown field reported at once, and IntOrString values."""

import textwrap

import pytest
import yaml
from manifest_samples import POD_A

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.kinds import EVENTS
from pymaster.api.manifest import MAX_UNKNOWN_FIELDS, from_dict, load, to_dict, to_yaml

EVENT = """\
apiVersion: v1
kind: Event
metadata: {name: a.1}
involvedObject: {kind: Pod, name: a, namespace: default}
reason: Checked
message: looked at it
"""
NODE = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
SUPPORTED = (
    "v1 Pod, v1 Node, v1 Event, v1 ConfigMap, v1 Secret, apps/v1 ReplicaSet, apps/v1 Deployment, "
    "apps/v1 DaemonSet, batch/v1 Job, v1 Service, discovery.k8s.io/v1 EndpointSlice"
)


def test_load_mixes_kinds_in_document_order():
    objects = load(f"{EVENT}---\n{POD_A}---\n{NODE}")
    assert [type(o) for o in objects] == [objects_pb2.Event, objects_pb2.Pod, objects_pb2.Node]
    event = objects[0]
    assert (event.involved_object.kind, event.involved_object.name, event.reason) == ("Pod", "a", "Checked")
    assert event.type == "" and event.count == 0  # the server's defaults are not applied


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            f"{POD_A}---\n{DEPLOYMENT.replace('apps/v1', 'apps/v1beta1')}",
            f'document 2: kind: unsupported kind "Deployment" (apps/v1beta1); supported: {SUPPORTED}',
        ),
        (
            EVENT.replace("apiVersion: v1", "apiVersion: events.k8s.io/v1"),
            f'kind: unsupported kind "Event" (events.k8s.io/v1); supported: {SUPPORTED}',
        ),
        (EVENT.replace("kind: Event\n", ""), f"kind: required; supported: {SUPPORTED}"),
        (EVENT.replace("reason: Checked\n", ""), "reason: required"),
        (EVENT + "type: Info\n", 'type: unsupported value "Info"; supported: Normal, Warning'),
        (EVENT.replace("kind: Pod, ", ""), "involvedObject.kind: required"),
        (EVENT + "count: many\n", "count: must be an integer"),
        (NODE.replace("{name: n1}", "{name: n1, namespace: x}"),
         "metadata.namespace: not allowed: the object is cluster-scoped"),
    ],
)
def test_load_errors_name_the_document_and_the_kind(text, error):
    with pytest.raises(ValidationError) as exc:
        load(text)
    assert str(exc.value) == error


def test_load_takes_an_event_with_what_the_server_defaults_left_out():
    (event,) = load(EVENT + "type: Warning\ncount: 3\n")
    assert (event.type, event.count) == ("Warning", 3)
    assert load(EVENT)[0].metadata.name == "a.1"


def test_load_can_be_limited_to_some_kinds():
    assert len(load(EVENT, kinds=[EVENTS])) == 1
    with pytest.raises(ValidationError, match=r'^kind: unsupported kind "Pod" \(v1\); supported: v1 Event$'):
        load(POD_A, kinds=[EVENTS])


# ---- every unknown field at once ----


def test_from_dict_names_every_unknown_field():
    data = {
        "spec": {
            "containers": [{"name": "a", "livenessProbee": {}}, {"name": "b", "imagee": "x"}],
            "foo": 1,
        },
        "statuss": {},
    }
    with pytest.raises(ValidationError) as exc:
        from_dict(data, objects_pb2.Pod)
    assert exc.value.field == "spec.containers[0].livenessProbee"
    assert str(exc.value) == (
        "spec.containers[0].livenessProbee: unknown field; spec.containers[1].imagee: unknown field; "
        "spec.foo: unknown field; statuss: unknown field"
    )


def test_load_names_every_unknown_field_of_a_later_document():
    text = f"{POD_A}---\n" + POD_A.replace("image:", "imagee:").replace("labels:", "labelz:")
    with pytest.raises(ValidationError) as exc:
        load(text)
    assert exc.value.field == "document 2: metadata.labelz"
    assert str(exc.value) == (
        "document 2: metadata.labelz: unknown field; spec.containers[0].imagee: unknown field"
    )


def test_unknown_fields_are_listed_up_to_a_limit():
    data = {f"f{i:03}": 1 for i in range(MAX_UNKNOWN_FIELDS + 5)}
    with pytest.raises(ValidationError) as exc:
        from_dict(data, objects_pb2.ObjectMeta)
    message = str(exc.value)
    assert message.startswith("f000: unknown field; f001: unknown field;")
    assert message.endswith(f"f{MAX_UNKNOWN_FIELDS - 1:03}: unknown field; and 5 more unknown fields")


def test_a_wrong_type_still_stops_at_once():
    with pytest.raises(ValidationError) as exc:
        from_dict({"nam": "x", "generation": "2", "uidd": "y"}, objects_pb2.ObjectMeta)
    assert str(exc.value) == "generation: must be an integer"


# ---- IntOrString ----

PROBED = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: p}
    spec:
      containers:
      - name: web
        image: pykube/busybox:1.35
        ports: [{name: http, containerPort: 8080}]
        livenessProbe:
          httpGet: {path: /healthz, port: 8080}
        readinessProbe:
          tcpSocket: {port: http}
    """)


def test_int_or_string_reads_and_prints_plain_values():
    (pod,) = load(PROBED)
    container = pod.spec.containers[0]
    assert container.liveness_probe.http_get.port == objects_pb2.IntOrString(int_value=8080)
    assert container.readiness_probe.tcp_socket.port == objects_pb2.IntOrString(str_value="http")
    rendered = to_dict(pod)["spec"]["containers"][0]
    assert rendered["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert rendered["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "port: 8080\n" in to_yaml(pod) and "port: http\n" in to_yaml(pod)
    assert load(to_yaml(pod)) == [pod]


def test_int_or_string_zero_and_unset():
    action = objects_pb2.TCPSocketAction(port=objects_pb2.IntOrString(int_value=0))
    assert to_dict(action) == {"port": 0}
    assert from_dict({"port": 0}, objects_pb2.TCPSocketAction) == action
    empty = objects_pb2.TCPSocketAction()
    empty.port.SetInParent()
    assert to_dict(empty) == {"port": 0}  # Kubernetes' zero value
    assert to_dict(objects_pb2.TCPSocketAction()) == {}


@pytest.mark.parametrize(
    ("port", "error"),
    [
        ("true", "must be an integer or a string"),
        ("8080.0", "must be an integer or a string"),
        ("[8080]", "must be an integer or a string"),
        ("{intValue: 8080}", "must be an integer or a string"),
        ("2147483648", "must be between -2147483648 and 2147483647"),
    ],
)
def test_int_or_string_errors_name_the_path(port, error):
    text = PROBED.replace("port: 8080}", f"port: {port}}}")
    assert text != PROBED
    with pytest.raises(ValidationError) as exc:
        load(text)
    assert str(exc.value) == f"spec.containers[0].livenessProbe.httpGet.port: {error}"


def test_int_or_string_from_yaml_values():
    for value, expected in [(80, objects_pb2.IntOrString(int_value=80)),
                            ("80", objects_pb2.IntOrString(str_value="80"))]:
        action = from_dict(yaml.safe_load(yaml.safe_dump({"port": value})), objects_pb2.TCPSocketAction)
        assert action.port == expected
