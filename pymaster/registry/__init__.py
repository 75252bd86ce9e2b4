"""The registry: per kind, the rules for writing it (kube-apiserver's "strategies"), over the
store. Servicers, the scheduler and the controllers write through it alike; one module per kind
(``pods``, ``nodes``, ``events``, ``configmaps``, ``secrets``), plus what they share (``base``,
``watch``) and the in-memory node leases.

``Registry`` bundles them for the composition root (``pymaster.app``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pymaster.api.admission import AdmissionPolicy
from pymaster.api.kinds import served_kind
from pymaster.registry.base import KindRegistry
from pymaster.registry.configmaps import ConfigMapRegistry
from pymaster.registry.events import EventRegistry
from pymaster.registry.leases import NodeLeases
from pymaster.registry.nodes import NodeRegistry
from pymaster.registry.pods import PodRegistry
from pymaster.registry.secrets import SecretRegistry
from pymaster.store.base import Store


class Registry:
    """Every kind's registry over one store.

    Args:
        store: The store.
        leases: The node lease table.
        admission: What pods may do beyond the safe default.
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(
        self,
        store: Store,
        leases: NodeLeases,
        admission: AdmissionPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.leases = leases
        self.pods = PodRegistry(store, admission, clock)
        self.nodes = NodeRegistry(store, leases, clock)
        self.events = EventRegistry(store, clock)
        self.config_maps = ConfigMapRegistry(store, clock)
        self.secrets = SecretRegistry(store, clock)
        self._by_resource: dict[str, KindRegistry] = {
            r.kind.resource: r for r in (self.pods, self.nodes, self.events, self.config_maps, self.secrets)
        }

    def of(self, resource: str) -> KindRegistry:
        """The registry of a served resource ("pods", "nodes", "events", "configmaps", "secrets").

        Raises:
            ValidationError: on ``resource``: unknown or not served.
        """
        return self._by_resource[served_kind(resource).resource]
