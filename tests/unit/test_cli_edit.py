"""pyctl label, annotate and patch against the real master in-process (pods, nodes, ConfigMaps),
with kubectl's rules and messages, and the pure parts: label/annotation changes and the JSON
merge patch (RFC 7386)."""

from __future__ import annotations

import pytest
import yaml
from master_fixtures import node_manifest
from test_cli_commands import Pyctl, event_yaml

from pymaster.app import MasterApp
from pymaster.cli import metadata_edit, patch
from pymaster.cli.context import CommandError
from pymaster.cli.main import parse_args
from pymaster.cli.targets import UsageError

POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {app: %s}}\n"
    "spec: {containers: [{name: app, image: busybox:1.35}]}\n"
)
OVERWRITE = "and --overwrite is false"


@pytest.fixture
def pyctl(master: MasterApp) -> Pyctl:
    return Pyctl(master)


async def labels(pyctl: Pyctl, resource: str) -> dict[str, str]:
    _, out, _ = await pyctl("get", resource, "-o", "yaml")
    return yaml.safe_load(out)["metadata"].get("labels", {})


async def test_label_follows_kubectl(pyctl: Pyctl) -> None:
    await pyctl("apply", "-f", "-", stdin=POD % ("web", "web") + "---\n" + POD % ("db", "db"))
    assert (await pyctl("label", "pods", "web", "tier=front"))[:2] == (0, "pod/web labeled\n")
    code, out, err = await pyctl("label", "pod/web", "tier=back")
    assert (code, out, err) == (1, "", f"error: 'tier' already has a value (front), {OVERWRITE}\n")
    assert (await pyctl("label", "pod/web", "tier=front", "--overwrite"))[1] == "pod/web not labeled\n"
    assert (await pyctl("label", "pod/web", "tier=back", "--overwrite=true"))[1] == "pod/web labeled\n"
    assert await labels(pyctl, "pod/web") == {"app": "web", "tier": "back"}
    _, out, _ = await pyctl("label", "pod", "web", "tier-", "gone-")
    assert out == 'label "gone" not found.\npod/web unlabeled\n'
    assert (await pyctl("label", "pods", "-l", "app in (web,db)", "env=prod"))[1] == (
        "pod/db labeled\npod/web labeled\n"
    )
    assert (await pyctl("label", "pods", "--all", "env-"))[1] == "pod/db unlabeled\npod/web unlabeled\n"
    code, _, err = await pyctl("label", "pods", "web", "missing", "x=1")
    assert code == 1 and err == 'Error from server (NotFound): pods "missing" not found\n'
    assert await labels(pyctl, "pod/web") == {"app": "web", "x": "1"}  # the others go on


async def test_label_and_annotate_nodes_configmaps_and_what_the_server_refuses(pyctl: Pyctl, agent) -> None:
    await agent.RegisterNode(node_manifest("n1"))
    assert (await pyctl("label", "node", "n1", "disk=ssd"))[1] == "node/n1 labeled\n"
    assert (await labels(pyctl, "node/n1"))["disk"] == "ssd"
    await pyctl("create", "configmap", "app", "--from-literal", "a=1")
    annotated = "configmap/app annotated\n"
    assert (await pyctl("annotate", "cm", "app", "owner=team-a", "note=x=y"))[1] == annotated
    assert (await pyctl("annotate", "cm", "app", "owner=team-a"))[1] == annotated  # the same value
    code, _, err = await pyctl("annotate", "cm", "app", "owner=team-b")
    assert (code, err) == (1, "error: --overwrite is false but found the following declared annotation(s): "
                              "'owner' already has a value (team-a)\n")
    assert (await pyctl("annotate", "cm", "app", "owner-", "note=z", "--overwrite"))[0] == 0
    _, out, _ = await pyctl("get", "cm", "app", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["annotations"] == {"note": "z"}
    event = event_yaml("web.1", "web", "Pulled", first=5, last=5, namespace="default")
    await pyctl("create", "-f", "-", stdin=event)
    code, _, err = await pyctl("label", "event", "web.1", "a=b")
    assert (code, err) == (1, "Error from server (MethodNotAllowed): events cannot be updated: "
                              "repeats are folded by the cluster\n")
    code, _, err = await pyctl("label", "cm", "app", "bad/key/x=1")
    assert code == 1 and err.startswith("Error from server (Invalid): metadata.labels[bad/key/x]")


async def test_apply_keeps_the_labels_and_annotations_others_added(pyctl: Pyctl) -> None:
    manifest = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels: {app: web%s}\n"
                "  annotations: {owner: team-a}\ndata: {a: '1'}\n")
    assert (await pyctl("apply", "-f", "-", stdin=manifest % ", tier: front"))[1] == "configmap/app created\n"
    await pyctl("label", "cm", "app", "env=prod")
    await pyctl("annotate", "cm", "app", "note=by-hand")
    assert (await pyctl("apply", "-f", "-", stdin=manifest % ""))[1] == "configmap/app configured\n"
    _, out, _ = await pyctl("get", "cm", "app", "-o", "yaml")
    metadata = yaml.safe_load(out)["metadata"]
    assert metadata["labels"] == {"app": "web", "env": "prod"}  # tier was applied, then dropped
    last_applied = metadata["annotations"].pop("kubectl.kubernetes.io/last-applied-configuration")
    assert metadata["annotations"] == {"owner": "team-a", "note": "by-hand"}
    assert yaml.safe_load(last_applied)["metadata"]["labels"] == {"app": "web"}
    assert (await pyctl("apply", "-f", "-", stdin=manifest % ""))[1] == "configmap/app unchanged\n"


async def test_cordon_and_taint_nodes_by_name_selector_or_all(pyctl: Pyctl, agent) -> None:
    for name in ("n1", "n2", "n3"):
        await agent.RegisterNode(node_manifest(name))
    await pyctl("label", "nodes", "n1", "n2", "pool=gpu")
    assert (await pyctl("cordon", "-l", "pool=gpu"))[1] == "node/n1 cordoned\nnode/n2 cordoned\n"
    assert (await pyctl("cordon", "n1", "n3"))[1] == "node/n1 already cordoned\nnode/n3 cordoned\n"
    code, out, err = await pyctl("uncordon", "n1", "gone", "n2")
    assert (code, out) == (1, "node/n1 uncordoned\nnode/n2 uncordoned\n")
    assert err == 'Error from server (NotFound): nodes "gone" not found\n'
    with pytest.raises(UsageError, match="name cannot be provided when a selector is specified"):
        parse_args(["cordon", "n1", "-l", "pool=gpu"])
    with pytest.raises(UsageError, match="no name was specified"):
        parse_args(["uncordon"])

    code, out, _ = await pyctl("taint", "nodes", "-l", "pool=gpu", "dedicated=ml:NoSchedule")
    assert (code, out) == (0, "node/n1 tainted\nnode/n2 tainted\n")
    code, out, err = await pyctl("taint", "nodes", "--all", "dedicated-")
    assert (code, out) == (1, "node/n1 untainted\nnode/n2 untainted\n")
    assert err == 'error: taint "dedicated" not found\n'  # n3 never had it; the others are done
    with pytest.raises(CommandError, match="setting 'all' parameter with a non empty selector is prohibited"):
        await pyctl("taint", "nodes", "--all", "-l", "pool=gpu", "k-")
    with pytest.raises(CommandError, match="at least one resource name must be specified since 'all'"):
        await pyctl("taint", "nodes", "k-")
    assert (await pyctl("taint", "nodes", "n1", "n3", "a=b:NoSchedule"))[1] == (
        "node/n1 tainted\nnode/n3 tainted\n")
    _, out, _ = await pyctl("get", "nodes", "-o", "yaml")
    taints = {item["metadata"]["name"]: [t["key"] for t in item["spec"].get("taints", [])]
              for item in yaml.safe_load(out)["items"]}
    assert taints == {"n1": ["a"], "n2": [], "n3": ["a", "node.kubernetes.io/unschedulable"]}  # n3 cordoned


async def test_patch_merges_and_reports_what_the_server_refuses_or_keeps(pyctl: Pyctl, agent) -> None:
    await agent.RegisterNode(node_manifest("n1"))
    cordon = '{"spec":{"unschedulable":true}}'
    assert (await pyctl("patch", "node", "n1", "-p", cordon))[1] == "node/n1 patched\n"
    assert (await pyctl("patch", "node/n1", "-p", "spec: {unschedulable: true}"))[1] == (
        "node/n1 patched (no change)\n"
    )
    _, out, _ = await pyctl("get", "nodes")
    assert "Ready,SchedulingDisabled" in out or "Unknown,SchedulingDisabled" in out

    await pyctl("apply", "-f", "-", stdin=POD % ("web", "web"))
    image = '{"spec":{"containers":[{"name":"app","image":"busybox:1.36"}]}}'
    with pytest.raises(CommandError, match="a strategic merge patch of lists is not supported"):
        await pyctl("patch", "pod", "web", "-p", image)
    assert (await pyctl("patch", "pod", "web", "--type", "merge", "-p", image))[1] == "pod/web patched\n"
    _, out, _ = await pyctl("get", "pod", "web", "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["containers"][0]["image"] == "busybox:1.36"
    never = '{"spec":{"restartPolicy":"Never"}}'
    code, _, err = await pyctl("patch", "pod", "web", "--type=merge", "-p", never)
    assert code == 1 and err.startswith("Error from server (Invalid): spec.restartPolicy")
    code, _, err = await pyctl("patch", "pod", "web", "--subresource", "status", "-p",
                               '{"status":{"phase":"Failed"}}')
    assert (code, err) == (1, "error: pod/web patched, but the server kept status.phase as it was "
                              "(an update may not change it)\n")

    await pyctl("create", "configmap", "frozen", "--from-literal", "a=1")
    assert (await pyctl("patch", "cm", "frozen", "-p", "immutable: true"))[1] == "configmap/frozen patched\n"
    code, _, err = await pyctl("patch", "cm", "frozen", "-p", '{"data":{"a":"2"}}')
    assert (code, err) == (1, "Error from server (Invalid): data: field is immutable when `immutable` is set"
                              "\n")
    code, _, err = await pyctl("patch", "cm", "frozen", "-p", '{"metadata":{"name":"other"}}')
    assert (code, err) == (1, "error: configmap/frozen: metadata.name cannot be patched\n")
    code, _, err = await pyctl("patch", "cm", "frozen", "-p", '{"spec":{"x":1}}')
    assert (code, err) == (1, "error: configmap/frozen: the patched object is invalid: spec: unknown field\n")


async def test_patch_node_status_sets_an_extended_resource(pyctl: Pyctl, agent) -> None:
    await agent.RegisterNode(node_manifest("n1"))
    dongles = '{"status":{"capacity":{"example.com/dongle":"4"}}}'
    status = ["--subresource", "status", "--type", "merge"]
    code, out, err = await pyctl("patch", "node", "n1", *status, "-p", dongles)
    assert (code, out, err) == (0, "node/n1 patched\n", "")
    _, out, _ = await pyctl("get", "node", "n1", "-o", "yaml")
    assert yaml.safe_load(out)["status"]["capacity"]["example.com/dongle"] == "4"
    with pytest.raises(CommandError, match="^with --subresource status, only status may be patched$"):
        await pyctl("patch", "node", "n1", "--subresource", "status", "-p", '{"spec":{"unschedulable":true}}')
    with pytest.raises(CommandError, match="^configmaps have no status subresource"):
        await pyctl("patch", "cm", "app", "--subresource", "status", "-p", '{"status":{}}')


# ---- the pure parts ----


@pytest.mark.parametrize(
    ("target", "patch_doc", "result"),
    [  # RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch(target: object, patch_doc: object, result: object) -> None:
    assert patch.merge_patch(target, patch_doc) == result


@pytest.mark.parametrize(
    ("text", "type_", "subresource", "message"),
    [
        ("", "merge", "", "must specify -p to patch"),
        ("{a: [", "merge", "", "unable to parse"),
        ("[1]", "merge", "", "the patch must be a JSON object"),
        ('{"a":1}', "json", "", "--type json (RFC 6902) is not supported: use --type merge"),
        ('{"a":1}', "apply", "", "--type must be one of"),
    ],
)
def test_bad_patches(text: str, type_: str, subresource: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        patch.parse_patch(text, type_, subresource)


def test_unapplied_names_the_first_path_the_server_kept() -> None:
    patch_doc = {"metadata": {"labels": {"a": "1", "gone": None}}, "spec": {"x": [{"n": 1}]}}
    expected = {"metadata": {"labels": {"a": "1"}}, "spec": {"x": [{"n": 1}]}}
    stored = {"metadata": {"labels": {"a": "1"}, "resourceVersion": "9"},
              "spec": {"x": [{"n": 1, "default": 2}]}}
    assert patch.unapplied(patch_doc, expected, stored) is None  # the server may add defaults
    assert patch.unapplied(patch_doc, expected, {**stored, "spec": {"x": []}}) == "spec.x"
    kept = {"metadata": {"labels": {"a": "1", "gone": "still"}}, "spec": stored["spec"]}
    assert patch.unapplied(patch_doc, expected, kept) == "metadata.labels.gone"


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["a=1=2"], "invalid label spec: a=1=2"),
        (["a=b c"], 'invalid label value: "a=b c"'),
        (["a=1", "a-"], "can not both modify and remove a label in the same command"),
        ([], "at least one label update is required"),
    ],
)
def test_bad_label_changes(words: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        metadata_edit.parse_label_changes(words)


def test_annotation_values_may_hold_equals_signs_and_removals() -> None:
    assert metadata_edit.parse_annotation_changes(["a=x=y", "b-"]) == ({"a": "x=y"}, ["b"])
    with pytest.raises(CommandError, match="can not both modify and remove the following annotation"):
        metadata_edit.parse_annotation_changes(["a=1", "a-"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("label pods web db tier=a env- --overwrite",
         {"resource": "pods", "names": ["web", "db"], "pairs": ["tier=a", "env-"], "overwrite": True}),
        ("label no/n1 disk=ssd", {"resource": "nodes", "names": ["n1"], "pairs": ["disk=ssd"]}),
        ("annotate pods -l app=web note=x", {"resource": "pods", "names": [], "selector": "app=web"}),
        ("patch node n1 -p {} --type merge --subresource status",
         {"resource": "nodes", "names": ["n1"], "patch": "{}", "type": "merge", "subresource": "status"}),
    ],
)
def test_parse_edit_commands(argv: str, expected: dict[str, object]) -> None:
    args = parse_args(argv.split())
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("label pods a=b web", "all resources must be specified before label changes: web"),
        ("annotate pods a=b web", "all resources must be specified before annotation changes: web"),
        ("label pods tier=a", "resource(s) were provided, but no name was specified"),
        ("label a=b", "one or more resources must be specified"),
        ("annotate pods web -l app=web a=b", "names cannot be combined with -l or --all"),
        ("patch pods", "resource(s) were provided, but no name was specified"),
        ("patch node n1 --subresource scale -p {}", 'invalid subresource value: "scale"'),
    ],
)
def test_edit_usage_errors(argv: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv.split())
    assert message in caught.value.message
