"""Multi-document pod manifests read by load_pods: documents, errors and their prefixes, merge keys,
volumes, security context and host network."""

import textwrap

import pytest
from manifest_samples import POD_A

from pymaster.api.errors import ValidationError
from pymaster.api.manifest import load_pods, to_dict, to_json, to_yaml

POD_B = """\
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: team}
spec:
  containers: [{name: c, image: pykube/pause:3.9}]
"""
NO_IMAGE = "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec: {containers: [{name: c}]}\n"


def test_load_pods_multi_document():
    pods = load_pods(f"---\n{POD_A}---\n---\n# only a comment\n---\n{POD_B}\n---\n")
    assert [p.metadata.name for p in pods] == ["a", "b"]
    assert pods[0].spec.containers[0].resources.requests["cpu"] == "0.5"
    assert pods[1].metadata.namespace == "team"
    assert pods[0].metadata.namespace == ""  # no defaulting: the server (or -n) decides
    assert pods[0].spec.restart_policy == ""


def test_load_pods_json_and_empty():
    assert [p.metadata.name for p in load_pods(to_json(load_pods(POD_B)[0]))] == ["b"]
    assert load_pods("") == []
    assert load_pods("---\n---\n") == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (NO_IMAGE, "spec.containers[0].image: required"),  # the first document: no prefix
        (f"{POD_A}---\n{NO_IMAGE}", "document 2: spec.containers[0].image: required"),
        (
            f"{POD_A}---\n---\n{NO_IMAGE}",
            "document 3: spec.containers[0].image: required",
        ),  # counts empty ones
        (f"{POD_A}---\n- a\n", "document 2: a document must be a mapping (apiVersion, kind, ...), not list"),
        ("just text", "a document must be a mapping (apiVersion, kind, ...), not str"),
        (
            POD_A.replace("kind: Pod", "kind: Deployment"),
            'kind: unsupported kind "Deployment" (v1); supported: v1 Pod',
        ),
        (
            POD_A.replace("apiVersion: v1", "apiVersion: apps/v1"),
            'kind: unsupported kind "Pod" (apps/v1); supported: v1 Pod',
        ),
        (POD_A.replace("kind: Pod\n", ""), "kind: required; supported: v1 Pod"),
        (POD_A.replace("apiVersion: v1\n", ""), "apiVersion: required; supported: v1 Pod"),
        (POD_A.replace("kind: Pod", "kind: 3"), "kind: must be a string"),
        (
            f"{POD_B}---\n" + POD_A.replace("kind: Pod", "kind: Event"),
            'document 2: kind: unsupported kind "Event" (v1); supported: v1 Pod',
        ),
        (POD_A.replace("image:", "imagee:"), "spec.containers[0].imagee: unknown field"),
        (POD_A.replace("{app: web}", "{replicas: 3}"), "metadata.labels.replicas: must be a string"),
        (POD_A + "  containers: []\n", "yaml: line 12, column 3: found duplicate key 'containers'"),
        ("a: [1\n", "yaml: line 2, column 1: did not find expected ',' or ']'"),
        (
            f"{POD_A}---\nkind: Pod\n  apiVersion: v1\n",
            "yaml: line 14, column 13: mapping values are not allowed in this context",
        ),
    ],
)
def test_load_pods_errors(text, error):
    with pytest.raises(ValidationError) as exc:
        load_pods(text)
    assert str(exc.value) == error


def test_load_pods_prefixes_the_field_of_later_documents():
    with pytest.raises(ValidationError) as exc:
        load_pods(f"{POD_A}---\n{NO_IMAGE}")
    assert exc.value.field == "document 2: spec.containers[0].image"
    assert exc.value.detail == "required"


def test_load_pods_yaml_merge_keys_may_be_overridden():
    """A key given explicitly next to a "<<" merge is an override, not a duplicate."""
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: m}
        spec:
          containers:
          - &base {name: a, image: pykube/pause:3.9}
          - {<<: *base, name: b}
        """)
    containers = load_pods(text)[0].spec.containers
    assert [(c.name, c.image) for c in containers] == [("a", "pykube/pause:3.9"), ("b", "pykube/pause:3.9")]


# ---- volumes, security context, host network ----

POD_WITH_VOLUMES = """\
apiVersion: v1
kind: Pod
metadata: {name: v}
spec:
  hostNetwork: true
  containers:
  - name: web
    image: pykube/busybox:1.35
    securityContext: {privileged: true}
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: logs, mountPath: /logs, readOnly: true}
  volumes:
  - name: data
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  - name: logs
    hostPath: {path: /var/log/web, type: DirectoryOrCreate}
  - name: scratch
    emptyDir: {}
"""


def test_load_pods_volumes_security_context_host_network():
    pod = load_pods(POD_WITH_VOLUMES)[0]
    assert pod.spec.host_network
    container = pod.spec.containers[0]
    assert container.security_context.HasField("privileged") and container.security_context.privileged
    assert [(m.name, m.mount_path, m.read_only) for m in container.volume_mounts] == [
        ("data", "/data", False),
        ("logs", "/logs", True),
    ]
    data, logs, scratch = pod.spec.volumes
    assert (data.empty_dir.medium, data.empty_dir.size_limit) == ("Memory", "64Mi")
    assert (logs.host_path.path, logs.host_path.type) == ("/var/log/web", "DirectoryOrCreate")
    assert scratch.HasField("empty_dir") and not scratch.HasField("host_path")  # `emptyDir: {}` is a source
    spec = to_dict(pod)["spec"]
    assert spec["hostNetwork"] is True
    assert spec["volumes"][2] == {"name": "scratch", "emptyDir": {}}
    assert spec["containers"][0]["volumeMounts"][1] == {
        "name": "logs",
        "mountPath": "/logs",
        "readOnly": True,
    }
    assert load_pods(to_yaml(pod)) == [pod]


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "emptyDir: {}",
            "emptyDir: null",
            "spec.volumes[2]: exactly one volume source is required",
        ),
        (
            "{name: data, mountPath: /data}",
            "{name: cache, mountPath: /data}",
            'spec.containers[0].volumeMounts[0].name: volume "cache" not found',
        ),
        (
            "readOnly: true",
            "readOnly: yes please",
            "spec.containers[0].volumeMounts[1].readOnly: must be a boolean",
        ),
        (
            "{privileged: true}",
            "{privileged: 1}",
            "spec.containers[0].securityContext.privileged: must be a boolean",
        ),
        (
            "{privileged: true}",
            "{seLinuxOptions: {level: s0}}",
            "spec.containers[0].securityContext.seLinuxOptions: unknown field",
        ),
        (
            "type: DirectoryOrCreate",
            "type: Socket",
            'spec.volumes[1].hostPath.type: unsupported value "Socket"; '
            "supported: Directory, DirectoryOrCreate, File, FileOrCreate",
        ),
    ],
)
def test_load_pods_volume_errors(old, new, error):
    assert old in POD_WITH_VOLUMES
    with pytest.raises(ValidationError) as exc:
        load_pods(POD_WITH_VOLUMES.replace(old, new))
    assert str(exc.value) == error
