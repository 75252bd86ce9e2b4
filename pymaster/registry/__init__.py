"""The registry: per kind, the rules for writing it (kube-apiserver's "strategies"), over the
store. Servicers, the scheduler and the controllers write through it alike; one module per kind
(``pods``, ``nodes``, ``events``, ``configmaps``, ``secrets``, ``workloads`` for the four workload
kinds, ``services`` with their ClusterIP and NodePort allocations, ``endpoint_slices``), plus what
they share (``base``, ``watch``) and the in-memory node leases.

``Registry`` bundles them for the composition root (``pymaster.app``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pymaster.api.admission import AdmissionPolicy
from pymaster.api.kinds import DAEMON_SETS, DEPLOYMENTS, JOBS, REPLICA_SETS, SERVED, served_kind
from pymaster.api.network import NetworkConfig
from pymaster.registry.base import KindRegistry
from pymaster.registry.configmaps import ConfigMapRegistry
from pymaster.registry.endpoint_slices import EndpointSliceRegistry
from pymaster.registry.events import EventRegistry
from pymaster.registry.leases import NodeLeases
from pymaster.registry.nodes import NodeRegistry
from pymaster.registry.pods import PodRegistry
from pymaster.registry.secrets import SecretRegistry
from pymaster.registry.services import ServiceRegistry
from pymaster.registry.workloads import WorkloadRegistry
from pymaster.store.base import Store


class Registry:
    """Every kind's registry over one store.

    Args:
        store: The store.
        leases: The node lease table.
        admission: What pods may do beyond the safe default.
        clock: Epoch seconds (tests pass a fake).
        network: The cluster's address plan (pod CIDRs for the nodes, ClusterIPs, NodePorts).
    """

    def __init__(
        self,
        store: Store,
        leases: NodeLeases,
        admission: AdmissionPolicy | None = None,
        clock: Callable[[], float] = time.time,
        network: NetworkConfig | None = None,
    ):
        self.store = store
        self.leases = leases
        self.pods = PodRegistry(store, admission, clock)
        self.network = network or NetworkConfig()
        self.nodes = NodeRegistry(store, leases, clock, cluster_cidr=self.network.cluster_cidr)
        self.events = EventRegistry(store, clock)
        self.config_maps = ConfigMapRegistry(store, clock)
        self.secrets = SecretRegistry(store, clock)
        self.replica_sets = WorkloadRegistry(store, REPLICA_SETS, admission, clock)
        self.deployments = WorkloadRegistry(store, DEPLOYMENTS, admission, clock)
        self.daemon_sets = WorkloadRegistry(store, DAEMON_SETS, admission, clock)
        self.jobs = WorkloadRegistry(store, JOBS, admission, clock)
        self.workloads: dict[str, WorkloadRegistry] = {
            r.kind.resource: r for r in (self.replica_sets, self.deployments, self.daemon_sets, self.jobs)
        }
        self.services = ServiceRegistry(store, self.network, clock)
        self.endpoint_slices = EndpointSliceRegistry(store, clock)
        kinds = (self.pods, self.nodes, self.events, self.config_maps, self.secrets, *self.workloads.values(),
                 self.services, self.endpoint_slices)
        self._by_resource: dict[str, KindRegistry] = {r.kind.resource: r for r in kinds}

    def has_dependents(self, namespace: str, uid: str) -> bool:
        """Whether any object in ``namespace`` names ``uid`` in its ownerReferences (a scan: only
        for the rare delete of a non-workload owner with a propagationPolicy)."""
        for kind in SERVED.values():
            if kind.namespaced and kind.resource in self._by_resource:
                objects, _ = self.store.list(kind.resource, namespace)
                if any(ref.uid == uid for obj in objects for ref in obj.metadata.owner_references):
                    return True
        return False

    def of(self, resource: str) -> KindRegistry:
        """The registry of a served resource ("pods", "nodes", "deployments" ...).

        Raises:
            ValidationError: on ``resource``: unknown or not served.
        """
        return self._by_resource[served_kind(resource).resource]
