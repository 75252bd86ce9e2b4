"""pyctl's printers: kubectl-like tables, ages and JSON/YAML documents.

Everything here is pure: functions from API messages (and the current time, passed in as epoch
seconds) to strings, so the output is unit-tested without a server. The layout rules are
kubectl's own: tables and describe output go through ``tabwrite``, a port of Go's text/tabwriter
cell alignment (kubectl get: min width 6, padding 3; kubectl describe: padding 2); ages follow
kubectl's ``HumanDuration`` (``pymaster.cli.timefmt``); the READY, STATUS and RESTARTS columns
of pods follow kubectl's printPod (``pymaster.cli.pod_columns``), the columns of events its
printEvent, those of ConfigMaps and Secrets its printConfigMap and printSecret (DATA: how many
keys). Each kind has its own columns (``pod_header``/``pod_row``
...); ``table_header``/``table_row`` add the NAMESPACE (``-A``) and LABELS (``--show-labels``)
columns the same way for every kind. Describe output is in ``pymaster.cli.describe``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from google.protobuf.timestamp_pb2 import Timestamp

from pymaster.api import objects_pb2
from pymaster.api.quantity import cpu_millis, format_cpu_millis, memory_bytes
from pymaster.cli.pod_columns import pod_columns
from pymaster.cli.timefmt import UNKNOWN, age

TABLE_MIN_WIDTH = 6
TABLE_PADDING = 3
DESCRIBE_PADDING = 2
NONE = "<none>"

_GI = 1024**3
_MI = 1024**2
_KI = 1024

# ---- alignment ----


def tabwrite(lines: Iterable[str], minwidth: int = 0, padding: int = DESCRIBE_PADDING) -> str:
    """Aligns tab-separated cells like Go's text/tabwriter (which kubectl prints through).

    A cell is text terminated by a tab; the text after a line's last tab is not a cell and is
    never padded. A column block is a run of consecutive lines that all have a cell in that
    column; every cell of the block is padded to the block's widest cell plus ``padding``, and
    at least to ``minwidth``.

    Args:
        lines: lines without their newline, cells separated by "\\t".
        minwidth: minimal width of a padded cell, padding included.
        padding: spaces added to the widest cell of a block.

    Returns:
        The aligned text, every line ending with a newline.
    """
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(row) - 1) for row in cells]

    def align(first: int, last: int, column: int) -> None:
        i = first
        while i < last:
            if len(cells[i]) - 1 <= column:
                i += 1
                continue
            j, width = i, minwidth
            while j < last and len(cells[j]) - 1 > column:
                width = max(width, len(cells[j][column]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][column] = width
            align(i, j, column + 1)
            i = j

    align(0, len(cells), 0)
    out = []
    for row, row_widths in zip(cells, widths, strict=True):
        padded = [cell.ljust(width) for cell, width in zip(row, row_widths, strict=False)]
        out.append("".join(padded) + row[-1] + "\n")
    return "".join(out)


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, headers: bool = True) -> str:
    """A kubectl get table: columns left-aligned, 3 spaces apart, at least 6 wide."""
    lines = [header] if headers else []
    lines.extend(rows)
    return tabwrite(("\t".join(line) for line in lines), TABLE_MIN_WIDTH, TABLE_PADDING)


def column_widths(lines: Iterable[Sequence[str]]) -> list[int]:
    """The padded width of every column but the last over ``lines`` (table rows of equal length),
    so rows printed later (watch events) line up with the table printed first."""
    widths: list[int] = []
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            width = max(len(cell) + TABLE_PADDING, TABLE_MIN_WIDTH)
            if i == len(widths):
                widths.append(width)
            else:
                widths[i] = max(widths[i], width)
    return widths


def format_row(cells: Sequence[str], widths: list[int]) -> str:
    """One table row (with its newline) padded to ``widths``, which grow (in place) when a cell
    is wider than any before it."""
    for i, cell in enumerate(cells[:-1]):
        width = max(len(cell) + TABLE_PADDING, TABLE_MIN_WIDTH)
        if i == len(widths):
            widths.append(width)
        elif width > widths[i]:
            widths[i] = width
    padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
    return "".join(padded) + cells[-1] + "\n"


# ---- quantities ----


def human_bytes(n: int) -> str:
    """A readable size for tables: "15.5Gi", "512Mi", "64Ki", "900"."""
    if n >= _GI:
        text = f"{n / _GI:.1f}"
        return (text[:-2] if text.endswith(".0") else text) + "Gi"
    if n >= _MI:
        return f"{n // _MI}Mi"
    if n >= _KI:
        return f"{n // _KI}Ki"
    return str(n)


def parse_cpu(quantity: str) -> int | None:
    try:
        return cpu_millis(quantity)
    except ValueError:
        return None


def parse_memory(quantity: str) -> int | None:
    try:
        return memory_bytes(quantity)
    except ValueError:
        return None


# ---- pods ----


def format_labels(labels: Mapping[str, str]) -> str:
    """Labels as kubectl --show-labels prints them: "a=1,b=2" sorted, "<none>" when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


def table_header(columns: Sequence[str], *, namespace: bool = False, labels: bool = False) -> list[str]:
    """A kind's columns, with NAMESPACE first (``get -A``) and LABELS last (``--show-labels``)."""
    return (["NAMESPACE"] if namespace else []) + list(columns) + (["LABELS"] if labels else [])


def table_row(
    meta: objects_pb2.ObjectMeta, cells: Sequence[str], *, namespace: bool = False, labels: bool = False
) -> list[str]:
    """An object's cells, matching ``table_header`` with the same flags."""
    row = [meta.namespace] if namespace else []
    row += cells
    if labels:
        row.append(format_labels(meta.labels))
    return row


def pod_header(*, wide: bool = False) -> list[str]:
    """The columns of a pod table (kubectl get pods)."""
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "NODE"]
    return header


def pod_row(pod: objects_pb2.Pod, now: float, *, wide: bool = False) -> list[str]:
    """One row of a pod table, matching ``pod_header`` with the same flags."""
    meta = pod.metadata
    columns = pod_columns(pod, now)
    row = [
        meta.name,
        columns.ready,
        columns.status,
        columns.restarts,
        age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp")),
    ]
    if wide:
        row += [pod.status.pod_ip or NONE, pod.spec.node_name or NONE]
    return row


# ---- nodes ----


def node_status(node: objects_pb2.Node) -> str:
    """The STATUS column of a node: Ready / NotReady / Unknown (Ready condition Unknown or
    absent), plus ",SchedulingDisabled" when cordoned."""
    status = "Unknown"
    for condition in node.status.conditions:
        if condition.type == "Ready":
            status = {"True": "Ready", "False": "NotReady"}.get(condition.status, "Unknown")
    if node.spec.unschedulable:
        status += ",SchedulingDisabled"
    return status


def has_usage(node: objects_pb2.Node) -> bool:
    return node.status.HasField("usage") and node.status.usage.HasField("timestamp")


def node_cpu(node: objects_pb2.Node) -> str:
    """The CPU column: "<used %>/<capacity in cores>", e.g. "12%/8"; "<unknown>" before any report."""
    cores = node.status.capacity.get("cpu", "")
    millis = parse_cpu(cores) if cores else None
    capacity = format_cpu_millis(millis) if millis is not None else "?"
    if not has_usage(node):
        return UNKNOWN
    return f"{round(node.status.usage.cpu_percent)}%/{capacity}"


def node_memory(node: objects_pb2.Node) -> str:
    """The MEMORY column: "<used>/<capacity>", e.g. "3.1Gi/15.5Gi"; "<unknown>" before any report."""
    if not has_usage(node):
        return UNKNOWN
    total = node.status.capacity.get("memory", "")
    total_bytes = parse_memory(total) if total else None
    used = human_bytes(node.status.usage.memory_used_bytes)
    return f"{used}/{human_bytes(total_bytes) if total_bytes is not None else '?'}"


def node_pods(node: objects_pb2.Node) -> str:
    """The PODS column: pods running on the node (as last reported) / pod capacity, e.g. "3/110"."""
    if not has_usage(node):
        return UNKNOWN
    running = str(node.status.usage.running_pods)
    capacity = node.status.capacity.get("pods", "")
    return f"{running}/{capacity}" if capacity else running


def node_internal_ip(node: objects_pb2.Node) -> str:
    """The node's first InternalIP address, "<none>" without one."""
    for address in node.status.addresses:
        if address.type == "InternalIP":
            return address.address
    return NONE


def node_header(*, wide: bool = False) -> list[str]:
    """The columns of a node table."""
    header = ["NAME", "STATUS", "CPU", "MEMORY", "PODS", "AGE", "VERSION"]
    if wide:
        header += ["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    return header


def node_row(node: objects_pb2.Node, now: float, *, wide: bool = False) -> list[str]:
    """One row of a node table, matching ``node_header`` with the same flags."""
    meta, info = node.metadata, node.status.node_info
    row = [
        meta.name,
        node_status(node),
        node_cpu(node),
        node_memory(node),
        node_pods(node),
        age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp")),
        info.kubelet_version or NONE,
    ]
    if wide:
        row += [
            node_internal_ip(node),
            info.os_image or UNKNOWN,
            info.kernel_version or UNKNOWN,
            info.container_runtime_version or UNKNOWN,
        ]
    return row


# ---- events ----


def event_last_seen(event: objects_pb2.Event) -> Timestamp:
    """When an event last happened: its lastTimestamp, else its firstTimestamp (kubectl's LAST SEEN)."""
    return event.last_timestamp if event.HasField("last_timestamp") else event.first_timestamp


def event_object(ref: objects_pb2.ObjectReference) -> str:
    """The OBJECT column: the lowercase kind and the name, "pod/web"."""
    kind = ref.kind.lower()
    return f"{kind}/{ref.name}" if ref.name else kind


def event_source(event: objects_pb2.Event) -> str:
    """The SOURCE column: "component, host" ("kubelet, n1"), the component alone without a host;
    the reporting component and instance stand in for what the source lacks."""
    component = event.source.component or event.reporting_component
    host = event.source.host or event.reporting_instance
    return f"{component}, {host}" if host else component


def event_header(*, wide: bool = False) -> list[str]:
    """The columns of an event table (kubectl get events)."""
    if wide:
        return ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
                "COUNT", "NAME"]
    return ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def event_row(event: objects_pb2.Event, now: float, *, wide: bool = False) -> list[str]:
    """One row of an event table, matching ``event_header`` with the same flags (kubectl's
    printEvent: LAST SEEN falls back to FIRST SEEN, a count of 0 reads 1)."""
    first = age(event.first_timestamp, now, present=event.HasField("first_timestamp"))
    last = age(event.last_timestamp, now) if event.HasField("last_timestamp") else first
    target, message = event_object(event.involved_object), one_line(event.message)
    if not wide:
        return [last, event.type, event.reason, target, message]
    subobject, source = event.involved_object.field_path, event_source(event)
    count, name = str(event.count or 1), event.metadata.name
    return [last, event.type, event.reason, target, subobject, source, message, first, count, name]


# ---- ConfigMaps and Secrets ----


def config_map_header(*, wide: bool = False) -> list[str]:
    """The columns of a ConfigMap table (kubectl get configmaps), wide or not."""
    return ["NAME", "DATA", "AGE"]


def config_map_row(config_map: objects_pb2.ConfigMap, now: float, *, wide: bool = False) -> list[str]:
    """One row of a ConfigMap table: DATA counts the keys of data and binaryData."""
    meta = config_map.metadata
    keys = len(config_map.data) + len(config_map.binary_data)
    created = age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp"))
    return [meta.name, str(keys), created]


def secret_header(*, wide: bool = False) -> list[str]:
    """The columns of a Secret table (kubectl get secrets), wide or not."""
    return ["NAME", "TYPE", "DATA", "AGE"]


def secret_row(secret: objects_pb2.Secret, now: float, *, wide: bool = False) -> list[str]:
    """One row of a Secret table: its type and how many keys its data has (never a value)."""
    meta = secret.metadata
    created = age(meta.creation_timestamp, now, present=meta.HasField("creation_timestamp"))
    return [meta.name, secret.type, str(len(secret.data)), created]


# ---- documents ----


def list_document(items: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    """The Kubernetes ``List`` kubectl prints for ``get -o json|yaml`` of several objects."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": resource_version},
    }


def dump_json(document: dict[str, Any]) -> str:
    """JSON indented 4 like kubectl, with a final newline."""
    return json.dumps(document, indent=4, ensure_ascii=False) + "\n"


def dump_yaml(document: dict[str, Any]) -> str:
    """Block-style YAML in the document's key order (that of ``manifest.to_dict``)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def resource_name(resource: str, name: str) -> str:
    """``-o name`` output: "pod/web", "node/n1" (resource in its singular form)."""
    return f"{resource}/{name}"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())
