"""The exec probe (kubelet's ``pkg/probe/exec``): run the probe's command in the container through
``Runtime.exec``; exit code 0 is a success, anything else a failure whose message is the command's
output (stdout then stderr, cut at the kubelet's 10 KiB). A command that outlives the timeout is a
failure (``command "..." timed out``, the kubelet's message with its ExecProbeTimeout gate on);
the runtime leaves it running, as Docker cannot kill an exec'd process.

Where the kubelet's message would be empty (a failing command that printed nothing), the exit
code is named instead, so an ``Unhealthy`` event always says something.

The engine refusing the exec (container gone or stopped, engine unavailable) is not the
container's failure: the outcome is unknown and thrown away, as the kubelet does with probe errors.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Sequence

from pykubelet.prober.results import Outcome, Result
from pykubelet.runtime.base import ContainerRuntimeError, Runtime

log = logging.getLogger(__name__)

MAX_OUTPUT = 10 * 1024  # kubelet's maxReadLength


def timeout_message(command: Sequence[str]) -> str:
    """What a timed-out exec probe says (the kubelet's TimeoutError text)."""
    # Go's %q of the command joined by spaces; JSON's quoting is the same for what commands hold.
    return f"command {json.dumps(' '.join(command))} timed out"


async def probe(runtime: Runtime, container_id: str, command: Sequence[str], timeout: float) -> Outcome:
    """Runs ``command`` in ``container_id`` and judges it.

    Args:
        runtime: the container runtime.
        container_id: the running container to run it in.
        command: the probe's exec.command.
        timeout: seconds the command may take.

    Returns:
        Success on exit 0; failure on any other exit code or a timeout; unknown when the engine
        could not run it.
    """
    if not command:
        return Outcome(Result.FAILURE, "exec probe has no command")
    try:
        result = await runtime.exec(container_id, list(command), timeout)
    except ContainerRuntimeError as err:
        log.debug("exec probe not run container_id=%s error=%s", container_id[:12], err)
        return Outcome(Result.UNKNOWN, f"exec probe not run: {err.message}")
    if result.timed_out:
        return Outcome(Result.FAILURE, timeout_message(command))
    output = (result.stdout + result.stderr)[:MAX_OUTPUT].decode("utf-8", "replace").rstrip()
    if result.exit_code == 0:
        return Outcome(Result.SUCCESS, output)
    if not output:
        output = f"command {shlex.join(command)} exited with code {result.exit_code}"
    return Outcome(Result.FAILURE, output)
