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

- NodeAgent.RegisterNode / RenewLease / ReportNodeStatus / WatchBoundPods for itself;
- NodeAgent.UpdatePodStatus / ConfirmPodTerminated and Resources.Get of pods bound to it;
- NodeAgent.RenewCertificate (the servicer signs for the caller's own identity only);
- NodeAgent.RecordEvents (the event registry checks each event is about the node or its pods);
- Resources.Get of its own Node.

Everything else is PERMISSION_DENIED with a message that says what was refused, e.g.
``node "n1" may not call Resources.List`` or ``node "n1" may not update pod default/web bound to
node "n2"``. A pod check that finds no pod (or another pod of that name, by uid) lets the call
through: the servicer then answers NOT_FOUND, which the agent treats as "already gone", and
writes nothing.

The table is pure: checks that need the store's pods get the store passed in. The interceptor puts
the caller's identity in a context variable (``current_identity``) for servicers that act on it.
"""

from __future__ import annotations

import contextvars
import datetime
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from pymaster.api.errors import Forbidden, NotFound, Unauthenticated
from pymaster.api.identity import Identity
from pymaster.api.kinds import IDENTITIES

SUPERUSER_KINDS = frozenset({"admin", "master"})
# Services every authenticated caller may use (load balancer probes, grpcurl).
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

_RESOURCES = "pykube.v1.Resources"
_AGENT = "pykube.v1.NodeAgent"

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
    f"/{_AGENT}/ReportNodeStatus": _OwnNode("report the status of", lambda r: r.node_name),
    f"/{_AGENT}/WatchBoundPods": _OwnNode("watch the pods of", lambda r: r.node_name),
    f"/{_AGENT}/UpdatePodStatus": _BoundPod("update", has_uid=True),
    f"/{_AGENT}/ConfirmPodTerminated": _BoundPod("delete", has_uid=True),
    # The servicer signs for the caller's own identity, whatever the CSR says.
    f"/{_AGENT}/RenewCertificate": _allow,
    # The event registry checks each event's source and object against the caller.
    f"/{_AGENT}/RecordEvents": _allow,
    f"/{_RESOURCES}/Get": _ByResource(
        "read", {"nodes": _OwnNode("read", lambda r: r.name), "pods": _BoundPod("read")}
    ),
}


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
