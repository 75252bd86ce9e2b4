"""pyctl's describe of ConfigMaps and Secrets, in kubectl's layout, as pure functions.

- ConfigMap: name, namespace, labels, annotations, then every key of ``data`` with its value
  under a ``----`` rule, the keys of ``binaryData`` with their sizes, then the events.
- Secret: the same header, its type, then every key of ``data`` with its size only
  (``password:  19 bytes``): a Secret's values are never printed by describe, as in kubectl.

Keys are sorted (kubectl sorts them since 1.29).
"""

from __future__ import annotations

from collections.abc import Sequence

from pymaster.api import objects_pb2
from pymaster.cli import printers as p
from pymaster.cli.describe import events_lines


def _header(meta: objects_pb2.ObjectMeta) -> list[str]:
    lines = [f"Name:\t{meta.name}", f"Namespace:\t{meta.namespace}"]
    for title, values in (("Labels", meta.labels), ("Annotations", meta.annotations)):
        pairs = [f"{k}={v}" for k, v in sorted(values.items())] or [p.NONE]
        lines.append(f"{title}:\t{pairs[0]}")
        lines.extend(f"\t{pair}" for pair in pairs[1:])
    return lines


def describe_config_map(
    config_map: objects_pb2.ConfigMap, now: float, events: Sequence[objects_pb2.Event] | None = ()
) -> str:
    """kubectl describe configmap: the header, Data (keys and values), BinaryData (keys and
    sizes), then the events (None: the section is left out)."""
    lines = _header(config_map.metadata)
    lines += ["", "Data", "===="]
    for key in sorted(config_map.data):
        lines += [f"{key}:", "----", *config_map.data[key].split("\n"), ""]
    lines += ["", "BinaryData", "===="]
    lines += [f"{key}: {len(config_map.binary_data[key])} bytes" for key in sorted(config_map.binary_data)]
    lines.append("")
    lines += events_lines(events, now)
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)


def describe_secret(secret: objects_pb2.Secret) -> str:
    """kubectl describe secret: the header, the type, and the size of every value (never the
    value itself)."""
    lines = _header(secret.metadata)
    lines += ["", f"Type:\t{secret.type}", "", "Data", "===="]
    lines += [f"{key}:\t{len(secret.data[key])} bytes" for key in sorted(secret.data)]
    return p.tabwrite(lines, 0, p.DESCRIBE_PADDING)
