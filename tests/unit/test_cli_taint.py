"""pyctl taint (pymaster.cli.taint): kubectl's taint specs, its merge of old and new taints and
the word it prints, and the command line."""

from __future__ import annotations

import re

import pytest

from pymaster.api import objects_pb2
from pymaster.cli.context import CommandError
from pymaster.cli.describe import describe_node
from pymaster.cli.main import parse_args
from pymaster.cli.taint import apply_taints, parse_taints, split_taint_args


def t(key: str, effect: str, value: str = "") -> objects_pb2.Taint:
    return objects_pb2.Taint(key=key, value=value, effect=effect)


def show(taints) -> list[str]:
    return [f"{x.key}={x.value}:{x.effect}" for x in taints]


def test_parse_taints():
    specs = ["dedicated=gpu:NoSchedule", "k:NoExecute", "a:PreferNoSchedule-", "b-", "c=v:NoSchedule-"]
    changes = parse_taints(specs)
    assert show(changes.add) == ["dedicated=gpu:NoSchedule", "k=:NoExecute"]
    # The Kubernetes docs' removal, key=value:Effect-: the value is ignored, as by kubectl.
    assert changes.remove == (("a", "PreferNoSchedule"), ("b", ""), ("c", "NoSchedule"))


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["dedicated=gpu"], "invalid taint spec: dedicated=gpu"),
        (["=v:NoSchedule"], "invalid taint spec: =v:NoSchedule"),
        (["k:"], "invalid taint spec: k:"),
        (["-"], "invalid taint spec: -"),
        (["k=v:Sometimes"], "invalid taint effect: Sometimes, unsupported taint effect"),
        (["k:Sometimes-"], "invalid taint effect: Sometimes, unsupported taint effect"),
        (["k=a:NoSchedule", "k=b:NoSchedule"],
         "duplicated taints with the same key and effect: k:NoSchedule"),
        (["k=a:NoSchedule", "k-"],
         "can not both modify and remove the following taint(s) in the same command: k:NoSchedule"),
    ],
)
def test_parse_taints_refuses(specs, message):
    with pytest.raises(CommandError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_taints(specs)


OLD = [t("a", "NoSchedule", "1"), t("a", "NoExecute"), t("b", "PreferNoSchedule")]


@pytest.mark.parametrize(
    ("specs", "overwrite", "taints", "word"),
    [
        (["c=3:NoSchedule"], False,
         ["c=3:NoSchedule", "a=1:NoSchedule", "a=:NoExecute", "b=:PreferNoSchedule"], "tainted"),
        (["a-"], False, ["b=:PreferNoSchedule"], "untainted"),
        (["a:NoExecute-"], False, ["a=1:NoSchedule", "b=:PreferNoSchedule"], "untainted"),
        (["c:NoSchedule", "b-"], False, ["c=:NoSchedule", "a=1:NoSchedule", "a=:NoExecute"], "modified"),
        (["a=2:NoSchedule"], True, ["a=2:NoSchedule", "a=:NoExecute", "b=:PreferNoSchedule"], "modified"),
    ],
)
def test_apply_taints(specs, overwrite, taints, word):
    new, printed = apply_taints("n1", list(OLD), parse_taints(specs), overwrite)
    assert (show(new), printed) == (taints, word)


def test_apply_taints_refuses_an_existing_key_and_effect_without_overwrite():
    with pytest.raises(CommandError, match="^node n1 already has a taint\\(s\\) with same effect\\(s\\) and "
                                           "--overwrite is false$"):
        apply_taints("n1", list(OLD), parse_taints(["a=2:NoSchedule"]), False)


@pytest.mark.parametrize(("spec", "message"), [("zz-", 'taint "zz" not found'),
                                               ("b:NoSchedule-", 'taint "b:NoSchedule" not found')])
def test_apply_taints_refuses_removing_what_is_not_there(spec, message):
    with pytest.raises(CommandError, match=f"^{message}$"):
        apply_taints("n1", list(OLD), parse_taints([spec]), False)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["node", "n1", "k:NoSchedule"], (["n1"], ["k:NoSchedule"])),
        (["nodes", "n1", "n2", "k-", "j-"], (["n1", "n2"], ["k-", "j-"])),
        (["node/n1", "no/n2", "k-"], (["n1", "n2"], ["k-"])),
        (["nodes", "k=v:NoSchedule"], ([], ["k=v:NoSchedule"])),  # with -l or --all
    ],
)
def test_split_taint_args(words, expected):
    assert split_taint_args(words) == expected


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["pod", "web", "k-"], "taint is only supported for nodes, not 'pod'"),
        (["node", "n1"], "at least one taint update is required"),
        (["k-"], "one or more resources must be specified as <resource> <name>"),
        (["pods/web", "k-"], "taint is only supported for nodes, not 'pods'"),
        (["node/", "k-"], "resource(s) were provided, but no name was specified"),
        (["node", "n1", "k-", "n2"], "all resources must be specified before taint changes: n2"),
    ],
)
def test_split_taint_args_refuses(words, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        split_taint_args(words)


def test_command_line():
    args = parse_args(["taint", "node", "n1", "k=v:NoSchedule", "j-", "--overwrite"])
    assert (args.command, args.overwrite) == ("taint", True)
    assert args.words == ["node", "n1", "k=v:NoSchedule", "j-"]
    assert not parse_args(["taint", "node", "n1", "k-", "--overwrite=false"]).overwrite
    args = parse_args(["taint", "nodes", "-l", "pool=gpu", "k-"])
    assert (args.selector, args.all) == ("pool=gpu", False)
    assert parse_args(["taint", "nodes", "--all", "k-"]).all


def test_describe_node_shows_taints_as_kubectl():
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    assert "Taints:               <none>" in describe_node(node, [], 0, None)
    node.spec.taints.extend([t("a", "NoSchedule", "b"), t("c", "NoExecute")])
    lines = describe_node(node, [], 0, None).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Taints:"))
    assert lines[start:start + 3] == [
        "Taints:               a=b:NoSchedule",
        "                      c:NoExecute",
        "Unschedulable:        false",
    ]
