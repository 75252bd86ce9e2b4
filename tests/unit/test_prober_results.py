"""The prober's pure parts: the threshold state machine of one probe (kubelet's worker.go rules),
the defaults for zero fields, and port resolution (numbers, names, digit strings)."""

from __future__ import annotations

import pytest

from pykubelet.prober.results import Outcome, ProbeState, ProbeType, Result, Timing
from pykubelet.prober.targets import PortError, resolve_port
from pymaster.api import objects_pb2

OK, FAIL, UNKNOWN = Outcome(Result.SUCCESS), Outcome(Result.FAILURE, "boom"), Outcome(Result.UNKNOWN, "?")
WARN = Outcome(Result.WARNING, "Probe terminated redirects")


def state(probe_type: ProbeType, success: int = 1, failure: int = 3) -> ProbeState:
    probe = objects_pb2.Probe(success_threshold=success, failure_threshold=failure)
    return ProbeState(probe_type, Timing.of(probe))


def run(st: ProbeState, outcomes: list[Outcome]) -> list[tuple[bool, bool]]:
    """(flipped, success) after each outcome."""
    return [(st.record(o), st.success) for o in outcomes]


def test_initial_results_follow_the_kubelet():
    assert not state(ProbeType.READINESS).success  # not ready until the first success
    assert state(ProbeType.LIVENESS).success  # alive until proven dead
    startup = state(ProbeType.STARTUP)
    assert (startup.result, startup.success) == (None, False)


def test_readiness_flips_after_thresholds_and_back():
    st = state(ProbeType.READINESS, success=2, failure=3)
    assert run(st, [OK, FAIL, OK, OK]) == [(False, False), (False, False), (False, False), (True, True)]
    assert run(st, [FAIL, FAIL, OK, FAIL, FAIL, FAIL]) == [
        (False, True), (False, True), (False, True), (False, True), (False, True), (True, False)
    ]
    assert not st.done  # readiness never stops


def test_readiness_first_failures_do_not_flip_an_initial_failure():
    st = state(ProbeType.READINESS, failure=1)
    assert run(st, [FAIL, FAIL]) == [(False, False), (False, False)]


def test_unknown_is_thrown_away_and_warning_counts_as_success():
    st = state(ProbeType.READINESS, success=2)
    assert run(st, [OK, UNKNOWN, WARN]) == [(False, False), (False, False), (True, True)]
    st = state(ProbeType.LIVENESS, failure=2)
    assert run(st, [FAIL, UNKNOWN, FAIL]) == [(False, True), (False, True), (True, False)]


def test_liveness_goes_on_hold_at_failure_threshold():
    st = state(ProbeType.LIVENESS, failure=3)
    assert run(st, [FAIL, FAIL, OK, FAIL, FAIL]) == [(False, True)] * 5
    assert st.record(FAIL)
    assert (st.success, st.on_hold, st.done) == (False, True, True)
    assert not st.record(OK)  # nothing counts until a new container replaces this one
    assert not st.success


def test_startup_is_done_once_it_succeeded_and_on_hold_once_it_failed():
    st = state(ProbeType.STARTUP, failure=2)
    assert run(st, [FAIL, OK]) == [(False, False), (True, True)]
    assert st.done
    assert not st.record(FAIL) and st.success
    st = state(ProbeType.STARTUP, failure=2)
    assert run(st, [FAIL, FAIL]) == [(False, False), (True, False)]
    assert st.on_hold


def test_zero_fields_take_the_kubelet_defaults():
    assert Timing.of(objects_pb2.Probe()) == Timing(0.0, 1.0, 10.0, 1, 3)
    probe = objects_pb2.Probe(initial_delay_seconds=2, timeout_seconds=5, period_seconds=3,
                              success_threshold=2, failure_threshold=7)
    assert Timing.of(probe) == Timing(2.0, 5.0, 3.0, 2, 7)


def container_with_ports() -> objects_pb2.Container:
    container = objects_pb2.Container(name="app")
    container.ports.add(name="http", container_port=8080)
    container.ports.add(name="grpc", container_port=50051)
    return container


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (objects_pb2.IntOrString(int_value=80), 80),
        (objects_pb2.IntOrString(str_value="http"), 8080),
        (objects_pb2.IntOrString(str_value="grpc"), 50051),
        (objects_pb2.IntOrString(str_value="9000"), 9000),  # digits: a number, as the kubelet does
    ],
)
def test_ports_by_number_or_name(port, expected):
    assert resolve_port(port, container_with_ports()) == expected


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (objects_pb2.IntOrString(str_value="metrics"), "port 'metrics' not found in the ports of container"),
        (objects_pb2.IntOrString(int_value=0), "invalid port number: 0"),
        (objects_pb2.IntOrString(int_value=70000), "invalid port number: 70000"),
        (objects_pb2.IntOrString(), "probe has no port"),
    ],
)
def test_bad_ports_are_refused_with_a_clear_message(port, message):
    with pytest.raises(PortError, match=message):
        resolve_port(port, container_with_ports())
