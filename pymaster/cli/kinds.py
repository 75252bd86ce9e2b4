"""The kinds pyctl knows, in one table: for each, its kubectl names (the resource, the singular and
the short names of ``pymaster.api.kinds``), how ``get`` prints it (its table columns, plain and
``-o wide``; NAMESPACE with ``-A`` and LABELS with ``--show-labels`` are added alike for every
kind), in which order a listing is printed, how ``describe`` tells it, and whether ``delete``
takes it by selector. ``get``, ``describe``, ``delete``, ``apply`` and ``create`` read this table
for every kind, so a new kind is one entry here after its entry in ``pymaster.api.kinds``.

A describe function is async: it gets the client to fetch what it shows beside the object (a
node's pods) and the events about the object, and renders with the pure functions of
``pymaster.cli.describe``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymaster.api import kinds as api_kinds
from pymaster.api import objects_pb2
from pymaster.cli import describe, describe_config, printers, timefmt
from pymaster.client import Client

Events = list[objects_pb2.Event] | None
# (client, object, the events about it (None: they could not be listed), now) -> the text.
Describer = Callable[[Client, Any, Events, float], Awaitable[str]]


def by_name(obj: Any) -> tuple[Any, ...]:
    """The order of most listings: namespace, then name."""
    return obj.metadata.namespace, obj.metadata.name


def by_last_seen(event: objects_pb2.Event) -> tuple[Any, ...]:
    """Events in the order they last happened (as ``kubectl events`` lists them)."""
    return timefmt.timestamp_seconds(printers.event_last_seen(event)), *by_name(event)


@dataclass(frozen=True)
class CliKind:
    """How pyctl handles one kind.

    Attributes:
        api: The kind in the API's table (resource, kind, namespaced, short names).
        header: ``header(wide=...)``: the kind's table columns.
        row: ``row(obj, now, wide=...)``: one object's cells, matching ``header``.
        describe: The ``describe`` text of an object.
        sort_key: The order of a listing.
        delete_by_selector: ``delete -l SEL`` and ``delete --all`` are allowed (nodes: by name only).
    """

    api: api_kinds.Kind
    header: Callable[..., list[str]]
    row: Callable[..., list[str]]
    describe: Describer
    sort_key: Callable[[Any], tuple[Any, ...]] = by_name
    delete_by_selector: bool = True

    @property
    def resource(self) -> str:
        return self.api.resource

    @property
    def names(self) -> tuple[str, ...]:
        """What kubectl accepts for the kind: plural, singular, short names ("pods", "pod", "po")."""
        return self.api.resource, self.api.singular, *self.api.short_names


async def _describe_pod(client: Client, pod: objects_pb2.Pod, events: Events, now: float) -> str:
    return describe.describe_pod(pod, now, events=events)


async def _describe_node(client: Client, node: objects_pb2.Node, events: Events, now: float) -> str:
    bound = await client.list_pods("", field_selector=f"spec.nodeName={node.metadata.name}")
    return describe.describe_node(node, sorted(bound.items, key=by_name), now, events=events)


async def _describe_config_map(
    client: Client, config_map: objects_pb2.ConfigMap, events: Events, now: float
) -> str:
    return describe_config.describe_config_map(config_map, now, events=events)


async def _describe_secret(client: Client, secret: objects_pb2.Secret, events: Events, now: float) -> str:
    return describe_config.describe_secret(secret)  # kubectl shows no events for a Secret


async def _describe_generic(client: Client, obj: Any, events: Events, now: float) -> str:
    return describe.describe_object(obj, now, events=events)


KINDS: dict[str, CliKind] = {
    kind.resource: kind
    for kind in (
        CliKind(api_kinds.PODS, printers.pod_header, printers.pod_row, _describe_pod),
        CliKind(api_kinds.NODES, printers.node_header, printers.node_row, _describe_node,
                delete_by_selector=False),
        CliKind(api_kinds.EVENTS, printers.event_header, printers.event_row, _describe_generic,
                sort_key=by_last_seen),
        CliKind(api_kinds.CONFIG_MAPS, printers.config_map_header, printers.config_map_row,
                _describe_config_map),
        CliKind(api_kinds.SECRETS, printers.secret_header, printers.secret_row, _describe_secret),
    )
}
_BY_NAME = {name: kind for kind in KINDS.values() for name in kind.names}


def lookup(word: str) -> CliKind | None:
    """The kind a kubectl resource word names ("po", "Pods", "event"), or None."""
    return _BY_NAME.get(word.lower())


def of(resource: str) -> CliKind:
    """The kind of a resource name ("pods"). Raises KeyError for a kind pyctl does not know."""
    return KINDS[resource]


def listing() -> str:
    """The kinds for a usage message: "pods (po), nodes (no), events (ev), configmaps (cm), secrets"."""
    words = [(k.resource, ", ".join(k.api.short_names)) for k in KINDS.values()]
    return ", ".join(f"{resource} ({short})" if short else resource for resource, short in words)
