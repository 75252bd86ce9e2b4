"""Property-based fuzzing of the API's input paths (hypothesis), with a fixed example budget so CI
is reproducible and bounded (``derandomize=True``: the same examples on every run).

(a) Manifests: random YAML-able documents built around the Pod shape (valid and broken values,
    unknown fields, wrong types, huge strings), plus mangled YAML text: ``load_pods`` returns
    pods or raises ``ValidationError``, nothing else; so do the master's defaulting and validation
    on what it returns.
(b) Random protobuf Pods (every field of the message, nested, filled from its descriptor) sent to
    an in-process master over mutual TLS with the admin identity, by CreatePod and ApplyPod: each
    answer is OK or a clear refusal (INVALID_ARGUMENT, PERMISSION_DENIED from admission,
    ALREADY_EXISTS), never INTERNAL/UNKNOWN, within its deadline; a refusal writes nothing.
(c) Random bytes as raw requests (identity serializers) to several methods. Left alone, gRPC
    Python answers a body that does not parse with INTERNAL "Exception deserializing request!";
    the master's interceptor decodes leniently and answers INVALID_ARGUMENT ("the request is not
    a valid message: ...") instead, so here no INTERNAL is accepted at all: every answer is OK or
    a clear refusal, a refusal writes nothing, and the master keeps serving.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymaster.api import defaults, errors, objects_pb2, validation
from pymaster.api.clientconfig import channel_credentials, channel_options, load_config
from pymaster.api.manifest import load_pods
from pymaster.app import MasterApp
from pymaster.client import Client

# The budget: fixed and derandomized, so every CI run tries the same examples in bounded time.
BUDGET = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_TIMEOUT = 10.0

# ---- (a) manifests ----

_NAME_CHARS = string.ascii_lowercase + string.digits + "-."
_DNS_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
names = st.integers(0, 9).flatmap(
    lambda i: _DNS_NAME if i < 7 else [st.text(_NAME_CHARS, min_size=1, max_size=20), st.text(max_size=20),
                                       st.sampled_from(["", "x" * 300])][i - 7]
)
huge_strings = st.builds(lambda char, n: char * n, st.sampled_from(["a", "ß", "\u2603", "-", " "]),
                         st.integers(0, 200_000))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    names,
)
junk = st.recursive(
    st.one_of(scalars, huge_strings),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid shape (nine times in ten), sometimes anything: so that many documents
    get past the first broken field and deeper checks are reached."""
    return st.integers(0, 9).flatmap(lambda i: junk if i == 9 else valid)


def shaped(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with the given fields (each valid or junk) and, sometimes, unknown fields."""
    known = st.fixed_dictionaries(
        {k: either(v) for k, v in required.items()}, optional={k: either(v) for k, v in optional.items()}
    )
    unknown = st.dictionaries(st.text(min_size=1, max_size=12), junk, max_size=2)
    # One dict in ten gets unknown fields. (Hypothesis favours small integers: 0 is the common case.)
    return st.builds(lambda a, b, dice: {**b, **a} if dice == 9 else a, known, unknown, st.integers(0, 9))


quantities = st.one_of(
    st.sampled_from(["100m", "1", "0.5", "64Mi", "1Gi", "1e3", "lots", "-1", ""]), st.text(max_size=8)
)
resources = shaped(
    {},
    {
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "gpu"]), quantities, max_size=3),
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2),
    },
)
ports = shaped({"containerPort": st.integers(-10, 70_000)},
               {"protocol": st.sampled_from(["TCP", "UDP", "SCTP", "tcp"]), "name": names})
containers = shaped(
    {"name": names, "image": st.one_of(st.just("pykube/busybox:1.35"), names)},
    {
        "command": st.lists(st.text(max_size=10), max_size=3),
        "args": st.lists(st.text(max_size=10), max_size=3),
        "env": st.lists(shaped({"name": names}, {"value": st.text(max_size=10)}), max_size=3),
        "ports": st.lists(ports, max_size=3),
        "resources": resources,
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never", "Sometimes"]),
        "securityContext": shaped({}, {"privileged": st.booleans()}),
        "volumeMounts": st.lists(shaped({"name": names, "mountPath": st.text(max_size=12)},
                                        {"readOnly": st.booleans()}), max_size=2),
    },
)
volumes = shaped(
    {"name": names},
    {"hostPath": shaped({"path": st.text(max_size=12)}, {"type": st.text(max_size=10)}),
     "emptyDir": shaped({}, {"medium": st.sampled_from(["", "Memory", "Disk"]), "sizeLimit": quantities})},
)
labels = st.dictionaries(st.text(max_size=70), st.text(max_size=70), max_size=4)
pod_documents = shaped(
    {
        "apiVersion": st.integers(0, 9).map(lambda i: "v2" if i == 9 else "v1"),
        "kind": st.integers(0, 9).map(lambda i: "pod" if i == 9 else "Pod"),
        "metadata": shaped({"name": names}, {"namespace": names, "labels": labels, "annotations": labels}),
        "spec": shaped(
            {"containers": st.lists(containers, max_size=4)},
            {
                "restartPolicy": st.sampled_from(["Always", "OnFailure", "Never", "Sometimes"]),
                "nodeSelector": labels,
                "nodeName": names,
                "terminationGracePeriodSeconds": st.integers(-(2**64), 2**64),
                "hostNetwork": st.booleans(),
                "volumes": st.lists(volumes, max_size=2),
            },
        ),
    },
    {"status": junk},
)


# Valid pods, so that the success path (and defaulting after it) is fuzzed too.
_valid_quantity = st.sampled_from(["100m", "1", "0.5", "64Mi", "1Gi"])
valid_pod_documents = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.just("Pod"),
        "metadata": st.fixed_dictionaries(
            {"name": _DNS_NAME}, optional={"labels": st.dictionaries(_DNS_NAME, _DNS_NAME, max_size=3)}
        ),
        "spec": st.fixed_dictionaries(
            {
                "containers": st.lists(
                    st.fixed_dictionaries(
                        {"name": _DNS_NAME, "image": st.just("pykube/busybox:1.35")},
                        optional={
                            "command": st.lists(st.text(max_size=10), max_size=3),
                            "resources": st.fixed_dictionaries(
                                {}, optional={"requests": st.fixed_dictionaries({"cpu": _valid_quantity})}
                            ),
                            "ports": st.lists(
                                st.fixed_dictionaries({"containerPort": st.integers(1, 65535)}), max_size=1
                            ),
                        },
                    ),
                    min_size=1,
                    max_size=3,
                    unique_by=lambda c: c["name"],
                ),
            },
            optional={"restartPolicy": st.sampled_from(["Always", "OnFailure", "Never"])},
        ),
    }
)


def _mangle(text: str, cut: int, insert: str) -> str:
    """Breaks YAML text: cut at a position and insert characters YAML gives meaning to."""
    position = cut % (len(text) + 1)
    return text[:position] + insert + text[position:]


_YAML_SPECIALS = ["\t", ":", "- ", "{", "]", "&a", "*a", "!!python/object:os.system", "---\n", "\0"]
_documents = st.lists(pod_documents, min_size=1, max_size=3).map(
    lambda docs: yaml.safe_dump_all(docs, allow_unicode=True)
)
manifests = st.one_of(
    valid_pod_documents.map(yaml.safe_dump),
    _documents,
    _documents,
    st.builds(
        _mangle, pod_documents.map(yaml.safe_dump), st.integers(0, 10_000), st.sampled_from(_YAML_SPECIALS)
    ),
    st.text(max_size=200),
)


@BUDGET
@given(manifests)
def test_random_manifests_load_or_fail_with_a_validation_error(text: str) -> None:
    try:
        pods = load_pods(text)
    except errors.ValidationError as exc:
        assert str(exc)  # says what is wrong
        return
    for pod in pods:
        # What the master does next with them: also only ValidationError.
        try:
            defaults.default_pod(pod)
            validation.validate_pod(pod)
        except errors.ValidationError:
            pass


# ---- random protobuf messages, from the descriptor ----

_INT_RANGES = {
    pb_descriptor.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    pb_descriptor.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    pb_descriptor.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    pb_descriptor.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_proto_strings = st.one_of(
    st.text(max_size=20),
    names,
    st.sampled_from(["", "v1", "Pod", "default", "Always", "TCP", "100m", "64Mi"]),
    st.builds(lambda n: "y" * n, st.integers(0, 20_000)),
)


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        low, high = _INT_RANGES[t]
        return st.one_of(st.integers(low, high), st.integers(-5, 100_000).filter(lambda v: low <= v <= high))
    if t in (pb_descriptor.FieldDescriptor.TYPE_DOUBLE, pb_descriptor.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == field.TYPE_FLOAT else 64)
    if t == pb_descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == pb_descriptor.FieldDescriptor.TYPE_STRING:
        return _proto_strings
    if t == pb_descriptor.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == pb_descriptor.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"unhandled field type {t}")


def _fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    """Sets a random subset of the message's fields to random values, recursively."""
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        is_message = field.type == field.TYPE_MESSAGE
        if is_message and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name
            key_field, value_field = entry["key"], entry["value"]
            target = getattr(message, field.name)
            for key in draw(st.lists(_scalar(key_field), max_size=3)):
                if value_field.type == value_field.TYPE_MESSAGE:
                    if depth > 0:
                        _fill(draw, target[key], depth - 1)
                else:
                    target[key] = draw(_scalar(value_field))
        elif field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(draw(st.integers(0, 3))):
                if is_message:
                    if depth > 0:
                        _fill(draw, target.add(), depth - 1)
                else:
                    target.append(draw(_scalar(field)))
        elif is_message:
            if depth > 0:
                _fill(draw, getattr(message, field.name), depth - 1)
        else:
            setattr(message, field.name, draw(_scalar(field)))


def _valid_pod(name: str) -> objects_pb2.Pod:
    pod = objects_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="main", image="pykube/busybox:1.35", command=["sleep", "1"])
    return pod


@st.composite
def random_pods(draw: st.DrawFn) -> objects_pb2.Pod:
    """A Pod with random fields: on top of a valid pod half of the time (so that deep fields are
    reached past the first checks), from nothing otherwise."""
    if draw(st.booleans()):
        pod = _valid_pod(draw(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)))
        overlay = objects_pb2.Pod()
        _fill(draw, overlay, depth=4)
        # Mostly keep one valid part (metadata or spec) so the other is what gets judged.
        keep = draw(st.sampled_from(["metadata", "spec", "none"]))
        if keep != "metadata":
            pod.metadata.MergeFrom(overlay.metadata)
        if keep != "spec":
            pod.spec.MergeFrom(overlay.spec)
        pod.status.MergeFrom(overlay.status)
        return pod
    pod = objects_pb2.Pod()
    _fill(draw, pod, depth=5)
    return pod


# ---- (b) the master over mTLS ----


@dataclass
class InProcess:
    loop: asyncio.AbstractEventLoop
    app: MasterApp
    client: Client
    channel: grpc.aio.Channel

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, CALL_TIMEOUT * 2))


def _start_master(data_dir: Any) -> MasterApp:
    return MasterApp(data_dir, "127.0.0.1:0", "127.0.0.1:0", join_listen="127.0.0.1:0")


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    loop = asyncio.new_event_loop()
    app = _start_master(tmp_path_factory.mktemp("fuzz") / "data")

    async def start() -> tuple[Client, grpc.aio.Channel]:
        await app.start()
        config = load_config(app.data_dir / "admin.yaml")
        client = Client(app.address, timeout=CALL_TIMEOUT, config=config)
        channel = grpc.aio.secure_channel(app.address, channel_credentials(config), channel_options(config))
        return client, channel

    client, channel = loop.run_until_complete(start())
    try:
        yield InProcess(loop, app, client, channel)
    finally:
        loop.run_until_complete(channel.close())
        loop.run_until_complete(client.close())
        loop.run_until_complete(app.stop())
        loop.close()


# A refusal the issue calls clear; anything else (INTERNAL, UNKNOWN, DEADLINE_EXCEEDED) fails.
CLEAR_REFUSALS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
)


def _snapshot(app: MasterApp) -> dict[tuple[str, str], bytes]:
    """Every stored pod's metadata and spec: what a create or apply writes. (Status is left out:
    the scheduler writes PodScheduled=False on pending pods in the background, there being no
    node; nothing else writes, as no node is ever registered.)"""
    pods, _ = app.store.list("pods")
    snapshot = {}
    for pod in pods:
        pod.ClearField("status")
        pod.metadata.ClearField("resource_version")
        snapshot[(pod.metadata.namespace, pod.metadata.name)] = pod.SerializeToString(deterministic=True)
    return snapshot


def _check_call(harness: InProcess, call: Callable[[], Any]) -> grpc.StatusCode:
    before = _snapshot(harness.app)
    try:
        harness.run(call())
    except errors.ApiError as exc:
        assert exc.code in CLEAR_REFUSALS, f"{exc.code.name}: {exc.message}"
        assert exc.message, "a refusal says what is wrong"
        assert _snapshot(harness.app) == before, "a refused call wrote something"
        return exc.code
    return grpc.StatusCode.OK


@BUDGET
@given(random_pods())
def test_random_pods_by_create_pod(master: InProcess, pod: objects_pb2.Pod) -> None:
    code = _check_call(master, lambda: master.client.create_pod(pod))
    if code == grpc.StatusCode.OK:
        namespace = pod.metadata.namespace or "default"
        stored = master.app.store.get("pods", namespace, pod.metadata.name)
        assert stored.metadata.uid


@BUDGET
@given(random_pods())
def test_random_pods_by_apply_pod(master: InProcess, pod: objects_pb2.Pod) -> None:
    _check_call(master, lambda: master.client.apply_pod(pod))


# ---- (c) random bytes ----

# The methods whose request bodies are fuzzed (unary: the whole body is the request).
RAW_METHODS = (
    "/pykube.v1.Cluster/CreatePod",
    "/pykube.v1.Cluster/ApplyPod",
    "/pykube.v1.Cluster/UpdatePod",
    "/pykube.v1.Cluster/GetPod",
    "/pykube.v1.Cluster/ListPods",
    "/pykube.v1.Cluster/DeletePod",
    "/pykube.v1.Cluster/UpdateNode",
    "/pykube.v1.NodeAgent/RenewLease",
    "/pykube.v1.NodeAgent/ReportNodeStatus",
    "/pykube.v1.NodeAgent/UpdatePodStatus",
    "/pykube.v1.NodeAgent/RenewCertificate",
)
# RegisterNode is left out on purpose: a node would let the scheduler bind pods in the background,
# and the no-partial-write check compares the store before and after each call.
# Beyond the clear refusals of (b): a name that does not exist, a stale resourceVersion, and
# RenewCertificate asked by the admin (it renews node certificates only).
RAW_ANSWERS = (*CLEAR_REFUSALS, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED,
               grpc.StatusCode.FAILED_PRECONDITION)


def _identity(data: bytes) -> bytes:
    return data


@BUDGET
@given(
    st.sampled_from(RAW_METHODS),
    st.one_of(st.binary(max_size=512), random_pods().map(lambda pod: pod.SerializeToString())),
)
def test_random_bytes_as_requests(master: InProcess, method: str, body: bytes) -> None:
    async def send() -> bytes:
        # Made on the master's loop: grpc.aio binds a call to the loop it is created on.
        call = master.channel.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        return await call(body, timeout=CALL_TIMEOUT)

    before = _snapshot(master.app)
    try:
        master.run(send())
    except grpc.aio.AioRpcError as err:
        code, details = err.code(), err.details() or ""
        assert code in RAW_ANSWERS, f"{code.name}: {details}"
        assert details, "a refusal says what is wrong"
        assert _snapshot(master.app) == before, "a refused call wrote something"


def test_master_still_serves_after_the_fuzzing(master: InProcess) -> None:
    nodes = master.run(master.client.list_nodes())
    assert isinstance(nodes, objects_pb2.NodeList)
