"""The master's admission policy for pods: what a valid pod may still not do on this cluster.

By default a pod may not run privileged containers, use the host's network namespace or mount a
host path; ``pymaster --allow-privileged``, ``--allow-host-network`` and ``--allowed-host-path
PREFIX`` (repeatable) open them up. A refusal is PERMISSION_DENIED with the field path and the
flag that would allow it, e.g. ``spec.containers[0].securityContext.privileged: privileged
containers are not allowed on this cluster (pymaster --allow-privileged)``.

Host paths are normalized lexically (``/data/../etc`` is ``/etc``) and matched on whole path
components (prefix ``/data`` allows ``/data`` and ``/data/x``, never ``/database``). The master
cannot see symlinks on the node: the agent checks the resolved path again before mounting.

Pure: no store, no gRPC; the servicers call ``admit_pod`` after validation.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from pymaster.api import objects_pb2
from pymaster.api.errors import Forbidden, ValidationError


def normalize_host_path(path: str) -> str:
    """The lexically normalized absolute form of ``path`` (no ``.``, ``..``, ``//`` or trailing ``/``).

    Raises:
        ValueError: ``path`` is not absolute or contains a NUL byte.
    """
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    if "\0" in path:
        raise ValueError("must not contain a NUL byte")
    # normpath keeps a leading "//" (POSIX allows it to mean something else): one "/" is enough.
    return "/" + posixpath.normpath(path).lstrip("/")


def path_is_under(path: str, prefix: str) -> bool:
    """True when normalized ``path`` is ``prefix`` or inside it, component-wise."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class AdmissionPolicy:
    """What pods may do beyond the safe default.

    Attributes:
        allow_privileged: Containers may set securityContext.privileged.
        allow_host_network: Pods may set spec.hostNetwork.
        allowed_host_paths: Normalized prefixes hostPath volumes may use; empty: none.
    """

    allow_privileged: bool = False
    allow_host_network: bool = False
    allowed_host_paths: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, *, allow_privileged: bool = False, allow_host_network: bool = False,
        allowed_host_paths: Iterable[str] = (),
    ) -> AdmissionPolicy:
        """A policy from flag values; host path prefixes are normalized.

        Raises:
            ValueError: a prefix is not an absolute path.
        """
        prefixes: list[str] = []
        for prefix in allowed_host_paths:
            try:
                prefixes.append(normalize_host_path(prefix))
            except ValueError as err:
                raise ValueError(f"allowed host path {prefix!r}: {err}") from None
        return cls(allow_privileged, allow_host_network, tuple(dict.fromkeys(prefixes)))


def admit_pod(pod: objects_pb2.Pod, policy: AdmissionPolicy) -> None:
    """Refuses what ``policy`` does not allow, first problem first (containers, host network,
    volumes).

    Raises:
        Forbidden: PERMISSION_DENIED, message ``<field path>: <why> (<the flag that allows it>)``.
        ValidationError: a hostPath that is not absolute.
    """
    spec = pod.spec
    if not policy.allow_privileged:
        for i, container in enumerate(spec.containers):
            if container.security_context.privileged:
                raise Forbidden(
                    f"spec.containers[{i}].securityContext.privileged: privileged containers are not "
                    "allowed on this cluster (pymaster --allow-privileged)"
                )
    if spec.host_network and not policy.allow_host_network:
        raise Forbidden(
            "spec.hostNetwork: host networking is not allowed on this cluster (pymaster --allow-host-network)"
        )
    for i, volume in enumerate(spec.volumes):
        if not volume.HasField("host_path"):
            continue
        field = f"spec.volumes[{i}].hostPath.path"
        try:
            path = normalize_host_path(volume.host_path.path)
        except ValueError as err:
            raise ValidationError(field, str(err)) from None
        if not any(path_is_under(path, prefix) for prefix in policy.allowed_host_paths):
            allowed = ", ".join(policy.allowed_host_paths) or "none"
            raise Forbidden(
                f"{field}: host path {path} is not under an allowed prefix (allowed: {allowed}; "
                "pymaster --allowed-host-path PREFIX)"
            )
