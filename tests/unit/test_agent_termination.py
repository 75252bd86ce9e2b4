"""Termination messages (pykubelet.termination) against the shared fake runtime: the file's
content, the log fallback only for a failed container that wrote nothing, read once per dead
container and forgotten with it."""

from __future__ import annotations

from agent_builders import UID, app, infra, make_pod, observed

from pykubelet.termination import TerminationMessages
from tests.fakes import FakeRuntime


async def test_messages_from_the_file_else_the_log_tail_on_failure() -> None:
    pod = make_pod("file", "logs", "ok")
    pod.spec.containers[1].termination_message_policy = "FallbackToLogsOnError"
    pod.spec.containers[2].termination_message_policy = "FallbackToLogsOnError"
    runtime = FakeRuntime()
    runtime.volumes.messages[("file", 0)] = "disk full"
    obs = observed(infra(), app("file", state="exited", code=2), app("logs", state="exited", code=1),
                   app("ok", state="exited", code=0))
    runtime.pods[UID] = obs
    messages = TerminationMessages(runtime, runtime.volumes)
    assert await messages.collect(pod, obs) == {
        "file-0": "disk full",
        "logs-0": "log of logs-0\n",  # failed, wrote nothing: its log
        "ok-0": "",  # succeeded: no fallback
    }
    # Read once: a later change of the file is not seen for the same dead container.
    runtime.volumes.messages[("file", 0)] = "changed"
    assert (await messages.collect(pod, obs))["file-0"] == "disk full"
    # A container that is gone is forgotten; so is the whole pod.
    gone = observed(infra(), app("ok", state="exited", code=0))
    assert await messages.collect(pod, gone) == {"ok-0": ""}
    messages.forget(UID)
    assert await messages.collect(pod, None) == {}


async def test_running_containers_have_no_message() -> None:
    pod = make_pod()
    runtime = FakeRuntime()
    assert await TerminationMessages(runtime, runtime.volumes).collect(pod, observed(infra(), app())) == {}
