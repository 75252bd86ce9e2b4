"""The Kubernetes-shaped JSON/YAML form of API objects, and manifests to objects of any served kind.

``to_dict`` renders any API message with the proto's json names (``podIP``, ``containerID``),
int64 values as numbers, IntOrString values as a plain number or string (``port: 8080``, ``port:
http``) and RFC 3339 timestamps, empty fields omitted, keys in field order and map keys sorted,
which reads like kubectl (apiVersion, kind, metadata, spec, status).

``from_dict`` is strict like ``kubectl apply``: it walks the message descriptor itself so that an
unknown field or a wrong type is reported with its full path. Every unknown field of the data is
reported at once (``spec.containers[0].imagee: unknown field; spec.foo: unknown field``); a wrong
type stops at the first. A null value means "not set". Only json names are accepted, not the
proto's snake_case names. Bytes (a Secret's ``data``, a ConfigMap's ``binaryData``) are base64 in
both directions, as in Kubernetes; a Secret's ``stringData`` is plain text. Two leniencies follow
kubectl: quantity maps (resources, node capacity) take YAML numbers (``cpu: 1``, ``cpu: 0.5``)
and make them strings, and timestamps may be YAML's own (unquoted) timestamps as well as RFC 3339
strings.

``load`` reads multi-document YAML with a safe loader that also rejects duplicate keys (a second
``containers:`` would otherwise silently replace the first), maps each document's apiVersion and
kind to a served kind (``pymaster.api.kinds``) and checks it with that kind's validation, so a bad
manifest is reported before anything is sent. ``load_pods`` is ``load`` for Pods only.

Hostile input: ``load`` refuses text over ``MAX_MANIFEST_BYTES`` before parsing. YAML aliases
are allowed (Kubernetes allows them too) but bounded, against "billion laughs" documents whose few
bytes expand to billions of nodes: before a document is constructed its node graph is walked with
every alias expanded, and the stream fails once aliases have added ``MAX_ALIAS_NODES`` nodes or a
document nests deeper than ``MAX_DEPTH`` levels. Whatever the input (random text, random nested
dicts for ``from_dict``), the only exception raised is ``ValidationError`` with a path; user
values quoted in messages are cut short and escaped.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.checks import key_path
from pymaster.api.config_validation import validate_config_map, validate_secret
from pymaster.api.errors import ValidationError
from pymaster.api.kinds import CONFIG_MAPS, EVENTS, NODES, PODS, SECRETS, SERVED, Kind, kind_of_type
from pymaster.api.validation import validate_event, validate_node, validate_pod

M = TypeVar("M", bound=Message)

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
# Kubernetes quantities, where kubectl accepts a YAML number for the string: single fields...
_QUANTITY_FIELDS = frozenset(
    {"pykube.v1.ResourceFieldSelector.divisor", "pykube.v1.EmptyDirVolumeSource.size_limit"}
)
# ... and maps of them.
_QUANTITY_MAPS = frozenset(
    {
        "pykube.v1.ResourceRequirements.requests",
        "pykube.v1.ResourceRequirements.limits",
        "pykube.v1.NodeStatus.capacity",
        "pykube.v1.NodeStatus.allocatable",
    }
)
_TIMESTAMP = "google.protobuf.Timestamp"
_INT_OR_STRING = "pykube.v1.IntOrString"
_INT32_RANGE = _INT_RANGES[FieldDescriptor.TYPE_INT32]
_WELL_KNOWN_PREFIX = "google.protobuf."

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_ALIAS_NODES = 100_000  # nodes aliases may add to a stream, all documents together
MAX_DEPTH = 100  # nesting levels of one document, aliases expanded
_DESCRIBE_MAX = 256  # characters of a user's key or value quoted in a path or message
MAX_UNKNOWN_FIELDS = 20  # unknown fields named in one error; more are counted
# Far above any valid quantity, and below the size at which Python refuses str() of an int.
_MAX_QUANTITY_INT_BITS = 128
# What a YAML constructor may raise on a value it cannot build (an invalid date, an integer too
# long for Python to convert ...): reported as a YAML error at the value's position.
_CONSTRUCT_ERRORS = (ValueError, OverflowError, TypeError)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    """A short, printable rendering of a user's key or value for a path or a message."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = repr(value)
        except Exception:  # repr of a huge int or a self-nested list raises; anything else may too
            text = f"<{type(value).__name__}>"
    if not text.isprintable():
        text = json.dumps(text)[1:-1]  # escapes control characters and lone surrogates
    return text if len(text) <= _DESCRIBE_MAX else f"{text[:_DESCRIBE_MAX]}..."


def _check_text(value: str, path: str) -> str:
    """``value`` if protobuf can store it (UTF-8: no lone surrogates)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError(path, "must be valid UTF-8 text (no lone surrogates)") from None
    return value


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


_fields_cache: dict[str, dict[str, FieldDescriptor]] = {}


def _fields_by_json_name(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    fields = _fields_cache.get(descriptor.full_name)
    if fields is None:
        fields = _fields_cache[descriptor.full_name] = {f.json_name: f for f in descriptor.fields}
    return fields


# ---- proto -> dict ----


def to_dict(msg: Message) -> dict[str, Any]:
    """The Kubernetes-shaped JSON dict of an API message.

    Args:
        msg: any pykube API message (Pod, Node, PodList, ...).

    Returns:
        A dict of json names; empty fields are omitted, int64 values are ints, IntOrString
        values an int or a string, and timestamps RFC 3339 strings ("2026-11-25T17:04:32Z").
    """
    data = json_format.MessageToDict(msg)
    _kubernetes_values(data, msg.DESCRIPTOR)
    return data


def _kubernetes_values(data: dict[str, Any], descriptor: Descriptor) -> None:
    """Turns MessageToDict's renderings into Kubernetes' own, in place: int64 as numbers, not
    strings (JSON numbers are doubles, but Python's json keeps big ints exact), and IntOrString
    as its plain value, not ``{"intValue": 8080}``."""
    for field in descriptor.fields:
        if field.json_name not in data:
            continue
        value = data[field.json_name]
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            # Keys sorted, as Go's encoding/json writes maps (protobuf keeps no order).
            data[field.json_name] = {key: _kubernetes_value(value[key], value_field) for key in sorted(value)}
        elif field.is_repeated:
            data[field.json_name] = [_kubernetes_value(item, field) for item in value]
        else:
            data[field.json_name] = _kubernetes_value(value, field)


def _kubernetes_value(value: Any, field: FieldDescriptor) -> Any:
    if field.type in _INT64_TYPES:
        return int(value)
    message_type = field.message_type
    if message_type is None or message_type.full_name.startswith(_WELL_KNOWN_PREFIX):
        return value
    if message_type.full_name == _INT_OR_STRING:
        # Neither set is Kubernetes' zero value, the integer 0.
        return value.get("strValue", value.get("intValue", 0))
    _kubernetes_values(value, message_type)
    return value


def to_yaml(msg: Message) -> str:
    """The YAML form of an API message, as ``kubectl get -o yaml`` prints it."""
    return yaml.safe_dump(to_dict(msg), sort_keys=False, allow_unicode=True, default_flow_style=False)


def to_json(msg: Message) -> str:
    """The JSON form of an API message, indented 4 like ``kubectl get -o json``."""
    return json.dumps(to_dict(msg), indent=4, ensure_ascii=False)


# ---- dict -> proto ----


def from_dict(data: dict[str, Any], message_type: type[M], path: str = "") -> M:
    """Build an API message from its JSON/YAML dict, strictly.

    Args:
        data: the decoded JSON/YAML.
        message_type: the message class, e.g. ``objects_pb2.Pod``.
        path: the field path of ``data`` itself, prefixed to every error ("" at the top).

    Returns:
        The message.

    Raises:
        ValidationError: a value of the wrong type, naming its full path
            (``spec.containers[0].ports[0].containerPort: must be an integer``), else every
            unknown field: the first path as ``field``, the message naming them all
            (``spec.foo: unknown field; spec.bar: unknown field``).
    """
    msg = message_type()
    unknown: list[str] = []
    _fill(msg, data, path, unknown)
    if unknown:
        raise _unknown_fields(unknown)
    return msg


def _unknown_fields(paths: list[str]) -> ValidationError:
    """One error naming the unknown fields (at most ``MAX_UNKNOWN_FIELDS``, the rest counted)."""
    named = [f"{p}: unknown field" for p in paths[:MAX_UNKNOWN_FIELDS]]
    if len(paths) > MAX_UNKNOWN_FIELDS:
        named.append(f"and {len(paths) - MAX_UNKNOWN_FIELDS} more unknown fields")
    return ValidationError(paths[0], "; ".join(named).removeprefix(f"{paths[0]}: "))


def _fill(msg: Message, data: Any, path: str, unknown: list[str]) -> None:
    """Fills ``msg`` from ``data``; unknown fields are added to ``unknown`` (and skipped)."""
    if not isinstance(data, dict):
        raise ValidationError(path, "must be an object")
    fields = _fields_by_json_name(msg.DESCRIPTOR)
    for key, value in data.items():
        field_path = _join(path, _describe(key))
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            unknown.append(field_path)
            continue
        if value is None:
            continue
        if _is_map(field):
            _fill_map(msg, field, value, field_path, unknown)
        elif field.is_repeated:
            _fill_repeated(msg, field, value, field_path, unknown)
        elif field.message_type is not None:
            _fill_message(getattr(msg, field.name), value, field_path, unknown)
        else:
            quantity = field.full_name in _QUANTITY_FIELDS
            setattr(msg, field.name, _scalar(value, field, field_path, quantity=quantity))


def _fill_message(sub: Message, value: Any, path: str, unknown: list[str]) -> None:
    full_name = sub.DESCRIPTOR.full_name
    if full_name == _TIMESTAMP:
        _fill_timestamp(sub, value, path)
    elif full_name == _INT_OR_STRING:
        _fill_int_or_string(cast(objects_pb2.IntOrString, sub), value, path)
    elif full_name.startswith(_WELL_KNOWN_PREFIX):
        try:
            json_format.ParseDict(value, sub)
        except (json_format.ParseError, *_CONSTRUCT_ERRORS) as e:
            raise ValidationError(path, _describe(str(e))) from None
    else:
        sub.SetInParent()  # `metadata: {}` still sets the field
        _fill(sub, value, path, unknown)


def _fill_map(msg: Message, field: FieldDescriptor, value: Any, path: str, unknown: list[str]) -> None:
    if not isinstance(value, dict):
        raise ValidationError(path, "must be an object")
    container = getattr(msg, field.name)
    value_field = field.message_type.fields_by_name["value"]
    quantities = field.full_name in _QUANTITY_MAPS
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValidationError(path, f"key {_describe(key)} must be a string")
        entry_path = key_path(path, _describe(key))
        _check_text(key, entry_path)
        if item is None:
            raise ValidationError(entry_path, "must not be null")
        if value_field.message_type is not None:
            _fill_message(container[key], item, entry_path, unknown)
        else:
            container[key] = _scalar(item, value_field, entry_path, quantity=quantities)


def _fill_repeated(msg: Message, field: FieldDescriptor, value: Any, path: str, unknown: list[str]) -> None:
    if not isinstance(value, list):
        raise ValidationError(path, "must be a list")
    container = getattr(msg, field.name)
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if item is None:
            raise ValidationError(item_path, "must not be null")
        if field.message_type is not None:
            _fill_message(container.add(), item, item_path, unknown)
        else:
            container.append(_scalar(item, field, item_path))


def _fill_int_or_string(sub: objects_pb2.IntOrString, value: Any, path: str) -> None:
    """Kubernetes' IntOrString: a plain integer (int32) or a plain string."""
    if isinstance(value, str):
        sub.str_value = _check_text(value, path)
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = _INT32_RANGE
        if not low <= value <= high:
            raise ValidationError(path, f"must be between {low} and {high}")
        sub.int_value = value
    else:
        raise ValidationError(path, "must be an integer or a string")


def _fill_timestamp(ts: Message, value: Any, path: str) -> None:
    # YAML turns an unquoted timestamp into a datetime; a naive one is UTC, as in YAML itself.
    try:
        if isinstance(value, datetime.datetime):
            ts.FromDatetime(value)
            return
        if isinstance(value, str):
            ts.FromJsonString(value)
            return
    except (ValueError, OverflowError):  # e.g. year 1 with a positive UTC offset
        pass
    raise ValidationError(path, "must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z")


def _scalar(value: Any, field: FieldDescriptor, path: str, *, quantity: bool = False) -> Any:
    """The proto value of one JSON scalar, checked against the field's type."""
    kind = field.type
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return _check_text(value, path)
        if quantity and isinstance(value, float) and math.isfinite(value):
            return repr(value)
        if quantity and is_number and isinstance(value, int) and value.bit_length() <= _MAX_QUANTITY_INT_BITS:
            return str(value)
        raise ValidationError(path, "must be a string")
    if kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise ValidationError(path, "must be a boolean")
    if kind in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(path, "must be an integer")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise ValidationError(path, f"must be between {low} and {high}")
        return value
    if kind in _FLOAT_TYPES:
        if is_number:
            try:
                return float(value)
            except OverflowError:
                raise ValidationError(path, "number out of range") from None
        raise ValidationError(path, "must be a number")
    if kind == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values_by_name
        if isinstance(value, str) and value in values:
            return values[value].number
        raise ValidationError(path, f"unsupported value {_describe(value)}; supported: {', '.join(values)}")
    if kind == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, bytes):  # YAML !!binary
            return value
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
                pass
        raise ValidationError(path, "must be a base64 string")
    raise ValidationError(path, f"unsupported field type {kind}")  # groups: not in this API


# ---- manifests ----


class _StrictSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, plus: a key repeated in one mapping is an error, as in kubectl; aliases
    and nesting are bounded (``_check_limits``); a value no constructor can build is a YAML
    error at its position, not a ValueError."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._alias_nodes = 0  # across the stream's documents

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_limits(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _CONSTRUCT_ERRORS as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid value: {_describe(str(e))}", node.start_mark
            ) from None

    def _check_limits(self, root: yaml.Node) -> None:
        """Walks a composed document with its aliases expanded (an alias is the same node object
        reached a second time), with a budget: the walk stops at the first node past a limit,
        so checking costs at most the document's own size plus ``MAX_ALIAS_NODES``.

        Raises:
            yaml.constructor.ConstructorError: too deep, or aliases expand to too many nodes.
        """
        seen: set[int] = set()
        stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
        while stack:
            node, depth, aliased = stack.pop()
            if not aliased:
                aliased = id(node) in seen
                seen.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                continue
            if not children:
                continue
            if depth >= MAX_DEPTH:
                raise yaml.constructor.ConstructorError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark
                )
            if aliased:
                # Counted when pushed, so a wide node reached through many aliases is refused
                # before its children are ever stacked.
                self._alias_nodes += len(children)
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"aliases expand to more than {MAX_ALIAS_NODES} nodes", node.start_mark
                    )
            stack.extend((child, depth + 1, aliased) for child in children)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<" merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {_describe(key)!r}"
                    if isinstance(key, str)
                    else f"found duplicate key {_describe(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(e: yaml.YAMLError) -> ValidationError:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is None:
        return ValidationError("yaml", problem)
    return ValidationError("yaml", f"line {mark.line + 1}, column {mark.column + 1}: {problem}")


def _validate_event(event: objects_pb2.Event) -> None:
    """``validate_event`` on the event as the server checks it: after its defaults for what a
    manifest may leave out (type Normal, count 1)."""
    checked = objects_pb2.Event()
    checked.CopyFrom(event)
    checked.type = checked.type or "Normal"
    checked.count = checked.count or 1
    validate_event(checked)


# How a manifest's object of each kind is checked before anything is sent (the server checks it
# again); a served kind without an entry is checked by the server only.
VALIDATORS: dict[str, Callable[[Any], None]] = {
    PODS.resource: validate_pod,
    NODES.resource: validate_node,
    EVENTS.resource: _validate_event,
    CONFIG_MAPS.resource: validate_config_map,
    SECRETS.resource: validate_secret,
}


def _supported(kinds: Sequence[Kind]) -> str:
    return ", ".join(f"{kind.api_version} {kind.kind}" for kind in kinds)


def _object_from_document(doc: Any, kinds: Sequence[Kind]) -> Message:
    if not isinstance(doc, dict):
        found = type(doc).__name__
        raise ValidationError("", f"a document must be a mapping (apiVersion, kind, ...), not {found}")
    for key in ("kind", "apiVersion"):
        value = doc.get(key)
        if value is None or value == "":
            raise ValidationError(key, f"required; supported: {_supported(kinds)}")
        if not isinstance(value, str):
            raise ValidationError(key, "must be a string")
    api_version, kind_name = doc["apiVersion"], doc["kind"]
    kind = kind_of_type(api_version, kind_name)
    if kind is None or kind not in kinds:
        found = f'"{_describe(kind_name)}" ({_describe(api_version)})'
        raise ValidationError("kind", f"unsupported kind {found}; supported: {_supported(kinds)}")
    obj = from_dict(doc, kind.message)
    validate = VALIDATORS.get(kind.resource)
    if validate is not None:
        validate(obj)
    return obj


def load(text: str, kinds: Sequence[Kind] | None = None) -> list[Message]:
    """The objects of a multi-document YAML manifest, each checked by its kind's validation.

    Empty documents are skipped. Defaults are not applied: the server does that (and the
    namespace may come from the command line).

    Args:
        text: YAML (JSON is YAML too), one or more documents separated by ``---``.
        kinds: The kinds a document may be; every served kind when None.

    Returns:
        The objects (a Pod, an Event ...), in document order.

    Raises:
        ValidationError: text over 4 MiB (``manifest: larger than 4 MiB``), bad YAML (``yaml: line
            3, column 5: ...``, also for too many aliases or too deep nesting), a document of no
            supported kind (``kind: unsupported kind "Deployment" (apps/v1); supported: v1 Pod,
            ...``) or an invalid object; errors in the second document onwards are prefixed
            ``document N: ``.
    """
    if not isinstance(text, str):
        raise ValidationError("manifest", f"must be text, not {type(text).__name__}")
    # A character is at least one byte: only text near the limit needs encoding to be measured.
    if len(text) > MAX_MANIFEST_BYTES or (
        len(text) * 4 > MAX_MANIFEST_BYTES and len(text.encode(errors="surrogatepass")) > MAX_MANIFEST_BYTES
    ):
        raise ValidationError("manifest", f"larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
    try:
        text.encode()
    except UnicodeEncodeError as e:
        raise ValidationError("manifest", f"invalid text at character {e.start}: a lone surrogate") from None
    allowed = tuple(SERVED.values()) if kinds is None else tuple(kinds)
    objects: list[Message] = []
    documents = yaml.load_all(text, Loader=_StrictSafeLoader)
    index = 0
    while True:
        try:
            doc = next(documents)
        except StopIteration:
            return objects
        except yaml.YAMLError as e:
            raise _yaml_error(e) from None
        except RecursionError:  # the pure-Python parser (no libyaml) recurses per nesting level
            raise ValidationError("yaml", f"nested deeper than {MAX_DEPTH} levels") from None
        index += 1
        if doc is None:
            continue
        try:
            objects.append(_object_from_document(doc, allowed))
        except ValidationError as e:
            if index == 1:
                raise
            prefix = f"document {index}"
            raise ValidationError(f"{prefix}: {e.field}" if e.field else prefix, e.detail) from None


def load_pods(text: str) -> list[objects_pb2.Pod]:
    """The pods of a multi-document YAML manifest (``load`` with Pods only), each checked by
    ``validate_pod``."""
    return cast(list[objects_pb2.Pod], load(text, (PODS,)))
