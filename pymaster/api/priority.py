"""Pod priority, as Kubernetes' Priority admission plugin resolves it at creation: the
``priorityClassName`` names a class whose value becomes ``spec.priority`` (0 without a class).

pykube has the two built-in classes and no PriorityClass objects yet (a name it does not know is
refused, as Kubernetes refuses a missing class); a pod may state ``priority`` itself only as the
value its class resolves to, as in Kubernetes. The scheduler pops higher priorities first;
preemption is not implemented.
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.errors import Forbidden

SYSTEM_CLUSTER_CRITICAL = "system-cluster-critical"
SYSTEM_NODE_CRITICAL = "system-node-critical"
BUILT_IN_CLASSES = {SYSTEM_CLUSTER_CRITICAL: 2000000000, SYSTEM_NODE_CRITICAL: 2000001000}
DEFAULT_PRIORITY = 0


def resolve_priority(pod: objects_pb2.Pod) -> None:
    """Sets ``spec.priority`` from ``spec.priorityClassName``, in place.

    Raises:
        Forbidden: an unknown class, or a stated priority other than the class's value.
    """
    spec = pod.spec
    name = spec.priority_class_name
    if name and name not in BUILT_IN_CLASSES:
        raise Forbidden(f"no PriorityClass with name {name} was found")
    value = BUILT_IN_CLASSES.get(name, DEFAULT_PRIORITY)
    if spec.HasField("priority") and spec.priority != value:
        raise Forbidden(
            f"the integer value of priority ({spec.priority}) must not be provided in pod spec; priority "
            f"admission controller computed {value} from the given PriorityClass name"
        )
    spec.priority = value
