"""Who may call what on the master's mutual-TLS port: authentication of node certificates against
their identity binding, and the per-RPC role table (Kubernetes' Node authorizer + NodeRestriction).

Authentication (``authenticate``): gRPC has verified the chain against the cluster CA; on top:
- an anonymous identity (a CA-signed certificate whose subject is no pykube role) is refused;
- a node certificate counts only while the store's NodeIdentity of that node (kind "identities")
  holds the certificate's public key, its serial is not in ``revoked_serials`` and it was issued
  after the binding was made. Deleting the node (Resources.Delete) removes the binding, so every
  certificate of the node stops working at once, and one issued before the deletion never works
  again even if the node re-joins with the same key.

Authorization (``authorize``): admin and the master's own client certificate (both
``O=system:masters``) may call everything. Any authenticated identity may use health and
reflection. A node may only:

- NodeAgent.RegisterNode / RenewLease / ReportNodeStatus / WatchBoundPods for itself, and
  NodeLease.RenewLease (the lease lane) for itself;
- NodeAgent.UpdatePodStatus / ConfirmPodTerminated and Resources.Get of pods bound to it;
- NodeAgent.RenewCertificate (the servicer signs for the caller's own identity only);
- NodeAgent.RecordEvents (the event registry checks each event is about the node or its pods);
- Resources.Get, List and Watch (and WatchBatched) of Nodes, Services and EndpointSlices (what
  its proxy, DNS and pod network routes follow, as kube-proxy and the kubelet read them);
- Resources.Get of a ConfigMap or Secret that a pod bound to it references (volumes, projected
  sources, env valueFrom, envFrom: ``pymaster.api.references``), Kubernetes' node authorizer
  rule. List, Watch and every write of them stay refused, so a node reads exactly what its pods
  need and cannot even learn which others exist.

Everything else is PERMISSION_DENIED with a message that says what was refused, e.g.
``node "n1" may not call Resources.List`` or ``node "n1" may not update pod default/web bound to
node "n2"``. A pod check that finds no pod (or another pod of that name, by uid) lets the call
through: the servicer then answers NOT_FOUND, which the agent treats as "already gone", and
writes nothing.

The table is pure: checks that need the store's pods get the store passed in. Which objects the
pods of each node reference comes from ``NodeGraph`` (the node authorizer's graph): kept from one
watch of pods, it answers a node's read in a dict lookup; when the graph has no such reference
(a pod bound an instant ago, whose event the graph has not applied yet) the store's pods of that
namespace decide, so a node is never refused what its pods reference. The graph is what the
interceptor is given as its ``store``: it passes the other reads through.

The interceptor puts the caller's identity in a context variable (``current_identity``) for
servicers that act on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api import objects_pb2
from pymaster.api.errors import Forbidden, NotFound, Unauthenticated
from pymaster.api.identity import Identity
from pymaster.api.kinds import CONFIG_MAPS, ENDPOINT_SLICES, IDENTITIES, PODS, SECRETS, SERVICES, kind_of
from pymaster.api.pods import pod_key
from pymaster.api.references import referenced
from pymaster.store.base import DELETED
from pymaster.store.follow import follow

SUPERUSER_KINDS = frozenset({"admin", "master"})
# Services every authenticated caller may use (load balancer probes, grpcurl).
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

_RESOURCES = "pykube.v1.Resources"
_AGENT = "pykube.v1.NodeAgent"
_LEASE = "pykube.v1.NodeLease"

_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("pykube_identity", default=None)


def current_identity() -> Identity | None:
    """The identity of the call being served (None outside an authenticated call)."""
    return _identity.get()


def set_current_identity(identity: Identity | None) -> contextvars.Token:
    """Sets the identity of the call being served (the interceptor does, per call)."""
    return _identity.set(identity)


def short_method(method: str) -> str:
    """ "/pykube.v1.Resources/List" -> "Resources.List" (what messages and metrics show)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}.{name}"


def revoked_message(node_name: str) -> str:
    """The UNAUTHENTICATED message for a node certificate that no longer counts."""
    return f"certificate of node {node_name} is revoked or the node was deleted; join again"


def authenticate(identity: Identity, store, issued_at: datetime.datetime | None = None) -> None:
    """Accepts or refuses the caller's certificate.

    Args:
        identity: From the peer certificate.
        store: Has ``get(kind, namespace, name)`` (the node's NodeIdentity binding).
        issued_at: When a node certificate was issued (its notBefore plus the CA's backdating);
            None skips the check against the binding's creation time.

    Raises:
        Unauthenticated: anonymous, or a node certificate whose binding is gone or differs.
    """
    if identity.kind == "anonymous":
        raise Unauthenticated(
            "the client certificate names no pykube identity "
            "(expected CN=admin,O=system:masters or CN=system:node:<name>,O=system:nodes)"
        )
    if identity.kind != "node":
        return
    try:
        binding = store.get(IDENTITIES.resource, "", identity.name)
    except NotFound:
        raise Unauthenticated(revoked_message(identity.name)) from None
    created = binding.metadata.creation_timestamp.seconds
    if (
        binding.public_key_sha256 != identity.public_key_sha256
        or identity.serial in binding.revoked_serials
        or (issued_at is not None and issued_at.timestamp() < created)
    ):
        raise Unauthenticated(revoked_message(identity.name))


# A node rule: (node name, request, store) -> the refusal message, or None to allow.
NodeRule = Callable[[str, Message, object], str | None]


@dataclass(frozen=True)
class _OwnNode:
    """The request names the calling node itself."""

    verb: str
    node_of: Callable[[Message], str]

    def __call__(self, node: str, request: Message, store: object) -> str | None:
        target = self.node_of(request)
        if target == node:
            return None
        return f'node "{node}" may not {self.verb} node "{target}"'


@dataclass(frozen=True)
class _BoundPod:
    """The request names a pod bound to the calling node."""

    verb: str
    has_uid: bool = False

    def __call__(self, node: str, request: Message, store) -> str | None:
        namespace = request.namespace or "default"
        try:
            pod = store.get("pods", namespace, request.name)
        except NotFound:
            return None  # the servicer answers NOT_FOUND
        if self.has_uid and request.uid and request.uid != pod.metadata.uid:
            return None  # another pod of that name: the servicer answers NOT_FOUND, writes nothing
        bound = pod.spec.node_name
        if bound == node:
            return None
        where = f'bound to node "{bound}"' if bound else "not bound to any node"
        return f'node "{node}" may not {self.verb} pod {namespace}/{request.name} {where}'


@dataclass(frozen=True)
class _Referenced:
    """The request names a ConfigMap or Secret that a pod bound to the calling node references
    (``store`` is a NodeGraph)."""

    verb: str

    def __call__(self, node: str, request: Message, store) -> str | None:
        namespace = request.namespace or "default"
        if store.references(node, request.resource, namespace, request.name):
            return None
        what = f"{kind_of(request.resource).singular} {namespace}/{request.name}"
        return f'node "{node}" may not {self.verb} {what}: no pod bound to it references it'


def _allow(node: str, request: Message, store: object) -> str | None:
    return None


@dataclass(frozen=True)
class _ByResource:
    """A generic verb: the rule of the request's resource; other resources are refused."""

    verb: str
    rules: dict[str, NodeRule]

    def __call__(self, node: str, request: Message, store: object) -> str | None:
        rule = self.rules.get(request.resource)
        if rule is None:
            return f'node "{node}" may not {self.verb} {request.resource or "objects"}'
        return rule(node, request, store)


NODE_RULES: dict[str, NodeRule] = {
    f"/{_AGENT}/RegisterNode": _OwnNode("register", lambda r: r.metadata.name),
    f"/{_AGENT}/RenewLease": _OwnNode("renew the lease of", lambda r: r.node_name),
    f"/{_LEASE}/RenewLease": _OwnNode("renew the lease of", lambda r: r.node_name),
    f"/{_AGENT}/ReportNodeStatus": _OwnNode("report the status of", lambda r: r.node_name),
    f"/{_AGENT}/WatchBoundPods": _OwnNode("watch the pods of", lambda r: r.node_name),
    f"/{_AGENT}/UpdatePodStatus": _BoundPod("update", has_uid=True),
    f"/{_AGENT}/ConfirmPodTerminated": _BoundPod("delete", has_uid=True),
    # The servicer signs for the caller's own identity, whatever the CSR says.
    f"/{_AGENT}/RenewCertificate": _allow,
    # The event registry checks each event's source and object against the caller.
    f"/{_AGENT}/RecordEvents": _allow,
    f"/{_RESOURCES}/Get": _ByResource(
        "read",
        {
            "nodes": _allow,
            "pods": _BoundPod("read"),
            CONFIG_MAPS.resource: _Referenced("read"),
            SECRETS.resource: _Referenced("read"),
            SERVICES.resource: _allow,
            ENDPOINT_SLICES.resource: _allow,
        },
    ),
    # What the node's proxy, DNS and pod network follow (kube-proxy's and the kubelet's reads):
    # every Service, EndpointSlice and Node, never pods, ConfigMaps or Secrets in bulk.
    f"/{_RESOURCES}/List": _ByResource(
        "list", {"nodes": _allow, SERVICES.resource: _allow, ENDPOINT_SLICES.resource: _allow}
    ),
    f"/{_RESOURCES}/Watch": _ByResource(
        "watch", {"nodes": _allow, SERVICES.resource: _allow, ENDPOINT_SLICES.resource: _allow}
    ),
}
NODE_RULES[f"/{_RESOURCES}/WatchBatched"] = NODE_RULES[f"/{_RESOURCES}/Watch"]


def authorize(method: str, identity: Identity, request: Message | None, store) -> None:
    """Allows or refuses one call of an authenticated identity.

    Args:
        method: The full gRPC method, "/pykube.v1.Resources/List".
        request: The request message; None for client-streaming calls (only identity-based
            rules apply to them).
        store: Has ``get(kind, namespace, name)``; node pod rules read the pod from it.

    Raises:
        Unauthenticated: an anonymous identity.
        Forbidden: the role table does not allow the call.
    """
    if identity.kind in SUPERUSER_KINDS:
        return
    if identity.kind != "node":
        raise Unauthenticated(f"anonymous callers may not call {short_method(method)}")
    if method.lstrip("/").startswith(OPEN_SERVICES):
        return
    rule = NODE_RULES.get(method)
    if rule is None or request is None:
        raise Forbidden(f'node "{identity.name}" may not call {short_method(method)}')
    refusal = rule(identity.name, request, store)
    if refusal is not None:
        raise Forbidden(refusal)


# ---- the node authorizer's graph ----

_GraphKey = tuple[str, str, str, str]  # (node, resource, namespace, name)


class NodeGraph:
    """Which ConfigMaps and Secrets the pods bound to each node reference, kept from one watch of
    pods (Kubernetes' node authorizer graph), plus the store reads the role table makes (``get``).

    Args:
        store: Has ``get``, ``list`` and ``watch`` (the master's store).
    """

    def __init__(self, store):
        self._store = store
        self._counts: Counter[_GraphKey] = Counter()  # how many pods give each reference
        self._pods: dict[str, tuple[_GraphKey, ...]] = {}  # pod key -> its references
        self._task: asyncio.Task | None = None

    def get(self, kind: str, namespace: str, name: str) -> Message:
        """The store's object (the role table's other reads). Raises NotFound."""
        return self._store.get(kind, namespace, name)

    def references(self, node: str, resource: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to ``node`` references the object (resource, namespace, name)."""
        if (node, resource, namespace, name) in self._counts:
            return True
        # Not in the graph (yet): the store's pods decide, so a pod bound an instant ago counts.
        pods, _ = self._store.list(PODS.resource, namespace)
        return any(p.spec.node_name == node and (resource, name) in referenced(p) for p in pods)

    def relist(self) -> int:
        """Rebuilds the graph from the store's pods; returns their resourceVersion."""
        pods, rv = self._store.list(PODS.resource)
        self._counts.clear()
        self._pods.clear()
        for pod in pods:
            self.apply(pod)
        return rv

    def apply(self, pod: objects_pb2.Pod, deleted: bool = False) -> None:
        """Takes a pod's new state (or its deletion) into the graph."""
        key = pod_key(pod)
        for edge in self._pods.pop(key, ()):
            self._counts[edge] -= 1
            if self._counts[edge] <= 0:
                del self._counts[edge]
        node = pod.spec.node_name
        if deleted or not node:
            return
        namespace = pod.metadata.namespace
        edges = tuple((node, resource, namespace, name) for resource, name in sorted(referenced(pod)))
        if edges:
            self._pods[key] = edges
            self._counts.update(edges)

    def start(self) -> None:
        """Lists the pods and starts following the store."""
        rv = self.relist()
        self._task = asyncio.get_running_loop().create_task(self._run(rv), name="node-graph")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self, rv: int) -> None:
        await follow(self._store, PODS.resource, rv,
                     lambda event: self.apply(event.object, deleted=event.type == DELETED), self.relist)
