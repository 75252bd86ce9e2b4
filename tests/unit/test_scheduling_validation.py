"""Table tests of the validation of a pod's scheduling fields (affinity, topology spread
constraints, scheduling gates, priorityClassName) and node taints, with Kubernetes' wording."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.manifest import from_dict
from pymaster.api.scheduling_validation import check_scheduling, check_taints

NA = "spec.affinity.nodeAffinity"
REQ = f"{NA}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
PA = "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
TSC = "spec.topologySpreadConstraints"


def _spec(**fields) -> objects_pb2.PodSpec:
    return from_dict({"containers": [{"name": "app", "image": "busybox"}], **fields}, objects_pb2.PodSpec)


def _node_required(*expressions: dict, fields: tuple[dict, ...] = ()) -> dict:
    term = {"matchExpressions": list(expressions)}
    if fields:
        term["matchFields"] = list(fields)
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def _anti(term: dict) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def _spread(*constraints: dict) -> list[dict]:
    return [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", **c} for c in constraints
    ]


def _expr(key: str, operator: str, *values: str) -> dict:
    return {"key": key, "operator": operator, "values": list(values)}


VALID = [
    {
        "affinity": _node_required(
            _expr("zone", "In", "a"),
            _expr("gpu", "Exists"),
            _expr("cores", "Gt", "4"),
            fields=(_expr("metadata.name", "NotIn", "n1"),),
        )
    },
    {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [_expr("zone", "In", "a")]}}
                ]
            }
        }
    },
    {
        "affinity": _anti(
            {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app": "web"}},
                "namespaces": ["other"],
                "namespaceSelector": {},
                "matchLabelKeys": ["rev"],
            }
        )
    },
    {
        "affinity": {
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "podAffinityTerm": {
                            "topologyKey": "zone",
                            "labelSelector": {"matchExpressions": [_expr("app", "NotIn", "db")]},
                        },
                    }
                ]
            }
        }
    },
    {
        "topologySpreadConstraints": _spread(
            {
                "labelSelector": {"matchLabels": {"app": "web"}},
                "minDomains": 2,
                "nodeAffinityPolicy": "Ignore",
                "nodeTaintsPolicy": "Honor",
                "matchLabelKeys": ["rev"],
            },
            {"whenUnsatisfiable": "ScheduleAnyway"},
        )
    },
    {"schedulingGates": [{"name": "example.com/quota"}, {"name": "ready"}]},
    {"priorityClassName": "system-node-critical"},
]


@pytest.mark.parametrize("fields", VALID)
def test_valid(fields):
    check_scheduling(_spec(**fields))


INVALID = [
    (
        {"affinity": _node_required(_expr("zone", "Foo", "a"))},
        f'{REQ}[0].matchExpressions[0].operator: Unsupported value: "Foo": supported values: "DoesNotExist", '
        '"Exists", "Gt", "In", "Lt", "NotIn"',
    ),
    (
        {"affinity": _node_required(_expr("zone", "In"))},
        f"{REQ}[0].matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'",
    ),
    (
        {"affinity": _node_required(_expr("zone", "Exists", "a"))},
        f"{REQ}[0].matchExpressions[0].values: Forbidden: "
        "may not be specified when `operator` is 'Exists' or "
        "'DoesNotExist'",
    ),
    (
        {"affinity": _node_required(_expr("cores", "Gt", "1", "2"))},
        f"{REQ}[0].matchExpressions[0].values: Required value: "
        "must be specified single value when `operator` is "
        "'Lt' or 'Gt'",
    ),
    (
        {"affinity": _node_required(_expr("cores", "Lt", "x"))},
        f'{REQ}[0].matchExpressions[0].values[0]: Invalid value: "x": must be an integer when `operator` is '
        "'Lt' or 'Gt'",
    ),
    (
        {"affinity": _node_required(_expr("bad key!", "Exists"))},
        f"{REQ}[0].matchExpressions[0].key: invalid key",
    ),
    (
        {"affinity": _node_required(fields=(_expr("metadata.labels", "In", "x"),))},
        f'{REQ}[0].matchFields[0].key: Unsupported value: "metadata.labels": '
        'supported values: "metadata.name"',
    ),
    (
        {"affinity": _node_required(fields=(_expr("metadata.name", "Exists"),))},
        f'{REQ}[0].matchFields[0].operator: Unsupported value: "Exists"',
    ),
    (
        {"affinity": _node_required(fields=(_expr("metadata.name", "In", "a", "b"),))},
        f"{REQ}[0].matchFields[0].values: Required value: must be only one value",
    ),
    (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
        f"{REQ}: Required value: must have at least one node selector term",
    ),
    (
        {
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]
                }
            }
        },
        f"{NA}.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
        "Invalid value: 0: must be in the range 1-100",
    ),
    ({"affinity": _anti({"labelSelector": {}})}, f"{PA}[0].topologyKey: Required value: can not be empty"),
    ({"affinity": _anti({"topologyKey": "a b"})}, f"{PA}[0].topologyKey: invalid key"),
    (
        {
            "affinity": _anti(
                {"topologyKey": "zone", "labelSelector": {"matchExpressions": [_expr("app", "Gt", "1")]}}
            )
        },
        f'{PA}[0].labelSelector.matchExpressions[0].operator: Unsupported value: "Gt": supported values: '
        '"DoesNotExist", "Exists", "In", "NotIn"',
    ),
    (
        {"affinity": _anti({"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "a b"}}})},
        f"{PA}[0].labelSelector.matchLabels.app: invalid value",
    ),
    (
        {"affinity": _anti({"topologyKey": "zone", "namespaces": ["Bad"]})},
        f"{PA}[0].namespaces[0]: invalid value",
    ),
    (
        {"affinity": _anti({"topologyKey": "zone", "matchLabelKeys": ["rev"]})},
        f"{PA}[0].matchLabelKeys: Forbidden: must not be specified when labelSelector is not set",
    ),
    (
        {
            "affinity": _anti(
                {
                    "topologyKey": "zone",
                    "labelSelector": {},
                    "matchLabelKeys": ["rev"],
                    "mismatchLabelKeys": ["rev"],
                }
            )
        },
        f'{PA}[0].mismatchLabelKeys[0]: Invalid value: "rev": '
        "exists in both matchLabelKeys and mismatchLabelKeys",
    ),
    (
        {
            "affinity": {
                "podAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 101, "podAffinityTerm": {"topologyKey": "zone"}}
                    ]
                }
            }
        },
        "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
        "Invalid value: 101",
    ),
    (
        {"topologySpreadConstraints": _spread({"maxSkew": 0})},
        f"{TSC}[0].maxSkew: Invalid value: 0: must be greater than zero",
    ),
    (
        {"topologySpreadConstraints": _spread({"topologyKey": ""})},
        f"{TSC}[0].topologyKey: Required value: can not be empty",
    ),
    (
        {"topologySpreadConstraints": _spread({"whenUnsatisfiable": ""})},
        f'{TSC}[0].whenUnsatisfiable: Unsupported value: "": '
        'supported values: "DoNotSchedule", "ScheduleAnyway"',
    ),
    (
        {"topologySpreadConstraints": _spread({"minDomains": 0})},
        f"{TSC}[0].minDomains: Invalid value: 0: must be greater than zero",
    ),
    (
        {"topologySpreadConstraints": _spread({"minDomains": 2, "whenUnsatisfiable": "ScheduleAnyway"})},
        f"{TSC}[0].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, "
        "not ScheduleAnyway",
    ),
    (
        {"topologySpreadConstraints": _spread({}, {"maxSkew": 2})},
        f'{TSC}[1].{{topologyKey, whenUnsatisfiable}}: Duplicate value: "{{zone, DoNotSchedule}}"',
    ),
    (
        {"topologySpreadConstraints": _spread({"nodeAffinityPolicy": "honor"})},
        f'{TSC}[0].nodeAffinityPolicy: Unsupported value: "honor": supported values: "Honor", "Ignore"',
    ),
    (
        {"topologySpreadConstraints": _spread({"nodeTaintsPolicy": "Always"})},
        f'{TSC}[0].nodeTaintsPolicy: Unsupported value: "Always"',
    ),
    (
        {"topologySpreadConstraints": _spread({"matchLabelKeys": ["rev"]})},
        f"{TSC}[0].matchLabelKeys: Forbidden: must not be specified when labelSelector is not set",
    ),
    (
        {
            "topologySpreadConstraints": _spread(
                {"labelSelector": {"matchLabels": {"rev": "1"}}, "matchLabelKeys": ["rev"]}
            )
        },
        f'{TSC}[0].matchLabelKeys[0]: Invalid value: "rev": exists in both matchLabelKeys and labelSelector',
    ),
    ({"schedulingGates": [{"name": "a"}, {"name": "a"}]}, 'spec.schedulingGates[1]: Duplicate value: "a"'),
    ({"schedulingGates": [{"name": ""}]}, "spec.schedulingGates[0]: invalid key"),
    ({"priorityClassName": "High"}, 'spec.priorityClassName: invalid value "High"'),
]


@pytest.mark.parametrize(("fields", "message"), INVALID)
def test_invalid(fields, message):
    with pytest.raises(ValidationError) as caught:
        check_scheduling(_spec(**fields))
    assert str(caught.value).startswith(message)


def test_taints_unique_by_key_and_effect():
    taints = [
        objects_pb2.Taint(key="k", effect="NoSchedule"),
        objects_pb2.Taint(key="k", effect="NoSchedule"),
    ]
    with pytest.raises(ValidationError, match=r"spec.taints\[1\]: taints must be unique"):
        check_taints("spec.taints", taints)
