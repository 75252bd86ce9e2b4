"""Validation of the pod fields that steer scheduling (affinity, tolerations, topology spread,
scheduling gates, priority) and of node taints, with Kubernetes' rules and wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pymaster.api import objects_pb2
from pymaster.api.checks import (
    check_dns_label,
    check_dns_subdomain,
    check_enum,
    check_label_value,
    check_labels,
    check_qualified_name,
    quote,
)
from pymaster.api.errors import ValidationError
from pymaster.api.label_selectors import (
    DOES_NOT_EXIST,
    GT,
    IN,
    LABEL_SELECTOR_OPERATORS,
    LT,
    NODE_FIELDS,
    NODE_SELECTOR_OPERATORS,
    NOT_IN,
)
from pymaster.api.label_selectors import EXISTS as SELECTOR_EXISTS
from pymaster.api.taints import EFFECTS, EQUAL, EXISTS, NO_EXECUTE

TOLERATION_OPERATORS = (EQUAL, EXISTS)
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"
WHEN_UNSATISFIABLE = (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY)
NODE_INCLUSION_POLICIES = ("Honor", "Ignore")
_INTEGER = re.compile(r"[-+]?[0-9]+")


def check_taints(path: str, taints: Sequence[objects_pb2.Taint]) -> None:
    """Each taint: a qualified-name key, a label value, a known effect; no two with the same key
    and effect."""
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        entry = f"{path}[{i}]"
        if not taint.key:
            raise ValidationError(f"{entry}.key", "required")
        check_qualified_name(f"{entry}.key", taint.key)
        check_label_value(f"{entry}.value", taint.value)
        check_enum(f"{entry}.effect", taint.effect, EFFECTS, required=True)
        if (taint.key, taint.effect) in seen:
            raise ValidationError(
                entry, f"taints must be unique by key and effect pair: {quote(taint.key)}:{taint.effect}"
            )
        seen.add((taint.key, taint.effect))


def check_tolerations(path: str, tolerations: Sequence[objects_pb2.Toleration]) -> None:
    """Kubernetes' ValidateTolerations: a key (when set) is a qualified name; an empty key needs
    ``Exists``; ``Exists`` takes no value; tolerationSeconds only with NoExecute."""
    for i, toleration in enumerate(tolerations):
        entry = f"{path}[{i}]"
        if toleration.key:
            check_qualified_name(f"{entry}.key", toleration.key)
        elif toleration.operator != EXISTS:
            raise ValidationError(f"{entry}.operator", 'must be "Exists" when `key` is empty')
        check_enum(f"{entry}.operator", toleration.operator, TOLERATION_OPERATORS)
        if toleration.operator == EXISTS and toleration.value:
            raise ValidationError(f"{entry}.operator", 'value must be empty when `operator` is "Exists"')
        if toleration.operator != EXISTS:
            check_label_value(f"{entry}.value", toleration.value)
        check_enum(f"{entry}.effect", toleration.effect, EFFECTS)
        if toleration.HasField("toleration_seconds") and toleration.effect != NO_EXECUTE:
            raise ValidationError(
                f"{entry}.effect", "effect must be 'NoExecute' when `tolerationSeconds` is set"
            )


def check_scheduling(spec: objects_pb2.PodSpec) -> None:
    """The scheduling fields of a pod spec.

    Raises:
        ValidationError: the first problem found, with its field path.
    """
    check_tolerations("spec.tolerations", spec.tolerations)
    if spec.HasField("affinity"):
        check_affinity("spec.affinity", spec.affinity)
    check_topology_spread_constraints("spec.topologySpreadConstraints", spec.topology_spread_constraints)
    check_scheduling_gates("spec.schedulingGates", spec.scheduling_gates)
    if spec.priority_class_name:
        check_dns_subdomain("spec.priorityClassName", spec.priority_class_name)


def _unsupported(path: str, value: str, supported: Iterable[str]) -> ValidationError:
    """Kubernetes' NotSupported error."""
    return ValidationError(
        path, f"Unsupported value: {quote(value)}: supported values: {', '.join(quote(v) for v in supported)}"
    )


def _invalid(path: str, value: str | int, message: str) -> ValidationError:
    """Kubernetes' Invalid error."""
    shown = quote(value) if isinstance(value, str) else str(value)
    return ValidationError(path, f"Invalid value: {shown}: {message}")


def check_label_selector(path: str, selector: objects_pb2.LabelSelector) -> None:
    """metav1's ValidateLabelSelector: valid matchLabels, and expressions whose values suit their
    operator (In/NotIn need some, Exists/DoesNotExist none)."""
    check_labels(f"{path}.matchLabels", selector.match_labels)
    for i, requirement in enumerate(selector.match_expressions):
        entry = f"{path}.matchExpressions[{i}]"
        if requirement.operator not in LABEL_SELECTOR_OPERATORS:
            raise _unsupported(f"{entry}.operator", requirement.operator, LABEL_SELECTOR_OPERATORS)
        _check_values(entry, requirement)
        check_qualified_name(f"{entry}.key", requirement.key)
        for j, value in enumerate(requirement.values):
            check_label_value(f"{entry}.values[{j}]", value)


def _check_values(entry: str, requirement) -> None:
    operator, values = requirement.operator, requirement.values
    if operator in (IN, NOT_IN) and not values:
        raise ValidationError(
            f"{entry}.values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"
        )
    if operator in (SELECTOR_EXISTS, DOES_NOT_EXIST) and values:
        raise ValidationError(
            f"{entry}.values", "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        )
    if operator in (GT, LT):
        if len(values) != 1:
            raise ValidationError(
                f"{entry}.values",
                "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
            )
        if not _INTEGER.fullmatch(values[0]):
            raise _invalid(
                f"{entry}.values[0]", values[0], "must be an integer when `operator` is 'Lt' or 'Gt'"
            )


def check_node_selector_term(path: str, term: objects_pb2.NodeSelectorTerm) -> None:
    """A NodeSelectorTerm: label requirements with the node operators, and field requirements on
    ``metadata.name`` only, with In or NotIn and exactly one value."""
    for i, requirement in enumerate(term.match_expressions):
        entry = f"{path}.matchExpressions[{i}]"
        if requirement.operator not in NODE_SELECTOR_OPERATORS:
            raise _unsupported(f"{entry}.operator", requirement.operator, NODE_SELECTOR_OPERATORS)
        _check_values(entry, requirement)
        check_qualified_name(f"{entry}.key", requirement.key)
    for i, requirement in enumerate(term.match_fields):
        entry = f"{path}.matchFields[{i}]"
        if requirement.key not in NODE_FIELDS:
            raise _unsupported(f"{entry}.key", requirement.key, NODE_FIELDS)
        if requirement.operator not in (IN, NOT_IN):
            raise _unsupported(f"{entry}.operator", requirement.operator, (IN, NOT_IN))
        if len(requirement.values) != 1:
            raise ValidationError(
                f"{entry}.values",
                "Required value: must be only one value when `operator` is 'In' or 'NotIn' "
                "for node field selector",
            )


def _check_weight(path: str, weight: int) -> None:
    if not 1 <= weight <= 100:
        raise _invalid(path, weight, "must be in the range 1-100")


def check_affinity(path: str, affinity: objects_pb2.Affinity) -> None:
    """Node affinity, pod affinity and pod anti-affinity, with Kubernetes' rules."""
    if affinity.HasField("node_affinity"):
        node = affinity.node_affinity
        node_path = f"{path}.nodeAffinity"
        if node.HasField("required_during_scheduling_ignored_during_execution"):
            required = f"{node_path}.requiredDuringSchedulingIgnoredDuringExecution"
            terms = node.required_during_scheduling_ignored_during_execution.node_selector_terms
            if not terms:
                raise ValidationError(
                    f"{required}.nodeSelectorTerms",
                    "Required value: must have at least one node selector term",
                )
            for i, term in enumerate(terms):
                check_node_selector_term(f"{required}.nodeSelectorTerms[{i}]", term)
        for i, preferred in enumerate(node.preferred_during_scheduling_ignored_during_execution):
            entry = f"{node_path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _check_weight(f"{entry}.weight", preferred.weight)
            check_node_selector_term(f"{entry}.preference", preferred.preference)
    for field, name in (("pod_affinity", "podAffinity"), ("pod_anti_affinity", "podAntiAffinity")):
        if affinity.HasField(field):
            pod_affinity = getattr(affinity, field)
            pod_path = f"{path}.{name}"
            for i, term in enumerate(pod_affinity.required_during_scheduling_ignored_during_execution):
                check_pod_affinity_term(
                    f"{pod_path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term
                )
            for i, weighted in enumerate(pod_affinity.preferred_during_scheduling_ignored_during_execution):
                entry = f"{pod_path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
                _check_weight(f"{entry}.weight", weighted.weight)
                check_pod_affinity_term(f"{entry}.podAffinityTerm", weighted.pod_affinity_term)


def check_pod_affinity_term(path: str, term: objects_pb2.PodAffinityTerm) -> None:
    """Selectors, namespaces, a topologyKey (a label name), and matchLabelKeys /
    mismatchLabelKeys (label names, only with a labelSelector, not both for one key)."""
    if term.HasField("label_selector"):
        check_label_selector(f"{path}.labelSelector", term.label_selector)
    if term.HasField("namespace_selector"):
        check_label_selector(f"{path}.namespaceSelector", term.namespace_selector)
    for i, namespace in enumerate(term.namespaces):
        check_dns_label(f"{path}.namespaces[{i}]", namespace)
    if not term.topology_key:
        raise ValidationError(f"{path}.topologyKey", "Required value: can not be empty")
    check_qualified_name(f"{path}.topologyKey", term.topology_key)
    for field, keys in (
        ("matchLabelKeys", term.match_label_keys),
        ("mismatchLabelKeys", term.mismatch_label_keys),
    ):
        if keys and not term.HasField("label_selector"):
            raise ValidationError(
                f"{path}.{field}", "Forbidden: must not be specified when labelSelector is not set"
            )
        for i, key in enumerate(keys):
            check_qualified_name(f"{path}.{field}[{i}]", key)
    both = set(term.match_label_keys)
    for i, key in enumerate(term.mismatch_label_keys):
        if key in both:
            raise _invalid(
                f"{path}.mismatchLabelKeys[{i}]", key, "exists in both matchLabelKeys and mismatchLabelKeys"
            )


def check_topology_spread_constraints(
    path: str, constraints: Sequence[objects_pb2.TopologySpreadConstraint]
) -> None:
    """Kubernetes' validateTopologySpreadConstraints."""
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        entry = f"{path}[{i}]"
        if c.max_skew <= 0:
            raise _invalid(f"{entry}.maxSkew", c.max_skew, "must be greater than zero")
        if not c.topology_key:
            raise ValidationError(f"{entry}.topologyKey", "Required value: can not be empty")
        check_qualified_name(f"{entry}.topologyKey", c.topology_key)
        if c.when_unsatisfiable not in WHEN_UNSATISFIABLE:
            raise _unsupported(f"{entry}.whenUnsatisfiable", c.when_unsatisfiable, WHEN_UNSATISFIABLE)
        if c.HasField("min_domains"):
            if c.min_domains <= 0:
                raise _invalid(f"{entry}.minDomains", c.min_domains, "must be greater than zero")
            if c.when_unsatisfiable != DO_NOT_SCHEDULE:
                raise _invalid(
                    f"{entry}.minDomains",
                    c.min_domains,
                    f"can only use minDomains if whenUnsatisfiable={DO_NOT_SCHEDULE}, "
                    f"not {c.when_unsatisfiable}",
                )
        pair = (c.topology_key, c.when_unsatisfiable)
        if pair in seen:
            raise ValidationError(
                f"{entry}.{{topologyKey, whenUnsatisfiable}}", f'Duplicate value: "{{{pair[0]}, {pair[1]}}}"'
            )
        seen.add(pair)
        if c.HasField("label_selector"):
            check_label_selector(f"{entry}.labelSelector", c.label_selector)
        for field, policy in (
            ("nodeAffinityPolicy", c.node_affinity_policy),
            ("nodeTaintsPolicy", c.node_taints_policy),
        ):
            if policy and policy not in NODE_INCLUSION_POLICIES:
                raise _unsupported(f"{entry}.{field}", policy, NODE_INCLUSION_POLICIES)
        _check_spread_match_label_keys(f"{entry}.matchLabelKeys", c)


def _check_spread_match_label_keys(path: str, c: objects_pb2.TopologySpreadConstraint) -> None:
    if not c.match_label_keys:
        return
    if not c.HasField("label_selector"):
        raise ValidationError(path, "Forbidden: must not be specified when labelSelector is not set")
    selector_keys = set(c.label_selector.match_labels) | {r.key for r in c.label_selector.match_expressions}
    for i, key in enumerate(c.match_label_keys):
        check_qualified_name(f"{path}[{i}]", key)
        if key in selector_keys:
            raise _invalid(f"{path}[{i}]", key, "exists in both matchLabelKeys and labelSelector")


def check_scheduling_gates(path: str, gates: Sequence[objects_pb2.PodSchedulingGate]) -> None:
    """Each gate's name is a qualified name, and no name is repeated."""
    seen: set[str] = set()
    for i, gate in enumerate(gates):
        check_qualified_name(f"{path}[{i}]", gate.name)
        if gate.name in seen:
            raise ValidationError(f"{path}[{i}]", f"Duplicate value: {quote(gate.name)}")
        seen.add(gate.name)


def check_tolerations_update(
    old: Sequence[objects_pb2.Toleration], new: Sequence[objects_pb2.Toleration]
) -> None:
    """Kubernetes' rule for a running pod's tolerations: they may be added, and an existing one's
    tolerationSeconds set or made shorter; none may be removed or otherwise changed."""
    unmatched = list(new)
    for toleration in old:
        match = next((t for t in unmatched if _same_toleration(t, toleration)), None)
        if match is None:
            raise ValidationError(
                "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
            )
        unmatched.remove(match)
        limit = toleration.toleration_seconds if toleration.HasField("toleration_seconds") else None
        seconds = match.toleration_seconds if match.HasField("toleration_seconds") else None
        if limit is not None and (seconds is None or seconds > limit):
            raise ValidationError(
                "spec.tolerations", "tolerationSeconds of an existing toleration may only be made shorter"
            )


def _same_toleration(a: objects_pb2.Toleration, b: objects_pb2.Toleration) -> bool:
    return (a.key, a.operator or EQUAL, a.value, a.effect) == (b.key, b.operator or EQUAL, b.value, b.effect)


def check_scheduling_gates_update(
    old: Sequence[objects_pb2.PodSchedulingGate], new: Sequence[objects_pb2.PodSchedulingGate]
) -> None:
    """Scheduling gates may only be removed (Kubernetes: a pod's gates only ever shrink)."""
    before = {gate.name for gate in old}
    for gate in new:
        if gate.name not in before:
            raise ValidationError(
                "spec.schedulingGates",
                f"only deletion is allowed, but found new scheduling gate '{gate.name}'",
            )
