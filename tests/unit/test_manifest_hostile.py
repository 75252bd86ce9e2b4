"""load_pods and from_dict against hostile input (size, alias and nesting bombs, odd values) and random
input (hypothesis): the answer is pods or a ValidationError, never another exception."""

import datetime
import json
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from manifest_samples import POD_A

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.api.manifest import from_dict, load_pods

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "x" * (4 * MIB + 1),
        "é" * (2 * MIB + 1),  # 2 bytes each in UTF-8: the limit is on bytes
        f"{POD_A}---\n#{'x' * 4 * MIB}\n",
    ],
)
def test_load_pods_refuses_more_than_4_mib(text):
    with pytest.raises(ValidationError) as exc:
        load_pods(text)
    assert str(exc.value) == "manifest: larger than 4 MiB"


def test_load_pods_takes_up_to_4_mib():
    padding = "#" + "x" * (4 * MIB - len(POD_A) - 6) + "\n"
    text = f"{POD_A}---\n{padding}"
    assert len(text.encode()) <= 4 * MIB
    assert [p.metadata.name for p in load_pods(text)] == ["a"]


def _laughs(levels: int, width: int = 10) -> str:
    """A "billion laughs" document: each level aliases the previous one ``width`` times."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _aliasing_pod(name: str) -> str:
    """A valid pod whose aliases add 3000 nodes (its command list, reused three times)."""
    words = ", ".join(["x"] * 1000)
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          containers:
          - {{name: a, image: i, command: &c [{words}], args: *c}}
          - {{name: b, image: i, command: *c, args: *c}}
        """)


def test_load_pods_aliases_within_bounds_are_fine():
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a}
        spec:
          containers:
          - {name: a, image: pykube/pause:3.9, env: &env [{name: A, value: "1"}, {name: B, value: "2"}]}
          - {name: b, image: pykube/pause:3.9, env: *env}
        """)
    pods = load_pods(text)
    assert [[e.name for e in c.env] for c in pods[0].spec.containers] == [["A", "B"], ["A", "B"]]
    assert len(load_pods("---\n".join(_aliasing_pod(f"p{i}") for i in range(33)))) == 33  # 99,000
    with pytest.raises(ValidationError, match="^kind: required; supported: v1 Pod$"):
        load_pods(_laughs(4))  # about 11,000 nodes: parsed, then refused as not a pod


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (_laughs(9), r"^yaml: line \d+, column \d+: aliases expand to more than 100000 nodes$"),
        # spread over valid pods: the budget is the stream's
        (
            "---\n".join(_aliasing_pod(f"p{i}") for i in range(34)),
            r"^yaml: line \d+, column \d+: aliases expand to more than 100000 nodes$",
        ),
        ("[" * 101 + "]" * 101, r"^yaml: line 1, column 100: nested deeper than 100 levels$"),
        ("a: &a [*a]\n", r"^yaml: line 1, column 4: nested deeper than 100 levels$"),  # a recursive alias
        ("a: &a {b: *a}\n", r"^yaml: line 1, column 4: nested deeper than 100 levels$"),
        ("[" * 5000 + "]" * 5000, r"^yaml: line 1, column \d+: .*nesting depth"),  # libyaml's own limit
        ("a: 2001-13-45\n", r"^yaml: line 1, column 4: invalid value: month must be in 1\.\.12$"),
        (f"a: {'1' * 5000}\n", r"^yaml: line 1, column 4: invalid value: Exceeds the limit \(4300 digits\)"),
        ("a: \udc80\n", r"^manifest: invalid text at character 3: a lone surrogate$"),
        (
            "a: !!python/object/apply:os.system [true]\n",
            r"^yaml: line 1, column 4: could not determine a constructor",
        ),
        (
            f"kind: Pod\napiVersion: 0x{'f' * 5000}\n",
            r"^apiVersion: must be a string$",
        ),
        (
            f"kind: {'K' * 1000}\napiVersion: v1\n",
            rf'^kind: unsupported kind "{"K" * 256}\.\.\." \(v1\); supported: v1 Pod$',
        ),
        (
            f"kind: Pod\napiVersion: v1\nmetadata: {{name: a, {'z' * 1000}: 1}}\n",
            rf"^metadata\.{'z' * 256}\.\.\.: unknown field$",
        ),
    ],
)
def test_load_pods_refuses_hostile_yaml(text, error):
    with pytest.raises(ValidationError, match=error):
        load_pods(text)


def test_load_pods_nesting_up_to_the_limit_is_fine():
    with pytest.raises(ValidationError, match="^a document must be a mapping"):
        load_pods("[" * 99 + "]" * 99)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({10**5000: 1}, "<int>: unknown field"),
        ({"x\udc80": 1}, "x\\udc80: unknown field"),
        ({"metadata": {"name": "a\udc80"}}, "metadata.name: must be valid UTF-8 text (no lone surrogates)"),
        (
            {"metadata": {"labels": {"a\udc80": "b"}}},
            "metadata.labels[a\\udc80]: must be valid UTF-8 text (no lone surrogates)",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": 10**5000}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": float("inf")}}}]}},
            "spec.containers[0].resources.limits.cpu: must be a string",
        ),
        ({"metadata": {"labels": {1: "b"}}}, "metadata.labels: key 1 must be a string"),
        ({"metadata": {"labels": {10**5000: "b"}}}, "metadata.labels: key <int> must be a string"),
        (
            {
                "metadata": {
                    "creationTimestamp": datetime.datetime(
                        1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
                    )
                }
            },
            "metadata.creationTimestamp: must be an RFC 3339 timestamp like 2026-11-25T17:04:32Z",
        ),
        ({"spec": {"hostNetwork": "true"}}, "spec.hostNetwork: must be a boolean"),
        ({"spec": {"volumes": {"name": "a"}}}, "spec.volumes: must be a list"),
    ],
)
def test_from_dict_refuses_hostile_values(data, error):
    with pytest.raises(ValidationError) as exc:
        from_dict(data, objects_pb2.Pod)
    assert str(exc.value) == error


# Random input: whatever it is, the answer is pods or a ValidationError, never another exception.
_FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_YAML_ALPHABET = "-:{}[],&*!|>'\"#?%@`\n\t aAzZ019.eE+~<=/\\"
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
_CONTAINER_KEYS = [
    "name",
    "image",
    "command",
    "args",
    "env",
    "ports",
    "resources",
    "imagePullPolicy",
    "workingDir",
    "securityContext",
    "volumeMounts",
    "bogus",
]
_pod_like = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.just("Pod"),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "", "A", "a" * 300])}),
        "spec": st.fixed_dictionaries(
            {
                "containers": st.lists(
                    st.dictionaries(st.sampled_from(_CONTAINER_KEYS), _json_values), max_size=3
                ),
                "volumes": st.lists(
                    st.dictionaries(st.sampled_from(["name", "hostPath", "emptyDir"]), _json_values)
                ),
                "hostNetwork": _json_values,
            }
        ),
    }
)


def _only_validation_errors(fn, *args):
    try:
        return fn(*args)
    except ValidationError as e:
        assert str(e)  # a message the user can read
        return None


@_FUZZ
@given(st.text(max_size=500))
def test_fuzz_load_pods_random_text(text):
    _only_validation_errors(load_pods, text)


@_FUZZ
@given(st.text(alphabet=_YAML_ALPHABET, max_size=300))
def test_fuzz_load_pods_yaml_like_text(text):
    _only_validation_errors(load_pods, text)


@_FUZZ
@given(_json_values | _pod_like)
def test_fuzz_from_dict_random_values(data):
    _only_validation_errors(from_dict, data, objects_pb2.Pod)


@_FUZZ
@given(_pod_like)
def test_fuzz_load_pods_random_pod_like_documents(data):
    _only_validation_errors(load_pods, yaml.safe_dump(data))
    _only_validation_errors(load_pods, json.dumps(data))
