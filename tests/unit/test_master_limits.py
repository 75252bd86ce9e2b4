"""The master's hostile-input limits (pymaster.server.limits) and its PKI helpers
(pymaster.server.tls), pure."""

from __future__ import annotations

import datetime
import math

import pytest

from pymaster.api import limits, objects_pb2, pki
from pymaster.api.errors import ValidationError
from pymaster.app import default_join_listen
from pymaster.server import tls


def invalid(fn, *args) -> str:
    with pytest.raises(ValidationError) as err:
        fn(*args)
    return str(err.value)


@pytest.mark.parametrize("name", ["web", "a.b-c", "x" * 253])
def test_check_name_ok(name):
    limits.check_name("name", name)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "name: required"),
        ("Web", "name: invalid value 'Web'"),
        ("a/b", "name: invalid value 'a/b'"),
        ("x" * 254, "name: invalid value"),
    ],
)
def test_check_name_bad(name, message):
    assert invalid(limits.check_name, "name", name).startswith(message)


@pytest.mark.parametrize(
    "namespace, ok", [("", True), ("kube-system", True), ("a.b", False), ("x" * 64, False)]
)
def test_check_namespace(namespace, ok):
    if ok:
        limits.check_namespace("namespace", namespace)
    else:
        assert invalid(limits.check_namespace, "namespace", namespace).startswith("namespace: ")


@pytest.mark.parametrize(
    "seconds, ok",
    [(0, True), (30, True), (limits.MAX_GRACE_PERIOD_SECONDS, True), (-1, False), (2**62, False)],
)
def test_check_grace_period(seconds, ok):
    if ok:
        limits.check_grace_period("gracePeriodSeconds", seconds)
    else:
        assert invalid(limits.check_grace_period, "gracePeriodSeconds", seconds).startswith(
            "gracePeriodSeconds: "
        )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_finite(value):
    assert invalid(limits.check_finite, "requestedSeconds", value).startswith(
        "requestedSeconds: must be a finite number"
    )


def test_check_selectors():
    limits.check_selectors("a=b", "")
    assert invalid(limits.check_selectors, "", "x" * 5000) == "fieldSelector: at most 4096 characters"


def test_check_tail_lines():
    limits.check_tail_lines("tailLines", 0)
    assert (
        invalid(limits.check_tail_lines, "tailLines", -1) == "tailLines: must be greater than or equal to 0"
    )


def pod(containers: int = 1) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = "web"
    for i in range(containers):
        p.spec.containers.add(name=f"c{i}", image="busybox")
    return p


def test_pod_limits():
    limits.check_pod_limits(pod(64))
    big = pod()
    big.metadata.annotations["a"] = "x" * limits.MAX_POD_BYTES
    assert invalid(limits.check_pod_limits, big).startswith('pod "web" is ')
    slow = pod()
    slow.spec.termination_grace_period_seconds = 2**40
    assert invalid(limits.check_pod_limits, slow).startswith("spec.terminationGracePeriodSeconds: ")


def test_pod_status_checks():
    status = objects_pb2.PodStatus(phase="Running")
    status.container_statuses.add(name="c").state.running.started_at.seconds = 1_700_000_000
    limits.check_pod_status(status)
    assert invalid(limits.check_pod_status, objects_pb2.PodStatus(phase="Dancing")).startswith(
        "status.phase: "
    )
    status.container_statuses.add(name="d").state.terminated.finished_at.seconds = 2**40
    assert invalid(limits.check_pod_status, status) == (
        "status.containerStatuses[1].state.terminated.finishedAt: timestamp out of range (years 0001 to 9999)"
    )


def test_timestamps_in_maps_and_nested_messages():
    node = objects_pb2.Node()
    node.status.conditions.add(type="Ready").last_heartbeat_time.nanos = -1
    assert invalid(limits.check_timestamps, "", node).startswith("status.conditions[0].lastHeartbeatTime: ")


# ---- tls helpers ----


@pytest.mark.parametrize(
    "values, names",
    [
        ([], []),
        (["a.example.com"], ["a.example.com"]),
        (["a, b", "c", "", "a"], ["a", "b", "c"]),
    ],
)
def test_split_sans(values, names):
    assert tls.split_sans(values) == names


def test_server_sans():
    base = [*pki.MASTER_NAMES, "127.0.0.1", "::1"]
    assert tls.server_sans("0.0.0.0") == base
    assert tls.server_sans("10.0.0.1", ["api.example.com,10.0.0.2", "0:0::1"]) == [
        *base,
        "10.0.0.1",
        "api.example.com",
        "10.0.0.2",
    ]


@pytest.mark.parametrize(
    "listen, port, address",
    [
        ("127.0.0.1:0", 6443, "127.0.0.1:6443"),
        ("0.0.0.0:6443", 6443, "127.0.0.1:6443"),
        ("[::]:6443", 6443, "[::1]:6443"),
        ("10.0.0.5:6443", 6443, "10.0.0.5:6443"),
        ("[fd00::1]:1", 1, "[fd00::1]:1"),
    ],
)
def test_client_address(listen, port, address):
    assert tls.client_address(listen, port) == address


@pytest.mark.parametrize(
    "listen, join",
    [("127.0.0.1:6443", "127.0.0.1:6444"), ("127.0.0.1:0", "127.0.0.1:0"), ("[::]:80", "[::]:81")],
)
def test_default_join_listen(listen, join):
    assert default_join_listen(listen) == join


def test_reissue_reason():
    ca = pki.CertificateAuthority.create()
    key, cert = ca.issue("pymaster", "", ["localhost"], 3000, server=True, client=False)
    fine = {"common_name": "pymaster", "organization": "", "sans": ["localhost"]}
    assert tls.reissue_reason(cert, key, ca, **fine) is None
    assert tls.reissue_reason(None, key, ca, **fine) == "missing"
    assert tls.reissue_reason(b"junk", key, ca, **fine) == "unreadable or issued by another CA"
    other_key, other = pki.CertificateAuthority.create().issue("pymaster", "", ["localhost"], 3000)
    assert tls.reissue_reason(other, other_key, ca, **fine) == "unreadable or issued by another CA"
    assert tls.reissue_reason(cert, pki.key_to_pem(pki.generate_key()), ca, **fine) == "key does not match"
    assert tls.reissue_reason(cert, key, ca, **{**fine, "common_name": "x"}) == "another subject"
    assert tls.reissue_reason(cert, key, ca, **{**fine, "sans": ["localhost", "10.0.0.1"]}) == (
        "missing SANs ['10.0.0.1']"
    )
    # 3000 s + 300 s backdating: less than a third (1100 s) left from 1900 s on.
    now = datetime.datetime.now(datetime.UTC)
    assert tls.reissue_reason(cert, key, ca, **fine, now=now + datetime.timedelta(seconds=1800)) is None
    assert tls.reissue_reason(cert, key, ca, **fine, now=now + datetime.timedelta(seconds=2000)) == "expiring"


def test_master_pki_renews_its_serving_certificate(tmp_path, monkeypatch):
    master_pki = tls.MasterPKI(tmp_path)
    first = (tmp_path / "pki/server.crt").read_bytes()
    assert tls.MasterPKI(tmp_path).server_sans == master_pki.server_sans  # reused
    assert (tmp_path / "pki/server.crt").read_bytes() == first
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300)
    assert master_pki._server.refresh() is False  # the fast path: not due yet
    monkeypatch.setattr(tls, "_now", lambda: later)
    assert master_pki._server.refresh() is True  # what the TLS handshake's fetcher calls
    assert (tmp_path / "pki/server.crt").read_bytes() != first
