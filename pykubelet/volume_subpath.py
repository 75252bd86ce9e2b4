"""``volumeMounts[].subPath`` and ``subPathExpr``: a container mounts one file or directory of a
volume instead of its root (the kubelet's ``subpath`` package).

- ``subPathExpr`` is expanded with the container's env (``$(VAR)``, ``pykubelet.expansion``); a
  variable that is not defined, or empty, fails the container (``missing value for VAR``), and
  so does an expansion that is absolute or holds ``..`` (CreateContainerConfigError, as in
  Kubernetes).
- The path is opened inside the volume one component at a time without the kernel following a
  symlink (``host_paths.open_in_volume``): a symlink a container planted may point elsewhere in
  the volume, never out of it. Missing directories are created with the volume root's mode.
- What was opened is bind-mounted onto a staging mount point of the agent's,
  ``<pod dir>/volume-subpaths/<volume>/<container>/<mount index>``, and Docker mounts that: a
  symlink swapped in later changes nothing. Each container start stages afresh.
- So a subPath of a configMap or secret volume is the file of one version: the container does
  not see later updates (as in Kubernetes: only a mount of the whole volume follows them).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from pykubelet.expansion import expand, mapping
from pykubelet.host_paths import open_in_volume
from pykubelet.runtime.base import CreateContainerConfigError, CreateContainerError
from pykubelet.volume_mounts import rebind
from pymaster.api import objects_pb2

STAGING_SUBDIR = "volume-subpaths"
_STAGING_MODE = 0o750  # a staging mount point: covered by the bind mount, never seen by pods


def sub_path(mount: objects_pb2.VolumeMount, container: str, env: Sequence[tuple[str, str]]) -> str:
    """The mount's subPath, with a subPathExpr expanded from ``env`` ("" for the whole volume).

    Raises:
        CreateContainerConfigError: a variable of subPathExpr has no value, or the result is an
            absolute path or holds ``..``.
    """
    path = mount.sub_path
    if mount.sub_path_expr:
        values = mapping(env)
        missing: list[str] = []

        def lookup(name: str) -> str:
            value = values(name)
            if not value:
                missing.append(name)
            return value or ""

        path = expand(mount.sub_path_expr, lookup)
        if missing:
            raise CreateContainerConfigError(
                f'failed to prepare subPath for volumeMount "{mount.name}" of container "{container}": '
                f"missing value for {', '.join(sorted(set(missing)))}"
            )
    if path.startswith("/"):
        raise CreateContainerConfigError(f"error SubPath `{path}` must not be an absolute path")
    if ".." in path.split("/"):
        raise CreateContainerConfigError(f"unable to provision SubPath `{path}`: must not contain '..'")
    return path


def stage_sub_path(
    volume_root: str, path: str, staging: Path, real_staging: str, lock: threading.Lock, what: str
) -> None:
    """Opens ``path`` inside the volume at ``volume_root`` (created as a directory when missing)
    and bind-mounts it onto ``staging`` (``real_staging``: that path with symlinks resolved, as the
    mount table shows it), replacing an earlier start's bind (blocking).

    Raises:
        CreateContainerConfigError: the path leads out of the volume (or through a file).
        CreateContainerError: the agent may not mount (not root).
        OSError: creating a directory or the mount point failed.
    """
    root = os.path.realpath(volume_root)
    # The kubelet creates a missing subPath with the volume root's mode (setgid of fsGroup too).
    dir_mode = os.stat(root).st_mode & 0o7777
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_in_volume(root, path, dir_mode, what))
        except CreateContainerError as err:  # the pod's doing, as the kubelet classifies it
            raise CreateContainerConfigError(err.message) from None
        stack.enter_context(lock)
        try:
            rebind(opened.fd, opened.is_dir, staging, real_staging, _STAGING_MODE)
        except PermissionError as err:
            raise CreateContainerError(
                f"{what} is bind-mounted on the host: the agent must run as root (CAP_SYS_ADMIN) ({err})"
            ) from err
