"""Engine plumbing of the Docker runtime: the docker-py client (created lazily), the bounded
thread pool that runs its blocking calls, the translation of docker-py/requests exceptions into
the typed errors of ``runtime/base.py``, and the ``observe(operation, seconds, error)`` report of
every engine call.

Every request/response call to the engine runs in the pool, so a slow engine call delays only
the coroutine awaiting it, never the event loop. Long-lived streams (logs, events, exec output)
read in threads of their own (``streams.py``) and use ``call`` to get the same translation and
reporting from there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import docker.utils
import requests

from pykubelet.runtime.base import ContainerNotFound, ContainerRuntimeError, RuntimeUnavailable

T = TypeVar("T")
Observer = Callable[[str, float, bool], None]

# What docker-py raises: its own errors, and requests' for transport failures.
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

_REQUEST_TIMEOUT = 60.0  # seconds per engine request (stop adds the grace period to it)
_STREAM_CONNECTIONS = 8  # client connections beyond the pool's, for the stream threads


class Engine:
    """The docker-py client and the pool its blocking calls run in.

    Args:
        base_url: the engine's address, e.g. "unix:///var/run/docker.sock"; None honours
            DOCKER_HOST (and DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) like the docker CLI.
        max_workers: the bound of the thread pool.
        observe: called as ``observe(operation_type, seconds, error)`` after every engine call;
            it may be called from the stream threads.

    The engine is contacted lazily: constructing an Engine never fails while the engine is down;
    calls raise RuntimeUnavailable until it answers.
    """

    def __init__(self, base_url: str | None, max_workers: int, observe: Observer | None):
        self._base_url = base_url
        self._max_workers = max_workers
        self._observe = observe
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="docker")
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._closed = False

    def api(self) -> docker.APIClient:
        """The docker-py client, created on first use (it asks the engine for its API version).

        Raises:
            RuntimeUnavailable: the engine is unreachable, or the engine is closed.
        """
        with self._client_lock:
            if self._closed:
                raise RuntimeUnavailable("the docker runtime is closed")
            if self._client is None:
                kwargs: dict[str, Any] = (
                    docker.utils.kwargs_from_env() if self._base_url is None else {"base_url": self._base_url}
                )
                try:
                    self._client = docker.APIClient(
                        timeout=_REQUEST_TIMEOUT,
                        max_pool_size=self._max_workers + _STREAM_CONNECTIONS,
                        **kwargs,
                    )
                except docker.errors.DockerException as err:
                    raise RuntimeUnavailable(f"docker engine unreachable: {err}") from err
            return self._client

    def record(self, operation: str, started: float, error: bool) -> None:
        """Reports one engine call that began at ``started`` (time.monotonic) to the observer."""
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, error)

    async def run(
        self,
        operation: str,
        fn: Callable[[docker.APIClient], T],
        error: type[ContainerRuntimeError] = ContainerRuntimeError,
    ) -> T:
        """Runs ``fn(api)`` in the pool and reports it as ``operation``.

        Raises:
            RuntimeUnavailable: the engine did not answer.
            ContainerNotFound: a missing container, when ``error`` is the base class.
            ContainerRuntimeError: ``error`` with Docker's message for any other docker error.
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        failed = False
        try:
            return await loop.run_in_executor(self._pool, self._translated, fn, error)
        except Exception:
            failed = True
            raise
        finally:
            self.record(operation, started, failed)

    def call(
        self,
        operation: str,
        fn: Callable[[docker.APIClient], T],
        error: type[ContainerRuntimeError] = ContainerRuntimeError,
    ) -> T:
        """``run`` for the stream threads: ``fn(api)`` in the calling thread (blocking)."""
        started = time.monotonic()
        failed = False
        try:
            return self._translated(fn, error)
        except Exception:
            failed = True
            raise
        finally:
            self.record(operation, started, failed)

    def _translated(self, fn: Callable[[docker.APIClient], T], error: type[ContainerRuntimeError]) -> T:
        try:
            return fn(self.api())
        except DOCKER_ERRORS as err:
            raise translate(err, error) from err

    def close(self) -> None:
        """Ends the pool (without waiting for calls in flight) and closes the client."""
        self._closed = True  # read under the lock by api(); not taken here: it may be held long
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def explanation(err: docker.errors.APIError) -> str:
    """Docker's own message of an API error."""
    message = err.explanation or str(err)
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


def translate(err: Exception, error: type[ContainerRuntimeError]) -> ContainerRuntimeError:
    """A docker-py/requests exception as one of the runtime's typed errors: ``error`` with
    Docker's message, RuntimeUnavailable when the engine did not answer, ContainerNotFound for
    a missing container where no more specific error applies."""
    if isinstance(err, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return RuntimeUnavailable(f"docker engine unreachable: {err}")
    if isinstance(err, docker.errors.APIError):
        if isinstance(err, docker.errors.NotFound) and error is ContainerRuntimeError:
            return ContainerNotFound(explanation(err))
        return error(explanation(err))
    return error(f"{type(err).__name__}: {err}")
