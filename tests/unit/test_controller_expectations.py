"""Expectations (client-go's ControllerExpectations and UID tracking) with a fake clock."""

from __future__ import annotations

from pymaster.controllers.expectations import EXPECTATIONS_TIMEOUT, Expectations


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_record_is_satisfied() -> None:
    assert Expectations().satisfied("ns/rs")
    assert Expectations().pending("ns/rs") is None


def test_creations_are_satisfied_once_all_are_observed() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect("ns/rs", adds=3)
    for _ in range(2):
        exp.creation_observed("ns/rs")
        assert not exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    assert exp.satisfied("ns/rs")
    assert exp.pending("ns/rs") == (0, 0)
    exp.creation_observed("ns/rs")  # an extra sighting (someone else's pod) keeps it satisfied
    assert exp.satisfied("ns/rs")


def test_a_failed_create_is_taken_back_with_lower() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect("ns/rs", adds=2, deletes=1)
    exp.creation_observed("ns/rs")
    exp.lower("ns/rs", adds=1)  # the second create failed: it will never be seen
    assert not exp.satisfied("ns/rs")  # the deletion is still awaited
    exp.deletion_observed("ns/rs")
    assert exp.satisfied("ns/rs")


def test_expect_replaces_the_record() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect("ns/rs", adds=5)
    exp.expect("ns/rs", deletes=1)
    assert exp.pending("ns/rs") == (0, 1)


def test_a_record_older_than_the_ttl_is_satisfied() -> None:
    clock = FakeClock()
    exp = Expectations(clock=clock)
    assert exp.ttl == EXPECTATIONS_TIMEOUT == 300.0
    exp.expect("ns/rs", adds=1)
    clock.now += 300.0
    assert not exp.satisfied("ns/rs")
    clock.now += 0.5
    assert exp.satisfied("ns/rs")
    exp.expect("ns/rs", adds=1)  # a new expectation starts a new ttl
    assert not exp.satisfied("ns/rs")


def test_delete_forgets_the_key_and_observations_without_a_record_are_ignored() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect("ns/rs", adds=1)
    exp.delete("ns/rs")
    assert exp.satisfied("ns/rs")
    exp.creation_observed("ns/rs")
    exp.deletion_observed("ns/rs", "uid-1")
    exp.lower("ns/rs", adds=1)
    assert exp.pending("ns/rs") is None


def test_deletions_tracked_by_uid_count_each_uid_once() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect_deletions("ns/rs", ["uid-1", "uid-2"])
    assert exp.pending("ns/rs") == (0, 2)
    exp.deletion_observed("ns/rs", "uid-1")
    exp.deletion_observed("ns/rs", "uid-1")  # the same pod seen deleted again (watch, then relist)
    exp.deletion_observed("ns/rs", "uid-9")  # a deletion the controller did not ask for
    assert not exp.satisfied("ns/rs")
    assert exp.pending("ns/rs") == (0, 1)
    exp.deletion_observed("ns/rs", "uid-2")
    assert exp.satisfied("ns/rs")


def test_a_uid_on_a_counted_record_counts_plainly() -> None:
    exp = Expectations(clock=FakeClock())
    exp.expect("ns/rs", deletes=1)
    exp.deletion_observed("ns/rs", "uid-1")
    assert exp.satisfied("ns/rs")
