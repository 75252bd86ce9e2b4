"""The Runtime on the real Docker Engine, with docker-py: the only package of pykube importing
docker (like Nomad's drivers/docker).

Modules: ``engine`` (client, bounded thread pool, error translation, observation), ``streams``
(the thread-to-async pump of logs, events and exec output), ``convert`` (pure Docker data <->
runtime types and pod specs -> Docker arguments), ``exec_sync`` (exec with a timeout) and
``runtime`` (``DockerRuntime``, the operations).
"""

from pykubelet.runtime.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime"]
