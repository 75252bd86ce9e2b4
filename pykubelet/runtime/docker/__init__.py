"""The Runtime on the real Docker Engine, with docker-py: the only package of pykube importing
docker (like Nomad's drivers/docker).

Modules: ``engine`` (client, bounded thread pool, error translation, observation), ``streams``
(the thread-to-async pump of logs, events and exec output), ``convert`` (pure Docker data <->
runtime types and pod specs -> Docker arguments), ``exec_io`` (what both execs share: the
hijacked connection, Docker's stream framing), ``exec_sync`` (exec with a timeout, for probes),
``exec_stream`` (interactive exec, for ``pyctl exec``) and ``runtime`` (``DockerRuntime``, the
operations).
"""

from pykubelet.runtime.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime"]
