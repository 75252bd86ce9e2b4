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
from pymaster.cli import (
    describe,
    describe_config,
    describe_workloads,
    printers,
    rollout_status,
    service_printers,
    timefmt,
)
from pymaster.cli import workload_lookup as lookup_
from pymaster.cli import workload_printers as wp
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
        template: The object's pod template (workloads): ``set image`` and ``rollout restart``
            edit it, ``logs TYPE/NAME`` reads a pod its ``spec.selector`` matches.
        pod_spec: The PodSpec ``set image`` edits (a pod's own, a workload's template's).
        scalable: ``scale`` works on it (the API's /scale).
        rollout: What ``rollout`` does for it (``pymaster.cli.rollout_status.Rollout``), or None.
    """

    api: api_kinds.Kind
    header: Callable[..., list[str]]
    row: Callable[..., list[str]]
    describe: Describer
    sort_key: Callable[[Any], tuple[Any, ...]] = by_name
    delete_by_selector: bool = True
    template: Callable[[Any], objects_pb2.PodTemplateSpec] | None = None
    pod_spec: Callable[[Any], objects_pb2.PodSpec] | None = None
    scalable: bool = False
    rollout: Any = None

    @property
    def qualified(self) -> str:
        """kubectl's name of the kind in its messages: "pod", "deployment.apps", "job.batch"."""
        group = self.api.api_version.rpartition("/")[0]
        return f"{self.api.singular}.{group}" if group else self.api.singular

    @property
    def qualified_resource(self) -> str:
        """The plural with its group, as in kubectl's errors: "deployments.apps"."""
        group = self.api.api_version.rpartition("/")[0]
        return f"{self.api.resource}.{group}" if group else self.api.resource

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


async def _describe_deployment(
    client: Client, deployment: objects_pb2.Deployment, events: Events, now: float
) -> str:
    replica_sets, new = await lookup_.deployment_replica_sets(client, deployment)
    old = [rs for rs in replica_sets
           if rs is not new and (rs.status.replicas or (rs.spec.HasField("replicas") and rs.spec.replicas))]
    return describe_workloads.describe_deployment(deployment, old, new, now, events=events)


async def _pod_counts(client: Client, owner: Any) -> describe_workloads.PodCounts:
    return describe_workloads.PodCounts.of(await lookup_.owned_pods(client, owner))


async def _describe_replica_set(
    client: Client, rs: objects_pb2.ReplicaSet, events: Events, now: float
) -> str:
    return describe_workloads.describe_replica_set(rs, await _pod_counts(client, rs), now, events=events)


async def _describe_daemon_set(client: Client, ds: objects_pb2.DaemonSet, events: Events, now: float) -> str:
    return describe_workloads.describe_daemon_set(ds, await _pod_counts(client, ds), now, events=events)


async def _describe_job(client: Client, job: objects_pb2.Job, events: Events, now: float) -> str:
    return describe_workloads.describe_job(job, await _pod_counts(client, job), now, events=events)


async def _describe_service(client: Client, service: objects_pb2.Service, events: Events, now: float) -> str:
    selector = f"kubernetes.io/service-name={service.metadata.name}"
    slices = await client.list(api_kinds.ENDPOINT_SLICES.resource, service.metadata.namespace, selector)
    return service_printers.describe_service(service, list(slices.items), now, events=events)


def _template(obj: Any) -> objects_pb2.PodTemplateSpec:
    return obj.spec.template


def _template_spec(obj: Any) -> objects_pb2.PodSpec:
    return obj.spec.template.spec


def _pod_spec(pod: objects_pb2.Pod) -> objects_pb2.PodSpec:
    return pod.spec


def _workload(api: api_kinds.Kind, header: Callable[..., list[str]], row: Callable[..., list[str]],
              describer: Describer, **extra: Any) -> CliKind:
    return CliKind(api, header, row, describer, template=_template, pod_spec=_template_spec, **extra)


KINDS: dict[str, CliKind] = {
    kind.resource: kind
    for kind in (
        CliKind(api_kinds.PODS, printers.pod_header, printers.pod_row, _describe_pod, pod_spec=_pod_spec),
        CliKind(api_kinds.NODES, printers.node_header, printers.node_row, _describe_node,
                delete_by_selector=False),
        CliKind(api_kinds.EVENTS, printers.event_header, printers.event_row, _describe_generic,
                sort_key=by_last_seen),
        CliKind(api_kinds.CONFIG_MAPS, printers.config_map_header, printers.config_map_row,
                _describe_config_map),
        CliKind(api_kinds.SECRETS, printers.secret_header, printers.secret_row, _describe_secret),
        _workload(api_kinds.DEPLOYMENTS, wp.deployment_header, wp.deployment_row, _describe_deployment,
                  scalable=True, rollout=rollout_status.DEPLOYMENT),
        _workload(api_kinds.REPLICA_SETS, wp.replica_set_header, wp.replica_set_row, _describe_replica_set,
                  scalable=True),
        _workload(api_kinds.DAEMON_SETS, wp.daemon_set_header, wp.daemon_set_row, _describe_daemon_set,
                  rollout=rollout_status.DAEMON_SET),
        _workload(api_kinds.JOBS, wp.job_header, wp.job_row, _describe_job),
        CliKind(api_kinds.SERVICES, service_printers.service_header, service_printers.service_row,
                _describe_service),
        CliKind(api_kinds.ENDPOINT_SLICES, service_printers.endpoint_slice_header,
                service_printers.endpoint_slice_row, _describe_generic),
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
