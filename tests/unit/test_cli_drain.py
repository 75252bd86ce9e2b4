"""pyctl drain (pymaster.cli.drain): which pods kubectl's rules evict, skip or refuse, with its
messages, and the command line."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.cli.drain import plan_drain
from pymaster.cli.main import parse_args
from pymaster.cli.targets import UsageError


def pod(name: str, owner: str = "", phase: str = "Running", emptydir: bool = False,
        mirror: bool = False, controller: bool = True) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.namespace, p.metadata.name = "default", name
    if owner:
        p.metadata.owner_references.add(kind=owner, name="o", controller=controller)
    if mirror:
        p.metadata.annotations["kubernetes.io/config.mirror"] = "x"
    if emptydir:
        p.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    p.status.phase = phase
    return p


PODS = [
    pod("bare"),
    pod("managed", owner="ReplicaSet"),
    pod("not-controller", owner="ReplicaSet", controller=False),
    pod("ds", owner="DaemonSet"),
    pod("scratch", owner="ReplicaSet", emptydir=True),
    pod("mirror", mirror=True),
    pod("done", phase="Succeeded", emptydir=True),
]
UNMANAGED = "cannot delete Pods that declare no controller (use --force to override)"
DAEMONSET = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
LOCAL = "cannot delete Pods with local storage (use --delete-emptydir-data to override)"


@pytest.mark.parametrize(
    ("flags", "deleted", "errors", "warnings"),
    [
        ({}, ["managed", "done"],
         {UNMANAGED: ["default/bare", "default/not-controller"], DAEMONSET: ["default/ds"],
          LOCAL: ["default/scratch"]},
         {}),
        ({"force": True, "ignore_daemonsets": True, "delete_emptydir_data": True},
         ["bare", "managed", "not-controller", "scratch", "done"], {},
         {"deleting Pods that declare no controller": ["default/bare", "default/not-controller"],
          "ignoring DaemonSet-managed Pods": ["default/ds"],
          "deleting Pods with local storage": ["default/scratch"]}),
    ],
)
def test_plan_drain(flags, deleted, errors, warnings):
    options = {"force": False, "ignore_daemonsets": False, "delete_emptydir_data": False, **flags}
    plan = plan_drain(PODS, **options)
    assert [p.metadata.name for p in plan.delete] == deleted
    assert plan.errors == errors
    assert plan.warnings == warnings


def test_error_text_is_kubectls():
    plan = plan_drain([pod("x")], force=False, ignore_daemonsets=False, delete_emptydir_data=False)
    assert plan.error_text() == f"{UNMANAGED}: default/x"
    plan = plan_drain([pod("x"), pod("d", owner="DaemonSet")], force=False, ignore_daemonsets=False,
                      delete_emptydir_data=False)
    # One message per kind of refusal, in the order the pods came.
    assert plan.error_text() == f"[{UNMANAGED}: default/x, {DAEMONSET}: default/d]"


def test_command_line():
    args = parse_args(["drain", "node/n1", "--force", "--ignore-daemonsets", "--timeout", "30s",
                       "--grace-period", "5", "--delete-emptydir-data"])
    assert (args.node, args.force, args.ignore_daemonsets, args.timeout, args.grace_period) == (
        "n1", True, True, 30.0, 5)
    assert args.delete_emptydir_data
    defaults = parse_args(["drain", "n1"])
    assert (defaults.timeout, defaults.grace_period, defaults.force) == (0.0, -1, False)
    with pytest.raises(UsageError):
        parse_args(["drain", "pod/web"])
