"""The one table of API kinds: for each, its resource name (the store's and the API's key), its
``kind`` and ``apiVersion``, its message type and list type, its field in the ``Object``
envelope of the generic Resources service, whether it lives in a namespace, and kubectl's short
names. The store, the registry, the client and pyctl all read this table, so a new kind is one
entry here plus its registry strategy (Kubernetes' discovery data, in one place).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError


@dataclass(frozen=True)
class Kind:
    """One kind of API object.

    Attributes:
        resource: The plural resource name ("pods"): the store's kind key and the API's.
        kind: The object's ``kind`` ("Pod").
        api_version: Its ``apiVersion`` ("v1", "apps/v1").
        message: The protobuf message class.
        namespaced: Lives in a namespace (False: cluster-scoped, namespace "").
        short_names: kubectl's aliases besides the singular ("po").
        served: Served to clients; False for the master's internal bookkeeping.
        envelope_field: Its field in ``objects_pb2.Object`` ("" when not served).
        list_message: Its list message (``PodList``), for the JSON/YAML of a list.
    """

    resource: str
    kind: str
    api_version: str
    message: type[Message]
    namespaced: bool
    short_names: tuple[str, ...] = ()
    served: bool = True
    envelope_field: str = ""
    list_message: type[Message] | None = None

    @property
    def singular(self) -> str:
        """The lowercase singular ("pod"), as in messages like ``pods "web" not found``."""
        return self.kind.lower()


PODS = Kind(
    "pods", "Pod", "v1", objects_pb2.Pod, namespaced=True, short_names=("po",),
    envelope_field="pod", list_message=objects_pb2.PodList,
)
NODES = Kind(
    "nodes", "Node", "v1", objects_pb2.Node, namespaced=False, short_names=("no",),
    envelope_field="node", list_message=objects_pb2.NodeList,
)
EVENTS = Kind(
    "events", "Event", "v1", objects_pb2.Event, namespaced=True, short_names=("ev",),
    envelope_field="event", list_message=objects_pb2.EventList,
)
CONFIG_MAPS = Kind(
    "configmaps", "ConfigMap", "v1", objects_pb2.ConfigMap, namespaced=True, short_names=("cm",),
    envelope_field="config_map", list_message=objects_pb2.ConfigMapList,
)
SECRETS = Kind(
    "secrets", "Secret", "v1", objects_pb2.Secret, namespaced=True,
    envelope_field="secret", list_message=objects_pb2.SecretList,
)
REPLICA_SETS = Kind(
    "replicasets", "ReplicaSet", "apps/v1", objects_pb2.ReplicaSet, namespaced=True, short_names=("rs",),
    envelope_field="replica_set", list_message=objects_pb2.ReplicaSetList,
)
DEPLOYMENTS = Kind(
    "deployments", "Deployment", "apps/v1", objects_pb2.Deployment, namespaced=True,
    short_names=("deploy",), envelope_field="deployment", list_message=objects_pb2.DeploymentList,
)
DAEMON_SETS = Kind(
    "daemonsets", "DaemonSet", "apps/v1", objects_pb2.DaemonSet, namespaced=True, short_names=("ds",),
    envelope_field="daemon_set", list_message=objects_pb2.DaemonSetList,
)
JOBS = Kind(
    "jobs", "Job", "batch/v1", objects_pb2.Job, namespaced=True,
    envelope_field="job", list_message=objects_pb2.JobList,
)
WORKLOADS = (REPLICA_SETS, DEPLOYMENTS, DAEMON_SETS, JOBS)
SERVICES = Kind(
    "services", "Service", "v1", objects_pb2.Service, namespaced=True, short_names=("svc",),
    envelope_field="service", list_message=objects_pb2.ServiceList,
)
ENDPOINT_SLICES = Kind(
    "endpointslices", "EndpointSlice", "discovery.k8s.io/v1", objects_pb2.EndpointSlice, namespaced=True,
    envelope_field="endpoint_slice", list_message=objects_pb2.EndpointSliceList,
)
# Which key holds each node name (pymaster.server.bootstrap); never served.
IDENTITIES = Kind(
    "identities", "NodeIdentity", "v1", objects_pb2.NodeIdentity, namespaced=False, served=False
)

KINDS: dict[str, Kind] = {
    k.resource: k
    for k in (PODS, NODES, EVENTS, CONFIG_MAPS, SECRETS, *WORKLOADS, SERVICES, ENDPOINT_SLICES, IDENTITIES)
}
SERVED: dict[str, Kind] = {resource: k for resource, k in KINDS.items() if k.served}
_BY_ENVELOPE_FIELD = {k.envelope_field: k for k in SERVED.values()}
_BY_MESSAGE = {k.message.DESCRIPTOR.full_name: k for k in KINDS.values()}
_BY_TYPE = {(k.api_version, k.kind): k for k in SERVED.values()}


def kind_of(resource: str) -> Kind:
    """The Kind of a resource name.

    Raises:
        KeyError: an unknown resource.
    """
    return KINDS[resource]


def served_kind(resource: str) -> Kind:
    """The served Kind of a resource name.

    Raises:
        ValidationError: on ``resource``: unknown or not served.
    """
    kind = SERVED.get(resource)
    if kind is None:
        message = f"the server doesn't have a resource type {resource!r}; known: {', '.join(SERVED)}"
        raise ValidationError("resource", message)
    return kind


def kind_of_message(obj: Message) -> Kind:
    """The Kind of a message (a Pod, a Node ...). Raises KeyError for a message of no kind."""
    return _BY_MESSAGE[obj.DESCRIPTOR.full_name]


def kind_of_type(api_version: str, kind: str) -> Kind | None:
    """The served Kind with this ``apiVersion`` and ``kind`` (a manifest's), or None."""
    return _BY_TYPE.get((api_version, kind))


def wrap(obj: Message, into: objects_pb2.Object | None = None) -> objects_pb2.Object:
    """The ``Object`` envelope of a served object (``into``, an envelope inside another message,
    saves a copy)."""
    envelope = objects_pb2.Object() if into is None else into
    getattr(envelope, kind_of_message(obj).envelope_field).CopyFrom(obj)
    return envelope


def unwrap(envelope: objects_pb2.Object) -> tuple[Kind, Message]:
    """The Kind and the object an envelope holds.

    Raises:
        ValidationError: an empty envelope, or one holding a kind that is not served.
    """
    field = envelope.WhichOneof("object")
    if field is None:
        raise ValidationError("object", "required: one object of a served kind")
    if field not in _BY_ENVELOPE_FIELD:
        raise ValidationError(f"object.{field}", "not a served kind")
    return _BY_ENVELOPE_FIELD[field], getattr(envelope, field)
