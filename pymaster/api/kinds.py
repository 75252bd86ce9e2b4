"""The one table of API kinds: for each, its resource name (the store's and the API's key), its
``kind`` and ``apiVersion``, its message type, whether it lives in a namespace, and kubectl's
short names. The store, the registry, the client and pyctl all read this table, so a new kind is
one entry here plus its registry strategy (Kubernetes' discovery data, in one place).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import objects_pb2


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
    """

    resource: str
    kind: str
    api_version: str
    message: type[Message]
    namespaced: bool
    short_names: tuple[str, ...] = ()
    served: bool = True

    @property
    def singular(self) -> str:
        """The lowercase singular ("pod"), as in messages like ``pods "web" not found``."""
        return self.kind.lower()


PODS = Kind("pods", "Pod", "v1", objects_pb2.Pod, namespaced=True, short_names=("po",))
NODES = Kind("nodes", "Node", "v1", objects_pb2.Node, namespaced=False, short_names=("no",))
# Which key holds each node name (pymaster.server.bootstrap); never served.
IDENTITIES = Kind(
    "identities", "NodeIdentity", "v1", objects_pb2.NodeIdentity, namespaced=False, served=False
)

KINDS: dict[str, Kind] = {k.resource: k for k in (PODS, NODES, IDENTITIES)}


def kind_of(resource: str) -> Kind:
    """The Kind of a resource name.

    Raises:
        KeyError: an unknown resource.
    """
    return KINDS[resource]
