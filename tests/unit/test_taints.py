"""Table tests of taint/toleration matching (Kubernetes' ToleratesTaint) and the reasons and
notation built on it."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.taints import format_taint, tolerates, untolerated, untolerated_reason

Taint, Toleration = objects_pb2.Taint, objects_pb2.Toleration
DB = Taint(key="dedicated", value="db", effect="NoSchedule")


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        (Toleration(key="dedicated", value="db"), True),  # Equal by default, any effect
        (Toleration(key="dedicated", operator="Equal", value="db", effect="NoSchedule"), True),
        (Toleration(key="dedicated", value="web"), False),
        (Toleration(key="dedicated"), False),  # Equal with an empty value
        (Toleration(key="dedicated", operator="Exists"), True),
        (Toleration(key="other", operator="Exists"), False),
        (Toleration(key="dedicated", operator="Exists", effect="NoExecute"), False),
        (Toleration(operator="Exists"), True),  # empty key + Exists: every taint
        (Toleration(operator="Exists", effect="PreferNoSchedule"), False),
        (Toleration(key="dedicated", operator="Bogus", value="db"), False),
    ],
)
def test_tolerates(toleration, expected):
    assert tolerates(toleration, DB) is expected


def test_untolerated_considers_only_the_given_effects_and_returns_the_first():
    taints = [Taint(key="soft", effect="PreferNoSchedule"), Taint(key="a", effect="NoExecute"), DB]
    assert untolerated(taints, []) == taints[1]
    assert untolerated(taints, [Toleration(key="a", operator="Exists")]) == DB
    assert untolerated(taints, [Toleration(operator="Exists")]) is None
    assert untolerated(taints, [], effects=("PreferNoSchedule",)) == taints[0]


def test_reason_and_kubectl_notation():
    assert untolerated_reason(DB) == "node(s) had untolerated taint {dedicated: db}"
    assert untolerated_reason(Taint(key="k", effect="NoExecute")) == "node(s) had untolerated taint {k: }"
    assert format_taint(DB) == "dedicated=db:NoSchedule"
    assert format_taint(Taint(key="k", effect="NoExecute")) == "k:NoExecute"
