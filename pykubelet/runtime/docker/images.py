"""Images of the Docker runtime: whether an image is present, and pulling it per
imagePullPolicy (the empty policy is Kubernetes' default for the image,
``pymaster.api.pods.default_pull_policy``: Always for ":latest", also when pinned by a digest,
and for an image with neither tag nor digest; else IfNotPresent).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import docker.errors
import docker.utils

from pykubelet.runtime.base import ImageNeverPullError, ImagePullError
from pykubelet.runtime.docker.engine import Engine, explanation
from pymaster.api.pods import default_pull_policy


async def ensure_image(
    engine: Engine, image: str, pull_policy: str, on_pull: Callable[[str], None] | None = None
) -> float | None:
    """Makes ``image`` present per ``pull_policy`` (Always, IfNotPresent, Never; empty: the default).

    Args:
        engine: the engine.
        image: the image reference.
        pull_policy: the container's imagePullPolicy.
        on_pull: called with ``image`` when a pull starts (the Pulling event).

    Returns:
        The seconds the pull took; None when the image was present and not pulled.

    Raises:
        ImageNeverPullError: absent with policy Never.
        ImagePullError: the pull failed (registry unreachable, unknown image ...).
        RuntimeUnavailable: the engine did not answer.
    """
    policy = pull_policy or default_pull_policy(image)
    if policy != "Always":
        if await engine.run("inspect_image", lambda api: _present(api, image), ImagePullError):
            return None
        if policy == "Never":
            raise ImageNeverPullError(f'container image "{image}" is not present with pull policy of Never')
    if on_pull is not None:
        on_pull(image)
    began = time.monotonic()
    await engine.run("pull_image", lambda api: _pull(api, image), ImagePullError)
    return time.monotonic() - began


def _present(api: docker.APIClient, image: str) -> bool:
    try:
        api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _pull(api: docker.APIClient, image: str) -> None:
    repository, tag = docker.utils.parse_repository_tag(image)
    try:
        # The engine reports some failures inside the progress stream, not as an HTTP status.
        for message in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(message, dict) and message.get("error"):
                raise ImagePullError(f'failed to pull image "{image}": {message["error"]}')
    except docker.errors.APIError as err:
        raise ImagePullError(f'failed to pull image "{image}": {explanation(err)}') from err
