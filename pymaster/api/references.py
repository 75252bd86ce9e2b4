"""Which ConfigMaps and Secrets a pod references: what its node may read (the master's node
authorizer) and what its agent must fetch to run it.

A pod references an object through its volumes (``configMap``, ``secret``, and the ``configMap``
and ``secret`` sources of a ``projected`` volume) and through the environment of its containers,
init containers included (``env[].valueFrom.configMapKeyRef``/``secretKeyRef``,
``envFrom[].configMapRef``/``secretRef``). Optional references count too: the agent still asks
for the object, and may be told it does not exist. Objects live in the pod's namespace, so a
reference is (resource, name).
"""

from __future__ import annotations

from pymaster.api import objects_pb2
from pymaster.api.kinds import CONFIG_MAPS, SECRETS

Reference = tuple[str, str]  # (resource, name): ("secrets", "db-password")


def referenced(pod: objects_pb2.Pod) -> set[Reference]:
    """The (resource, name) of every ConfigMap ("configmaps") and Secret ("secrets") the pod
    references, in the pod's namespace. Empty names (an invalid pod) are left out."""
    found: set[Reference] = set()
    for volume in pod.spec.volumes:
        if volume.HasField("config_map"):
            found.add((CONFIG_MAPS.resource, volume.config_map.name))
        if volume.HasField("secret"):
            found.add((SECRETS.resource, volume.secret.secret_name))
        for source in volume.projected.sources:
            if source.HasField("config_map"):
                found.add((CONFIG_MAPS.resource, source.config_map.name))
            if source.HasField("secret"):
                found.add((SECRETS.resource, source.secret.name))
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        for var in container.env:
            source = var.value_from
            if source.HasField("config_map_key_ref"):
                found.add((CONFIG_MAPS.resource, source.config_map_key_ref.name))
            if source.HasField("secret_key_ref"):
                found.add((SECRETS.resource, source.secret_key_ref.name))
        for env_from in container.env_from:
            if env_from.HasField("config_map_ref"):
                found.add((CONFIG_MAPS.resource, env_from.config_map_ref.name))
            if env_from.HasField("secret_ref"):
                found.add((SECRETS.resource, env_from.secret_ref.name))
    return {ref for ref in found if ref[1]}
