"""Where a rollout stands, in kubectl's words (its DeploymentStatusViewer and
DaemonSetStatusViewer), and what ``pyctl rollout`` supports per kind (``Rollout``, registered in
``pymaster.cli.kinds``). Pure functions of the object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymaster.api import objects_pb2


class RolloutFailed(Exception):
    """The rollout cannot finish (progress deadline exceeded, no status for this strategy)."""


def deployment_status(deployment: objects_pb2.Deployment) -> tuple[str, bool]:
    """(the message, whether the rollout is done), as ``kubectl rollout status deployment``.

    Raises:
        RolloutFailed: the Deployment's Progressing condition says ProgressDeadlineExceeded.
    """
    name, spec, status = deployment.metadata.name, deployment.spec, deployment.status
    if deployment.metadata.generation > status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    for condition in status.conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    wanted = spec.replicas if spec.HasField("replicas") else 1
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if status.updated_replicas < wanted:
        return f"{waiting}{status.updated_replicas} out of {wanted} new replicas have been updated...", False
    if status.replicas > status.updated_replicas:
        old = status.replicas - status.updated_replicas
        return f"{waiting}{old} old replicas are pending termination...", False
    if status.available_replicas < status.updated_replicas:
        return (f"{waiting}{status.available_replicas} of {status.updated_replicas} updated replicas are "
                "available..."), False
    return f'deployment "{name}" successfully rolled out', True


def daemon_set_status(ds: objects_pb2.DaemonSet) -> tuple[str, bool]:
    """(the message, whether the rollout is done), as ``kubectl rollout status daemonset``.

    Raises:
        RolloutFailed: the DaemonSet does not roll (updateStrategy OnDelete).
    """
    name, status = ds.metadata.name, ds.status
    if ds.spec.update_strategy.type not in ("", "RollingUpdate"):
        raise RolloutFailed("rollout status is only available for RollingUpdate strategy type")
    if ds.metadata.generation > status.observed_generation:
        return "Waiting for daemon set spec update to be observed...", False
    waiting = f'Waiting for daemon set "{name}" rollout to finish: '
    desired = status.desired_number_scheduled
    if status.updated_number_scheduled < desired:
        updated = status.updated_number_scheduled
        return f"{waiting}{updated} out of {desired} new pods have been updated...", False
    if status.number_available < desired:
        return f"{waiting}{status.number_available} of {desired} updated pods are available...", False
    return f'daemon set "{name}" successfully rolled out', True


@dataclass(frozen=True)
class Rollout:
    """What ``pyctl rollout`` does for a kind.

    Attributes:
        status: The kind's status viewer: obj -> (message, done); raises RolloutFailed.
        history: ``history`` and ``undo`` work (from the owned ReplicaSets' revisions).
        pausable: ``pause`` and ``resume`` work (spec.paused).
    """

    status: Callable[[Any], tuple[str, bool]]
    history: bool = False
    pausable: bool = False


DEPLOYMENT = Rollout(deployment_status, history=True, pausable=True)
DAEMON_SET = Rollout(daemon_set_status)
