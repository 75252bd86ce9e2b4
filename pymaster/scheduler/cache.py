"""The scheduler's cache (kube-scheduler's internal cache): the pods and nodes it watches, one
NodeInfo per node kept up to date incrementally (a pod event adds or removes one PodInfo; a node
event rebuilds only that node's resources), and the pods it has "assumed": placed on a node by a
decision whose bind is not written yet, so the next decisions see the node's new load at once.

The node list a Snapshot shares (and its NodeArrays) is rebuilt only when nodes are added or
removed; otherwise only the array rows of the nodes that changed since the last attempt are
reloaded, so an attempt costs almost nothing to set up.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.pods import is_terminal, pod_key
from pymaster.scheduler.framework import NodeInfo, PodInfo, Snapshot, bound_pod_info
from pymaster.scheduler.node_arrays import NodeArrays


def placement(pod: objects_pb2.Pod | None) -> str:
    """The node a pod counts on: its spec.nodeName unless it is terminal ("" none)."""
    if pod is None or not pod.spec.node_name or is_terminal(pod):
        return ""
    return pod.spec.node_name


class SchedulerCache:
    """Pods and nodes by key, NodeInfos, assumed pods."""

    def __init__(self) -> None:
        self.pods: dict[str, objects_pb2.Pod] = {}
        self.nodes: dict[str, objects_pb2.Node] = {}
        self.infos: dict[str, NodeInfo] = {}
        # node name -> key -> PodInfo of every pod counted there, known node or not yet.
        self._by_node: dict[str, dict[str, PodInfo]] = {}
        self._placed: dict[str, str] = {}  # key -> node it counts on
        self.assumed: dict[str, str] = {}  # key -> node of a bind not written yet
        self._snapshot: Snapshot | None = None
        self._dirty: set[str] = set()  # nodes whose array rows are stale
        self._affinity_nodes: set[str] = set()  # nodes holding pods with pod (anti-)affinity

    # ---- pods ----

    def set_pod(self, key: str, pod: objects_pb2.Pod | None) -> objects_pb2.Pod | None:
        """Replaces a pod (None removes it); returns the previous one. An assumed pod keeps its
        place until a bind shows up (ours or another's), or ``forget`` drops it."""
        old = self.pods.pop(key, None)
        if pod is not None:
            self.pods[key] = pod
        node = placement(pod)
        assumed = self.assumed.get(key, "")
        if assumed and (pod is None or node):
            del self.assumed[key]
            assumed = ""
        target = node or assumed
        if target != self._placed.get(key, ""):
            self._place(key, target, pod)
        return old

    def assume(self, key: str, info: PodInfo, node: str) -> None:
        """Counts a pod on ``node`` before its bind is written."""
        self.assumed[key] = node
        self._unplace(key)
        self._by_node.setdefault(node, {})[key] = info
        self._placed[key] = node
        self._added(node, info)

    def forget(self, key: str) -> None:
        """Drops an assumption whose bind was not written (the pod changed or went away)."""
        if self.assumed.pop(key, None) is not None:
            self._place(key, placement(self.pods.get(key)), self.pods.get(key))

    def _place(self, key: str, node: str, pod: objects_pb2.Pod | None) -> None:
        self._unplace(key)
        if node and pod is not None:
            info = bound_pod_info(pod)
            self._by_node.setdefault(node, {})[key] = info
            self._placed[key] = node
            self._added(node, info)

    def _added(self, node: str, info: PodInfo) -> None:
        target = self.infos.get(node)
        if target is not None:
            target.add_pod(info)
            self._dirty.add(node)
            if target.pods_with_affinity:
                self._affinity_nodes.add(node)

    def _unplace(self, key: str) -> None:
        node = self._placed.pop(key, "")
        if not node:
            return
        on_node = self._by_node.get(node, {})
        on_node.pop(key, None)
        if not on_node:
            self._by_node.pop(node, None)
        target = self.infos.get(node)
        if target is not None:
            target.remove_pod(key)
            self._dirty.add(node)
            if not target.pods_with_affinity:
                self._affinity_nodes.discard(node)

    def reset_pods(self, pods: list[objects_pb2.Pod]) -> None:
        """Replaces every pod (a relist); assumptions are dropped."""
        self.pods, self._by_node, self._placed, self.assumed = {}, {}, {}, {}
        self._affinity_nodes = set()
        for node in list(self.infos):
            self.infos[node] = NodeInfo.from_node(self.nodes[node])
        self._snapshot = None
        for pod in pods:
            self.set_pod(pod_key(pod), pod)

    # ---- nodes ----

    def set_node(self, name: str, node: objects_pb2.Node | None) -> objects_pb2.Node | None:
        """Replaces a node (None removes it); returns the previous one."""
        old = self.nodes.pop(name, None)
        if node is None:
            self.infos.pop(name, None)
            self._affinity_nodes.discard(name)
            self._snapshot = None
            return old
        self.nodes[name] = node
        current = self.infos.get(name)
        if current is None:
            info = self.infos[name] = NodeInfo.from_node(node, self._by_node.get(name, {}).values())
            if info.pods_with_affinity:
                self._affinity_nodes.add(name)
            self._snapshot = None
        else:
            current.set_node(node)  # in place: the snapshot's list stays valid
            self._dirty.add(name)
        return old

    def reset_nodes(self, nodes: list[objects_pb2.Node]) -> None:
        self.nodes, self.infos, self._snapshot = {}, {}, None
        self._affinity_nodes = set()
        for node in nodes:
            self.set_node(node.metadata.name, node)

    def snapshot(self) -> Snapshot:
        """The nodes for the next attempt (the NodeInfos themselves, not copies: an attempt runs
        without yielding to the event loop, so they cannot change under it)."""
        if self._snapshot is None:
            infos = [self.infos[name] for name in sorted(self.infos)]
            self._snapshot = Snapshot(infos, self.infos, NodeArrays(infos), lambda: self._affinity_nodes)
        elif self._dirty and self._snapshot.arrays is not None:
            self._snapshot.arrays.refresh(self._dirty)
        self._dirty.clear()
        return self._snapshot
