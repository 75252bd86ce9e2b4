"""Label and field selectors with Kubernetes' syntax and semantics.

Label selectors: comma-separated requirements, all of which must hold::

    app=web   app==web   tier!=db   app   !app   env in (prod,staging)   env notin (dev)

``!=`` and ``notin`` also match objects without the label, as in Kubernetes. The empty selector
matches everything.

Field selectors: comma-separated ``field=value``, ``field==value`` or ``field!=value`` over a
few fields per kind, read off the proto objects::

    pods:       metadata.name, metadata.namespace, spec.nodeName, status.phase
    nodes:      metadata.name, spec.unschedulable ("true"/"false")
    events:     metadata.name, metadata.namespace, involvedObject.*, reason, type, source ...
    configmaps: metadata.name, metadata.namespace
    secrets:    metadata.name, metadata.namespace, type
    workloads, services, endpointslices: metadata.name, metadata.namespace

Kubernetes' backslash escapes in field selector values are not supported: no supported field
can hold a comma or an equals sign.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from pymaster.api.checks import check_label_value, check_qualified_name
from pymaster.api.errors import ValidationError

# ---- label selectors ----

# A token is an operator or punctuation, or an identifier: a run of anything else but whitespace.
_TOKEN = re.compile(r"==|!=|=|!|\(|\)|,|[^\s=!(),]+")
_OPERATORS = frozenset({"==", "!=", "=", "!", "(", ")", ","})


@dataclass(frozen=True)
class Requirement:
    """One requirement: ``operator`` is one of "=", "!=", "in", "notin", "exists", "!"."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` (a dict or a proto map) satisfies the requirement."""
        # `in` before indexing: indexing a proto map with a missing key would insert it.
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=", "notin"


def _tokenize(s: str) -> list[tuple[str, str]]:
    """(kind, text) tokens, kind "op" or "ident"; whitespace only separates."""
    return [("op" if t in _OPERATORS else "ident", t) for t in _TOKEN.findall(s)]


class _LabelParser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def error(self, message: str) -> ValidationError:
        return ValidationError("labelSelector", f"invalid selector {self.text!r}: {message}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str] | None:
        token = self.peek()
        self.pos += 1
        return token

    def key(self) -> str:
        token = self.take()
        if token is None or token[0] != "ident":
            found = "end of selector" if token is None else repr(token[1])
            raise self.error(f"expected a label key, found {found}")
        try:
            check_qualified_name("labelSelector", token[1])
        except ValidationError as e:
            raise self.error(e.detail) from None
        return token[1]

    def value(self) -> str:
        """A value; empty when the next token is not an identifier (``a=`` means a is "")."""
        token = self.peek()
        if token is None or token[0] != "ident":
            return ""
        self.pos += 1
        try:
            check_label_value("labelSelector", token[1])
        except ValidationError as e:
            raise self.error(e.detail) from None
        return token[1]

    def value_set(self) -> frozenset[str]:
        if self.take() != ("op", "("):
            raise self.error("expected '(' after in/notin")
        if self.peek() == ("op", ")"):
            raise self.error("the value set of in/notin must not be empty")
        values = {self.value()}
        while (token := self.take()) != ("op", ")"):
            if token != ("op", ","):
                raise self.error("expected ',' or ')' in a value set")
            values.add(self.value())
        return frozenset(values)

    def requirement(self) -> Requirement:
        if self.peek() == ("op", "!"):
            self.pos += 1
            return Requirement(self.key(), "!")
        key = self.key()
        token = self.peek()
        if token is None or token == ("op", ","):
            return Requirement(key, "exists")
        self.pos += 1
        if token in (("op", "="), ("op", "==")):
            return Requirement(key, "=", frozenset({self.value()}))
        if token == ("op", "!="):
            return Requirement(key, "!=", frozenset({self.value()}))
        if token in (("ident", "in"), ("ident", "notin")):
            return Requirement(key, token[1], self.value_set())
        raise self.error(f"unexpected {token[1]!r} after key {key!r}")

    def parse(self) -> tuple[Requirement, ...]:
        if not self.tokens:
            return ()
        requirements = [self.requirement()]
        while (token := self.take()) is not None:
            if token != ("op", ","):
                raise self.error(f"expected ',' before {token[1]!r}")
            requirements.append(self.requirement())
        return tuple(requirements)


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; every requirement must hold."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, s: str) -> LabelSelector:
        """Parse a selector such as ``app=web,tier in (front,back),!canary``.

        Raises:
            ValidationError: on field ``labelSelector``, saying what is wrong.
        """
        return cls(_LabelParser(s).parse())

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` (a dict or a proto map such as ``pod.metadata.labels``) match."""
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """Whether the selector has no requirement and so matches everything."""
        return not self.requirements


# ---- field selectors ----

_POD_FIELDS: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda obj: obj.metadata.name,
    "metadata.namespace": lambda obj: obj.metadata.namespace,
    "spec.nodeName": lambda obj: obj.spec.node_name,
    "status.phase": lambda obj: obj.status.phase,
}
_NODE_FIELDS: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda obj: obj.metadata.name,
    "spec.unschedulable": lambda obj: "true" if obj.spec.unschedulable else "false",
}
_EVENT_FIELDS: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda obj: obj.metadata.name,
    "metadata.namespace": lambda obj: obj.metadata.namespace,
    "involvedObject.kind": lambda obj: obj.involved_object.kind,
    "involvedObject.namespace": lambda obj: obj.involved_object.namespace,
    "involvedObject.name": lambda obj: obj.involved_object.name,
    "involvedObject.uid": lambda obj: obj.involved_object.uid,
    "involvedObject.fieldPath": lambda obj: obj.involved_object.field_path,
    "reason": lambda obj: obj.reason,
    "type": lambda obj: obj.type,
    "source": lambda obj: obj.source.component,
    "reportingComponent": lambda obj: obj.reporting_component,
}
_CONFIG_MAP_FIELDS: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda obj: obj.metadata.name,
    "metadata.namespace": lambda obj: obj.metadata.namespace,
}
_SECRET_FIELDS: dict[str, Callable[[Any], str]] = {**_CONFIG_MAP_FIELDS, "type": lambda obj: obj.type}
# Every kind supports metadata.name and metadata.namespace (Kubernetes' default field set).
_OBJECT_FIELDS = _CONFIG_MAP_FIELDS
_JOB_FIELDS: dict[str, Callable[[Any], str]] = {
    **_OBJECT_FIELDS, "status.successful": lambda obj: str(obj.status.succeeded),
}
# By store kind and by message type, so that parse() can check names and matches() read them.
_FIELDS_BY_KIND = {
    "pods": _POD_FIELDS, "nodes": _NODE_FIELDS, "events": _EVENT_FIELDS,
    "configmaps": _CONFIG_MAP_FIELDS, "secrets": _SECRET_FIELDS,
    "replicasets": _OBJECT_FIELDS, "deployments": _OBJECT_FIELDS, "daemonsets": _OBJECT_FIELDS,
    "jobs": _JOB_FIELDS, "services": _OBJECT_FIELDS, "endpointslices": _OBJECT_FIELDS,
}
_FIELDS_BY_TYPE = {
    "pykube.v1.Pod": ("Pod", _POD_FIELDS),
    "pykube.v1.Node": ("Node", _NODE_FIELDS),
    "pykube.v1.Event": ("Event", _EVENT_FIELDS),
    "pykube.v1.ConfigMap": ("ConfigMap", _CONFIG_MAP_FIELDS),
    "pykube.v1.Secret": ("Secret", _SECRET_FIELDS),
    "pykube.v1.ReplicaSet": ("ReplicaSet", _OBJECT_FIELDS),
    "pykube.v1.Deployment": ("Deployment", _OBJECT_FIELDS),
    "pykube.v1.DaemonSet": ("DaemonSet", _OBJECT_FIELDS),
    "pykube.v1.Job": ("Job", _JOB_FIELDS),
    "pykube.v1.Service": ("Service", _OBJECT_FIELDS),
    "pykube.v1.EndpointSlice": ("EndpointSlice", _OBJECT_FIELDS),
}
_FIELD_TERM = re.compile(r"\s*(?P<field>[^\s=!]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s=!]*)\s*")


@dataclass(frozen=True)
class FieldTerm:
    """``field op value``; ``op`` is "=" or "!="."""

    field: str
    operator: str
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector; every term must hold."""

    terms: tuple[FieldTerm, ...] = ()

    @classmethod
    def parse(cls, s: str, kind: str | None = None) -> FieldSelector:
        """Parse a selector such as ``spec.nodeName=node-1,status.phase!=Running``.

        Args:
            s: the selector; "" matches everything.
            kind: "pods", "nodes" ... to accept only that kind's fields; None accepts the fields
                of any kind (``matches`` then rejects a field the object does not have).

        Raises:
            ValidationError: on field ``fieldSelector``: bad syntax or an unsupported field.
        """
        if kind is None:
            supported: dict[str, Any] = {f: g for by in _FIELDS_BY_KIND.values() for f, g in by.items()}
        elif kind in _FIELDS_BY_KIND:
            supported = _FIELDS_BY_KIND[kind]
        else:
            raise ValidationError("fieldSelector", f"field selectors are not supported for {kind}")
        terms = []
        for part in s.split(",") if s.strip() else ():
            match = _FIELD_TERM.fullmatch(part)
            if match is None:
                raise ValidationError(
                    "fieldSelector", f"invalid selector {s!r}: expected field=value or field!=value"
                )
            if match["field"] not in supported:
                raise ValidationError(
                    "fieldSelector",
                    f"field label not supported: {match['field']}; supported: {', '.join(supported)}",
                )
            operator = "!=" if match["op"] == "!=" else "="
            terms.append(FieldTerm(match["field"], operator, match["value"]))
        return cls(tuple(terms))

    def matches(self, obj: Message) -> bool:
        """Whether an object (a Pod, a Node ...) satisfies every term.

        Raises:
            ValidationError: on field ``fieldSelector``, when the selector names a field that
                this kind of object does not support (parse without ``kind`` allows that).
        """
        if not self.terms:
            return True
        kind, fields = _FIELDS_BY_TYPE.get(obj.DESCRIPTOR.full_name, (obj.DESCRIPTOR.name, {}))
        for term in self.terms:
            getter = fields.get(term.field)
            if getter is None:
                raise ValidationError("fieldSelector", f"field label not supported for {kind}: {term.field}")
            if (getter(obj) == term.value) != (term.operator == "="):
                return False
        return True

    def empty(self) -> bool:
        """Whether the selector has no term and so matches everything."""
        return not self.terms
