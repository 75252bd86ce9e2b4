"""The role table, the node authorizer's graph and node certificate authentication
(pymaster.server.authz), without gRPC."""

from __future__ import annotations

import contextvars
import datetime

import pytest
from google.protobuf.message import Message

from pymaster.api import objects_pb2, services_pb2
from pymaster.api.errors import Forbidden, NotFound, Unauthenticated
from pymaster.api.identity import Identity
from pymaster.server import authz

ADMIN = Identity("admin", "admin")
MASTER = Identity("master", "system:pymaster")
ANONYMOUS = Identity("anonymous", "")
N1 = Identity("node", "n1", serial="a1", public_key_sha256="k1")


class FakeStore:
    def __init__(self, *objects: tuple[str, Message]):
        self._objects = {(kind, obj.metadata.namespace, obj.metadata.name): obj for kind, obj in objects}

    def get(self, kind: str, namespace: str, name: str) -> Message:
        try:
            return self._objects[(kind, namespace, name)]
        except KeyError:
            raise NotFound(f'{kind} "{name}" not found') from None

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Message], int]:
        keys = sorted(key for key in self._objects if key[0] == kind and namespace in (None, key[1]))
        return [self._objects[key] for key in keys], 7

    def add(self, kind: str, obj: Message) -> None:
        self._objects[(kind, obj.metadata.namespace, obj.metadata.name)] = obj


def pod(
    name: str, node: str, uid: str = "u1", namespace: str = "default", secret: str = "", config_map: str = ""
) -> tuple[str, objects_pb2.Pod]:
    """A pod; ``secret`` and ``config_map``: what it references (an env var, a volume)."""
    p = objects_pb2.Pod()
    p.metadata.namespace, p.metadata.name, p.metadata.uid = namespace, name, uid
    p.spec.node_name = node
    if secret:
        var = p.spec.containers.add(name="app").env.add(name="PASSWORD")
        var.value_from.secret_key_ref.name, var.value_from.secret_key_ref.key = secret, "password"
    if config_map:
        p.spec.volumes.add(name="config").config_map.name = config_map
    return "pods", p


def binding(name: str, key: str, revoked: tuple[str, ...] = (), created: int = 1000) -> tuple[str, Message]:
    b = objects_pb2.NodeIdentity(public_key_sha256=key, revoked_serials=revoked)
    b.metadata.name = name
    b.metadata.creation_timestamp.seconds = created
    return "identities", b


PODS = FakeStore(
    pod("mine", "n1", secret="db-password", config_map="app-config"),
    pod("theirs", "n2", secret="their-secret"),
    pod("pending", "", secret="pending-secret"),
    pod("elsewhere", "n1", namespace="team", secret="team-secret"),
    binding("n1", "k1"),
)
STORE = authz.NodeGraph(PODS)
STORE.relist()
# Bound after the graph was built (its watch has not applied it yet): the store decides.
PODS.add(*pod("late", "n1", uid="u9", secret="late-secret"))


def node(name: str) -> objects_pb2.Node:
    n = objects_pb2.Node()
    n.metadata.name = name
    return n


AGENT = "/pykube.v1.NodeAgent/"
RESOURCES = "/pykube.v1.Resources/"
CLUSTER = "/pykube.v1.Cluster/"


def get(resource: str, name: str, namespace: str = "") -> services_pb2.GetRequest:
    return services_pb2.GetRequest(resource=resource, namespace=namespace, name=name)


def event() -> objects_pb2.Event:
    e = objects_pb2.Event(reason="Pulled")
    e.involved_object.kind, e.involved_object.name = "Pod", "theirs"
    e.source.host = "n2"
    return e


@pytest.mark.parametrize(
    "method, request_",
    [
        (AGENT + "RegisterNode", node("n1")),
        (AGENT + "RenewLease", services_pb2.RenewLeaseRequest(node_name="n1")),
        (AGENT + "ReportNodeStatus", services_pb2.NodeStatusReport(node_name="n1")),
        (AGENT + "WatchBoundPods", services_pb2.BoundPodsRequest(node_name="n1")),
        (AGENT + "UpdatePodStatus", services_pb2.PodStatusUpdate(name="mine", uid="u1")),
        (AGENT + "UpdatePodStatus", services_pb2.PodStatusUpdate(namespace="default", name="mine")),
        (AGENT + "ConfirmPodTerminated", services_pb2.PodTerminated(name="mine", uid="u1")),
        (AGENT + "RenewCertificate", services_pb2.CertificateSigningRequest()),
        # Let through whatever the events say: the event registry checks each one (its tests).
        (AGENT + "RecordEvents", services_pb2.RecordEventsRequest(events=[event()])),
        (RESOURCES + "Get", get("nodes", "n1")),
        (RESOURCES + "Get", get("nodes", "n1", namespace="ignored")),
        (RESOURCES + "Get", get("nodes", "n2")),  # other nodes' pod CIDRs and addresses: routes
        (RESOURCES + "List", services_pb2.ListRequest(resource="services")),
        (RESOURCES + "Watch", services_pb2.WatchRequest(resource="endpointslices")),
        (RESOURCES + "Watch", services_pb2.WatchRequest(resource="nodes")),
        (RESOURCES + "WatchBatched", services_pb2.WatchRequest(resource="services")),
        (RESOURCES + "Get", get("pods", "mine")),
        (RESOURCES + "Get", get("pods", "mine", namespace="default")),
        # Gone, or another pod of the name: through to the servicer's NOT_FOUND (no write).
        (AGENT + "UpdatePodStatus", services_pb2.PodStatusUpdate(name="gone")),
        (AGENT + "UpdatePodStatus", services_pb2.PodStatusUpdate(name="theirs", uid="old-uid")),
        (AGENT + "ConfirmPodTerminated", services_pb2.PodTerminated(name="theirs", uid="old-uid")),
        (RESOURCES + "Get", get("pods", "gone")),
        (RESOURCES + "Get", get("pods", "theirs", namespace="kube-system")),  # no such pod there
        # ConfigMaps and Secrets a pod bound to it references (node authorizer), existing or not.
        (RESOURCES + "Get", get("secrets", "db-password")),
        (RESOURCES + "Get", get("secrets", "db-password", namespace="default")),
        (RESOURCES + "Get", get("configmaps", "app-config")),
        (RESOURCES + "Get", get("secrets", "team-secret", namespace="team")),
        (RESOURCES + "Get", get("secrets", "late-secret")),
        ("/grpc.health.v1.Health/Check", None),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
    ],
)
def test_node_allowed(method, request_):
    authz.authorize(method, N1, request_, STORE)


def _calls(*verbs: str) -> list[tuple[str, Message, str]]:
    """Every Resources write is refused by name, whatever resource it names; List and Watch of
    anything but nodes, services and endpointslices by the resource."""
    requests = {
        "Create": objects_pb2.Object(pod=objects_pb2.Pod()),
        "Apply": objects_pb2.Object(pod=objects_pb2.Pod()),
        "Update": objects_pb2.Object(node=node("n1")),
        "List": services_pb2.ListRequest(resource="pods"),
        "Watch": services_pb2.WatchRequest(resource="pods", field_selector="spec.nodeName=n1"),
        "Delete": services_pb2.DeleteRequest(resource="nodes", name="n1"),
    }
    refusals = {"List": 'node "n1" may not list pods', "Watch": 'node "n1" may not watch pods'}
    return [
        (RESOURCES + v, requests[v], refusals.get(v, f'node "n1" may not call Resources.{v}')) for v in verbs
    ]


@pytest.mark.parametrize(
    "method, request_, message",
    [
        *_calls("Create", "Apply", "Update", "List", "Watch", "Delete"),
        (RESOURCES + "SomethingNew", get("pods", "mine"), 'node "n1" may not call Resources.SomethingNew'),
        (
            CLUSTER + "PodLogs",
            services_pb2.LogsRequest(name="mine"),
            'node "n1" may not call Cluster.PodLogs',
        ),
        (CLUSTER + "Exec", None, 'node "n1" may not call Cluster.Exec'),
        (AGENT + "SomethingNew", services_pb2.Empty(), 'node "n1" may not call NodeAgent.SomethingNew'),
        (AGENT + "RegisterNode", node("n2"), 'node "n1" may not register node "n2"'),
        (
            AGENT + "RenewLease",
            services_pb2.RenewLeaseRequest(node_name="n2"),
            'node "n1" may not renew the lease of node "n2"',
        ),
        (
            AGENT + "ReportNodeStatus",
            services_pb2.NodeStatusReport(node_name="n2"),
            'node "n1" may not report the status of node "n2"',
        ),
        (
            AGENT + "WatchBoundPods",
            services_pb2.BoundPodsRequest(node_name=""),
            'node "n1" may not watch the pods of node ""',
        ),
        (
            AGENT + "UpdatePodStatus",
            services_pb2.PodStatusUpdate(name="theirs", uid="u1"),
            'node "n1" may not update pod default/theirs bound to node "n2"',
        ),
        (
            AGENT + "UpdatePodStatus",
            services_pb2.PodStatusUpdate(name="theirs"),
            'node "n1" may not update pod default/theirs bound to node "n2"',
        ),
        (
            AGENT + "ConfirmPodTerminated",
            services_pb2.PodTerminated(name="pending", uid="u1"),
            'node "n1" may not delete pod default/pending not bound to any node',
        ),
        # Resources.Get: only its own node and the pods bound to it; no other resource at all.
        (
            RESOURCES + "Get",
            get("pods", "theirs"),
            'node "n1" may not read pod default/theirs bound to node "n2"',
        ),
        (
            RESOURCES + "Get",
            get("pods", "pending", namespace="default"),
            'node "n1" may not read pod default/pending not bound to any node',
        ),
        # ConfigMaps and Secrets: only what a pod bound to it references, by kind, namespace and name.
        (
            RESOURCES + "Get",
            get("secrets", "their-secret"),
            'node "n1" may not read secret default/their-secret: no pod bound to it references it',
        ),
        (
            RESOURCES + "Get",
            get("secrets", "pending-secret"),
            'node "n1" may not read secret default/pending-secret: no pod bound to it references it',
        ),
        (
            RESOURCES + "Get",
            get("secrets", "db-password", namespace="team"),
            'node "n1" may not read secret team/db-password: no pod bound to it references it',
        ),
        (
            RESOURCES + "Get",
            get("secrets", "app-config"),
            'node "n1" may not read secret default/app-config: no pod bound to it references it',
        ),
        (
            RESOURCES + "Get",
            get("configmaps", "db-password"),
            'node "n1" may not read configmap default/db-password: no pod bound to it references it',
        ),
        (
            RESOURCES + "List",
            services_pb2.ListRequest(resource="secrets"),
            'node "n1" may not list secrets',
        ),
        (
            RESOURCES + "Watch",
            services_pb2.WatchRequest(resource="configmaps"),
            'node "n1" may not watch configmaps',
        ),
        (
            RESOURCES + "WatchBatched",
            services_pb2.WatchRequest(resource="pods"),
            'node "n1" may not watch pods',
        ),
        (
            RESOURCES + "Update",
            objects_pb2.Object(secret=objects_pb2.Secret(metadata=objects_pb2.ObjectMeta(name="db-password"))),
            'node "n1" may not call Resources.Update',
        ),
        (
            RESOURCES + "Delete",
            services_pb2.DeleteRequest(resource="secrets", name="db-password"),
            'node "n1" may not call Resources.Delete',
        ),
        (RESOURCES + "Get", get("identities", "n1"), 'node "n1" may not read identities'),
        (RESOURCES + "Get", get("events", "mine.1"), 'node "n1" may not read events'),
        (RESOURCES + "Get", get("Pods", "mine"), 'node "n1" may not read Pods'),  # names are exact
        (RESOURCES + "Get", get("", "n1"), 'node "n1" may not read objects'),
        # A client-streaming call has no single request: only identity rules apply.
        (AGENT + "RegisterNode", None, 'node "n1" may not call NodeAgent.RegisterNode'),
        (RESOURCES + "Get", None, 'node "n1" may not call Resources.Get'),
    ],
)
def test_node_denied(method, request_, message):
    with pytest.raises(Forbidden) as err:
        authz.authorize(method, N1, request_, STORE)
    assert err.value.message == message


@pytest.mark.parametrize("identity", [ADMIN, MASTER])
@pytest.mark.parametrize(
    "method",
    [
        RESOURCES + "List",
        RESOURCES + "Delete",
        CLUSTER + "PodLogs",
        AGENT + "UpdatePodStatus",
        AGENT + "Whatever",
    ],
)
def test_masters_may_do_everything(identity, method):
    authz.authorize(method, identity, services_pb2.Empty(), STORE)


def test_anonymous_is_unauthenticated():
    with pytest.raises(Unauthenticated):
        authz.authorize(RESOURCES + "List", ANONYMOUS, services_pb2.ListRequest(resource="pods"), STORE)
    with pytest.raises(Unauthenticated, match="names no pykube identity"):
        authz.authenticate(ANONYMOUS, STORE)


AFTER = datetime.datetime.fromtimestamp(1000, datetime.UTC)
BEFORE = datetime.datetime.fromtimestamp(999, datetime.UTC)


@pytest.mark.parametrize(
    "identity, store, issued_at, ok",
    [
        (ADMIN, FakeStore(), None, True),
        (MASTER, FakeStore(), None, True),
        (N1, FakeStore(binding("n1", "k1")), AFTER, True),
        (N1, FakeStore(binding("n1", "k1")), None, True),
        (N1, FakeStore(), AFTER, False),  # deleted
        (N1, FakeStore(binding("n1", "k2")), AFTER, False),  # the name went to another key
        (N1, FakeStore(binding("n1", "k1", revoked=("a1",))), AFTER, False),
        (N1, FakeStore(binding("n1", "k1", revoked=("b2",))), AFTER, True),
        (N1, FakeStore(binding("n1", "k1")), BEFORE, False),  # issued before the binding: old cert
    ],
)
def test_authenticate(identity, store, issued_at, ok):
    if ok:
        authz.authenticate(identity, store, issued_at)
        return
    with pytest.raises(Unauthenticated) as err:
        authz.authenticate(identity, store, issued_at)
    assert err.value.message == "certificate of node n1 is revoked or the node was deleted; join again"


@pytest.mark.parametrize(
    "method, short",
    [
        ("/pykube.v1.Resources/List", "Resources.List"),
        ("/pykube.v1.Cluster/PodLogs", "Cluster.PodLogs"),
        ("/grpc.health.v1.Health/Check", "Health.Check"),
    ],
)
def test_short_method(method, short):
    assert authz.short_method(method) == short


def test_current_identity_is_per_context():
    def inner() -> Identity | None:
        authz.set_current_identity(N1)
        return authz.current_identity()

    assert contextvars.copy_context().run(inner) == N1
    assert authz.current_identity() is None


# ---- the node authorizer's graph ----


def test_graph_follows_pods_by_node_and_counts_shared_references():
    store = FakeStore()
    graph = authz.NodeGraph(store)
    graph.relist()
    _, a = pod("a", "n1", secret="shared")
    _, b = pod("b", "n1", uid="u2", secret="shared", config_map="cfg")
    graph.apply(a)
    graph.apply(b)
    assert graph.references("n1", "secrets", "default", "shared")
    assert graph.references("n1", "configmaps", "default", "cfg")
    graph.apply(b, deleted=True)  # a still references the secret, nobody the config map
    assert graph.references("n1", "secrets", "default", "shared")
    assert not graph.references("n1", "configmaps", "default", "cfg")
    moved = objects_pb2.Pod()
    moved.CopyFrom(a)
    moved.spec.node_name = "n2"  # re-created elsewhere under the same name
    graph.apply(moved)
    assert not graph.references("n1", "secrets", "default", "shared")
    assert graph.references("n2", "secrets", "default", "shared")
    dropped = objects_pb2.Pod()
    dropped.CopyFrom(moved)
    dropped.spec.ClearField("containers")  # its reference is gone
    graph.apply(dropped)
    assert not graph.references("n2", "secrets", "default", "shared")
