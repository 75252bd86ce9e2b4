"""Property-based fuzzing of the API's input paths (hypothesis), with a fixed example budget so CI
is reproducible and bounded (``derandomize=True``: the same examples on every run).

(a) Manifests: random YAML-able documents built around the Pod shape (valid and broken values,
    unknown fields, wrong types, huge strings), plus mangled YAML text: ``load_pods`` returns
    pods or raises ``ValidationError``, nothing else; so do the master's defaulting and validation
    on what it returns.
(b) Random protobuf objects (every field of the message, nested, filled from its descriptor) sent
    to an in-process master over mutual TLS with the admin identity: Pods by the client's create
    and apply; Object envelopes (a Pod, a Node, an Event, empty, or anything) by Resources.Create,
    Apply and Update; Get/List/Delete/Watch requests with random resource names, namespaces,
    selectors and resourceVersions; batches of random Events by NodeAgent.RecordEvents. Each
    answer is OK or a status of the API's taxonomy (pymaster.api.errors), never INTERNAL/UNKNOWN,
    within its deadline; a refusal writes nothing (a RecordEvents batch is refused whole).
(c) Random bytes as raw requests (identity serializers) to several methods. Left alone, gRPC
    Python answers a body that does not parse with INTERNAL "Exception deserializing request!";
    the master's interceptor decodes leniently and answers INVALID_ARGUMENT ("the request is not
    a valid message: ...") instead, so here no INTERNAL is accepted at all: every answer is OK or
    a clear refusal, a refusal writes nothing, and the master keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import yaml
from fuzz_messages import dns_names, names, random_envelopes, random_events, random_pods, random_requests
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymaster.api import defaults, errors, objects_pb2, services_pb2, services_pb2_grpc, validation
from pymaster.api.clientconfig import channel_credentials, channel_options, load_config
from pymaster.api.manifest import load_pods
from pymaster.app import MasterApp
from pymaster.client import Client
from pymaster.scheduler.scheduler import SCHEDULER_NAME

# The budget: fixed and derandomized, so every CI run tries the same examples in bounded time.
BUDGET = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CALL_TIMEOUT = 10.0

# ---- (a) manifests ----

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
            {"name": dns_names}, optional={"labels": st.dictionaries(dns_names, dns_names, max_size=3)}
        ),
        "spec": st.fixed_dictionaries(
            {
                "containers": st.lists(
                    st.fixed_dictionaries(
                        {"name": dns_names, "image": st.just("pykube/busybox:1.35")},
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


# ---- (b) the master over mTLS ----


@dataclass
class InProcess:
    loop: asyncio.AbstractEventLoop
    app: MasterApp
    client: Client
    channel: grpc.aio.Channel

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, CALL_TIMEOUT * 2))


# Events never expire while fuzzing: a fuzzed lastTimestamp may lie anywhere in time, and the TTL
# controller would delete such events in the background, between a check's before and after.
NEVER = 1e20


def _start_master(data_dir: Any) -> MasterApp:
    return MasterApp(data_dir, "127.0.0.1:0", "127.0.0.1:0", join_listen="127.0.0.1:0", event_ttl=NEVER)


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
# Every status the API answers a request with (pymaster.api.errors), beyond the clear refusals:
# a name that does not exist, a stale resourceVersion, a verb the kind does not support (nodes are
# not created through the API, events not updated: UNIMPLEMENTED with the registry's message), a
# watch from too old a resourceVersion, RenewCertificate asked by the admin.
TAXONOMY = (
    *CLEAR_REFUSALS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
)


def _snapshot(app: MasterApp) -> dict[tuple[str, str, str], bytes]:
    """Every stored pod's metadata and spec, node and event: what a call may write. (Left out:
    pod status and the scheduler's events, which it writes in the background about pending pods,
    there being no node; nothing else writes, as no node is ever registered.)"""
    snapshot = {}
    for kind in ("pods", "nodes", "events"):
        for obj in app.store.list(kind)[0]:
            if kind == "pods":
                obj.ClearField("status")
            if kind == "events" and obj.source.component == SCHEDULER_NAME:
                continue
            obj.metadata.ClearField("resource_version")
            key = (kind, obj.metadata.namespace, obj.metadata.name)
            snapshot[key] = obj.SerializeToString(deterministic=True)
    return snapshot


def _events_touched(before: dict, after: dict) -> int:
    """How many stored events a call created or changed (a recorded event creates one or folds
    into one); none may have gone (nothing expires while fuzzing)."""
    assert {k for k in before if k[0] == "events"} <= set(after), "an event went away"
    return sum(1 for k, v in after.items() if k[0] == "events" and before.get(k) != v)


def _check_refusal(code: grpc.StatusCode, details: str, allowed: tuple[grpc.StatusCode, ...]) -> None:
    assert code in allowed, f"{code.name}: {details}"
    assert details, "a refusal says what is wrong"
    assert details != "Method not found!", "the method is not served: the fuzzing would prove nothing"


def _check_call(harness: InProcess, call: Callable[[], Any], allowed=CLEAR_REFUSALS) -> grpc.StatusCode:
    """Runs a call of the client or of a raw stub; a refusal must be allowed and write nothing."""
    before = _snapshot(harness.app)
    try:
        harness.run(call())
    except errors.ApiError as exc:
        _check_refusal(exc.code, exc.message, allowed)
        assert _snapshot(harness.app) == before, "a refused call wrote something"
        return exc.code
    except grpc.aio.AioRpcError as err:
        _check_refusal(err.code(), err.details() or "", allowed)
        assert _snapshot(harness.app) == before, "a refused call wrote something"
        return err.code()
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
def test_random_pods_by_apply(master: InProcess, pod: objects_pb2.Pod) -> None:
    _check_call(master, lambda: master.client.apply(pod))


@BUDGET
@given(st.sampled_from(["Create", "Apply", "Update"]), random_envelopes())
def test_random_envelopes_by_resources(master: InProcess, verb: str, envelope: objects_pb2.Object) -> None:
    async def send() -> Any:
        method = getattr(services_pb2_grpc.ResourcesStub(master.channel), verb)
        return await method(envelope, timeout=CALL_TIMEOUT)

    code = _check_call(master, send, TAXONOMY)
    if envelope.WhichOneof("object") == "node":
        assert code != grpc.StatusCode.OK or verb == "Update", "nodes are created by their agent only"


WATCH_QUIET_SECONDS = 0.2  # a valid watch with nothing to send yet stays open: that is an answer


@BUDGET
@given(random_requests())
def test_random_requests_by_resources(master: InProcess, verb_request: tuple[str, Message]) -> None:
    verb, request = verb_request

    async def send() -> Any:
        stub = services_pb2_grpc.ResourcesStub(master.channel)
        if verb != "Watch":
            return await getattr(stub, verb)(request, timeout=CALL_TIMEOUT)
        call = stub.Watch(request)
        try:
            return await asyncio.wait_for(call.read(), WATCH_QUIET_SECONDS)
        except TimeoutError:
            return None
        finally:
            call.cancel()

    _check_call(master, send, TAXONOMY)


@BUDGET
@given(st.lists(random_events(), max_size=3))
def test_random_events_by_record_events(master: InProcess, events: list[objects_pb2.Event]) -> None:
    before = _snapshot(master.app)
    try:
        accepted = master.run(master.client.record_events(events))
    except errors.ApiError as exc:
        _check_refusal(exc.code, exc.message, (grpc.StatusCode.INVALID_ARGUMENT,))
        assert ": " in exc.message, "the refusal names the field"
        assert _events_touched(before, _snapshot(master.app)) == 0  # a batch is refused whole
        return
    assert accepted == len(events)  # the admin is not rate-limited
    touched = _events_touched(before, _snapshot(master.app))
    assert (touched >= 1 if events else touched == 0) and touched <= len(events)


# ---- (c) random bytes ----

# The methods whose request bodies are fuzzed (unary: the whole body is the request).
RAW_METHODS = (
    "/pykube.v1.Resources/Create",
    "/pykube.v1.Resources/Apply",
    "/pykube.v1.Resources/Update",
    "/pykube.v1.Resources/Get",
    "/pykube.v1.Resources/List",
    "/pykube.v1.Resources/Delete",
    "/pykube.v1.NodeAgent/RenewLease",
    "/pykube.v1.NodeAgent/ReportNodeStatus",
    "/pykube.v1.NodeAgent/UpdatePodStatus",
    "/pykube.v1.NodeAgent/RenewCertificate",
    "/pykube.v1.NodeAgent/RecordEvents",
)
# RegisterNode is left out on purpose: a node would let the scheduler bind pods in the background,
# and the no-partial-write check compares the store before and after each call.


def _identity(data: bytes) -> bytes:
    return data


@BUDGET
@given(
    st.sampled_from(RAW_METHODS),
    st.one_of(
        st.binary(max_size=512),
        random_pods().map(lambda pod: pod.SerializeToString()),
        random_envelopes().map(lambda envelope: envelope.SerializeToString()),
        st.lists(random_events(), max_size=3).map(
            lambda events: services_pb2.RecordEventsRequest(events=events).SerializeToString()
        ),
    ),
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
        _check_refusal(err.code(), err.details() or "", TAXONOMY)
        after = _snapshot(master.app)
        assert after == before, "a refused call wrote something"


def test_master_still_serves_after_the_fuzzing(master: InProcess) -> None:
    nodes = master.run(master.client.list_nodes())
    assert isinstance(nodes, objects_pb2.NodeList)
    events = master.run(master.client.list("events"))
    assert isinstance(events, objects_pb2.EventList)
