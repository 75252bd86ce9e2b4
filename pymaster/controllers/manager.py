"""The controller manager (kube-controller-manager's workload half): one shared informer per kind
and the ReplicaSet, Deployment, DaemonSet, Job, EndpointSlice and garbage-collector controllers over
them, started and stopped together by the master's composition root. Each controller's work queue
reports under Kubernetes' ``workqueue_*`` metric names, labelled with the controller's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from pymaster.controllers.daemonset import DaemonSetController
from pymaster.controllers.deployment import DeploymentController
from pymaster.controllers.endpointslice import EndpointSliceController
from pymaster.controllers.garbage_collector import GarbageCollector
from pymaster.controllers.informer import InformerFactory
from pymaster.controllers.job import JobController
from pymaster.controllers.replicaset import ReplicaSetController
from pymaster.controllers.runtime import Controller
from pymaster.controllers.workqueue import WorkQueueMetrics
from pymaster.registry import Registry


class ControllerManager:
    """The workload controllers of one master.

    Args:
        registry: The registry the controllers write through (the same rules as users').
        metrics_registry: Where the work queues' metrics go.
        clock: Epoch seconds (tests pass a fake).
    """

    def __init__(
        self,
        registry: Registry,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.informers = InformerFactory(registry.store)
        metrics = WorkQueueMetrics(metrics_registry)
        self.controllers: list[Controller] = [
            cls(registry, self.informers, metrics, clock)
            for cls in (ReplicaSetController, DeploymentController, DaemonSetController, JobController,
                        EndpointSliceController, GarbageCollector)
        ]

    async def start(self) -> None:
        """Starts the informers, then every controller (each waits for its informers' first list)."""
        self.informers.start()
        for controller in self.controllers:
            await controller.start()

    async def stop(self) -> None:
        for controller in self.controllers:
            await controller.stop()
        await self.informers.stop()
