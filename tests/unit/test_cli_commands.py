"""pyctl's commands against the real master in-process (no agent, no Docker): manifests mixing
kinds, what the server refuses per kind, get/describe/delete of events, and describe of a Pending
pod saying why. Each command runs its handler with captured output and, where ages show, a fixed
clock."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable

import pytest
from master_fixtures import eventually

from pymaster.app import MasterApp
from pymaster.cli.context import CommandError, Context
from pymaster.cli.main import parse_args
from pymaster.client import Client

# The commands' now, fixed; the events' times are before it (the master takes no time after its own now).
NOW = float(int(time.time()))


def _at(seconds_ago: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def event_yaml(name: str, about: str, reason: str, *, first: int, last: int, count: int = 1,
               type_: str = "Normal", namespace: str = "team", uid: str = "", labels: str = "{}") -> str:
    return (
        f"apiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n"
        f"involvedObject: {{kind: Pod, name: {about}, namespace: {namespace}, uid: '{uid}'}}\n"
        f"reason: {reason}\nmessage: {reason} {about}\ntype: {type_}\ncount: {count}\n"
        f"source: {{component: tests}}\nfirstTimestamp: {_at(first)}\nlastTimestamp: {_at(last)}\n"
    )


POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: busybox}]}\n"
NODE = "apiVersion: v1\nkind: Node\nmetadata: {name: n9}\n"


class Pyctl:
    """Runs pyctl command lines against the master; ``clock`` is what the commands take as now."""

    def __init__(self, master: MasterApp):
        self.config = str(master.admin_config_path)
        self.clock: Callable[[], float] = lambda: NOW

    async def __call__(
        self, *argv: str, stdin: str = "", out: io.StringIO | None = None
    ) -> tuple[int, str, str]:
        args = parse_args(["--config", self.config, *argv])
        out = out or io.StringIO()
        err = io.StringIO()
        ctx = Context(connect=lambda: Client(config_path=args.config), namespace=args.namespace, out=out,
                      err=err, stdin=io.StringIO(stdin), clock=self.clock)
        try:
            code = await args.handler(args, ctx)
        finally:
            await ctx.close()
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def pyctl(master: MasterApp) -> Pyctl:
    return Pyctl(master)


async def test_create_takes_every_kind_and_prints_each_refusal(pyctl: Pyctl) -> None:
    manifest = f"{POD}---\n{event_yaml('web.a', 'web', 'Checked', first=60, last=60)}---\n{NODE}"
    code, out, err = await pyctl("create", "-f", "-", stdin=manifest)
    assert (code, out) == (1, "pod/web created\nevent/web.a created\n")
    assert err.startswith("Error from server (MethodNotAllowed): nodes ") and err.count("\n") == 1
    code, out, err = await pyctl("apply", "-f", "-", stdin=manifest)
    # Created without a last-applied record: the first apply adds it (kubectl says configured too).
    assert (code, out) == (1, "pod/web configured\n")
    assert (await pyctl("apply", "-f", "-", stdin=POD))[1] == "pod/web unchanged\n"
    refused = err.splitlines()
    assert [line.partition(": ")[0] for line in refused] == ["Error from server (MethodNotAllowed)"] * 2
    assert refused[0].startswith("Error from server (MethodNotAllowed): events cannot be applied")


async def test_a_bad_document_stops_everything_before_sending(pyctl: Pyctl) -> None:
    manifest = f"{POD}---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: web}}\n"
    with pytest.raises(CommandError, match=r'document 2: kind: unsupported kind "StatefulSet" \(apps/v1\); '
                                        r"supported: v1 Pod, v1 Node, v1 Event, v1 ConfigMap, v1 Secret"):
        await pyctl("apply", "-f", "-", stdin=manifest)
    assert (await pyctl("get", "pods"))[2] == "No resources found in default namespace.\n"


async def test_get_events_sorted_by_last_seen_with_selectors(pyctl: Pyctl) -> None:
    manifest = "---\n".join([
        event_yaml("web.b", "web", "Started", first=30, last=30),
        event_yaml("web.a", "web", "BackOff", first=600, last=90, count=4, type_="Warning"),
        event_yaml("db.a", "db", "Pulled", first=10, last=10),
    ])
    assert (await pyctl("create", "-f", "-", stdin=manifest))[0] == 0
    code, out, _ = await pyctl("get", "events", "-n", "team")
    assert (code, out.splitlines()) == (0, [
        "LAST SEEN   TYPE      REASON    OBJECT    MESSAGE",
        "90s         Warning   BackOff   pod/web   BackOff web",
        "30s         Normal    Started   pod/web   Started web",
        "10s         Normal    Pulled    pod/db    Pulled db",
    ])
    _, out, _ = await pyctl("get", "ev", "-A", "--field-selector", "involvedObject.name=web", "-o", "wide")
    assert [line.split()[:2] + line.split()[-3:] for line in out.splitlines()] == [
        ["NAMESPACE", "LAST", "SEEN", "COUNT", "NAME"],
        ["team", "90s", "10m", "4", "web.a"],
        ["team", "30s", "30s", "1", "web.b"],
    ]
    assert (await pyctl("get", "event", "web.a", "-n", "team", "-o", "name"))[1] == "event/web.a\n"
    _, _, err = await pyctl("get", "events")
    assert err == "No resources found in default namespace.\n"


async def test_get_events_watch_prints_new_events(pyctl: Pyctl) -> None:
    out = io.StringIO()
    watching = asyncio.create_task(pyctl("get", "events", "-n", "team", "-w", out=out))
    try:
        await pyctl("create", "-f", "-", stdin=event_yaml("web.w", "web", "Killing", first=5, last=5))
        await eventually(lambda: asyncio.sleep(0, out.getvalue()), lambda text: "Killing" in text)
        assert out.getvalue().splitlines() == [
            "LAST SEEN   TYPE     REASON    OBJECT    MESSAGE",
            "5s          Normal   Killing   pod/web   Killing web",
        ]
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


async def test_describe_pending_pod_says_why_and_keeps_its_own_events(pyctl: Pyctl) -> None:
    pyctl.clock = time.time
    assert (await pyctl("apply", "-f", "-", stdin=POD))[0] == 0
    uid = json.loads((await pyctl("get", "pod", "web", "-o", "json"))[1])["metadata"]["uid"]
    others = "---\n".join([
        event_yaml("web.mine", "web", "Noted", first=1, last=1, namespace="default", uid=uid),
        event_yaml("web.old", "web", "Stale", first=1, last=1, namespace="default", uid="another-uid"),
        event_yaml("web.elsewhere", "web", "Elsewhere", first=1, last=1),
    ])
    assert (await pyctl("create", "-f", "-", stdin=others))[0] == 0

    async def described() -> str:
        return (await pyctl("describe", "pod", "web"))[1]

    text = await eventually(described, lambda text: "FailedScheduling" in text)
    events = text[text.index("\nEvents:\n") + 1:].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[2].split() == ["----", "------", "----", "----", "-------"]
    reasons = {line.split()[1]: line.split()[3] for line in events[3:]}
    assert reasons.keys() >= {"FailedScheduling", "Noted"}
    assert reasons["FailedScheduling"] == "default-scheduler"
    assert "Stale" not in reasons and "Elsewhere" not in reasons
    assert "Warning  FailedScheduling" in text


async def test_describe_and_delete_events(pyctl: Pyctl) -> None:
    manifest = "---\n".join([
        event_yaml("web.a", "web", "Started", first=30, last=30, labels="{app: web}"),
        event_yaml("web.b", "web", "Pulled", first=20, last=20, labels="{app: web}"),
        event_yaml("db.a", "db", "Pulled", first=10, last=10),
    ])
    assert (await pyctl("create", "-f", "-", stdin=manifest))[0] == 0
    _, out, _ = await pyctl("describe", "ev", "web.a", "-n", "team")
    lines = out.splitlines()
    assert [line.split() for line in lines[:4]] == [
        ["Name:", "web.a"], ["Namespace:", "team"], ["Labels:", "app=web"], ["Annotations:", "<none>"],
    ]
    assert ["Reason:", "Started"] in [line.split() for line in lines]
    assert lines[-1].split() == ["Events:", "<none>"]
    assert await pyctl("delete", "events", "-l", "app=web", "-n", "team") == (
        0, 'event "web.a" deleted\nevent "web.b" deleted\n', "")
    assert await pyctl("delete", "event", "db.a", "-n", "team") == (0, 'event "db.a" deleted\n', "")
    assert (await pyctl("get", "events", "-n", "team"))[2] == "No resources found in team namespace.\n"
    await pyctl("create", "-f", "-", stdin=manifest)
    assert (await pyctl("delete", "events", "--all", "-n", "team"))[1].count("deleted") == 3
    await pyctl("create", "-f", "-", stdin=manifest)
    assert (await pyctl("delete", "-f", "-", "--wait=false", stdin=manifest))[1].count("deleted") == 3
