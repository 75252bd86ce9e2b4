"""A container's environment resolved the kubelet's way (pykubelet.env) against a fake reader of
ConfigMaps and Secrets: envFrom then env, every valueFrom source, optional references, errors in
the kubelet's words, and $(VAR) in values, command and args."""

from __future__ import annotations

import pytest

from pykubelet.env import EnvError, make_environment, resolve_container
from pymaster.api import errors, objects_pb2
from pymaster.api.defaults import default_pod
from pymaster.api.env_validation import is_env_var_name
from pymaster.api.manifest import load_pods

NODE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


class FakeObjects:
    """ConfigMaps and Secrets by (namespace, name); ``error`` is raised by every read; ``reads``
    records them."""

    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], objects_pb2.ConfigMap] = {}
        self.secrets: dict[tuple[str, str], objects_pb2.Secret] = {}
        self.error: errors.ApiError | None = None
        self.reads: list[tuple[str, str, str]] = []

    def add_config_map(self, name: str, data: dict[str, str], namespace: str = "default") -> None:
        self.config_maps[namespace, name] = objects_pb2.ConfigMap(data=data)

    def add_secret(self, name: str, data: dict[str, bytes], namespace: str = "default") -> None:
        self.secrets[namespace, name] = objects_pb2.Secret(data=data)

    async def config_map(self, namespace: str, name: str) -> objects_pb2.ConfigMap | None:
        self.reads.append(("configmaps", namespace, name))
        if self.error is not None:
            raise self.error
        return self.config_maps.get((namespace, name))

    async def secret(self, namespace: str, name: str) -> objects_pb2.Secret | None:
        self.reads.append(("secrets", namespace, name))
        if self.error is not None:
            raise self.error
        return self.secrets.get((namespace, name))


def _pod(container: str, extra: str = "") -> objects_pb2.Pod:
    """A validated pod "web" (namespace default) whose first container is the YAML ``container``."""
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u-1, labels: {app: web}}\n"
        f"spec:\n  nodeName: node-1\n  containers:\n  - name: app\n    image: busybox\n{container}{extra}"
    )
    pod = load_pods(manifest)[0]
    default_pod(pod)
    pod.metadata.uid = "u-1"
    return pod


async def _env(pod: objects_pb2.Pod, objects: FakeObjects | None, warnings: list | None = None,
               name: str = "app") -> dict[str, str]:
    container = next(c for c in [*pod.spec.containers, *pod.spec.init_containers] if c.name == name)
    warn = (lambda reason, message: warnings.append((reason, message))) if warnings is not None else None
    kwargs = {"warn": warn} if warn is not None else {}
    pairs = await make_environment(pod, container, objects, "10.1.0.7", "192.168.1.5", allocatable=NODE,
                                   **kwargs)
    assert len({n for n, _ in pairs}) == len(pairs)
    return dict(pairs)


async def test_env_from_config_map_and_secret_with_prefix_then_env_overrides() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"MODE": "fast", "LEVEL": "3"})
    objects.add_secret("creds", {"USER": b"admin", "PASS": "pässword".encode()})
    pod = _pod("""\
    envFrom:
    - configMapRef: {name: conf}
    - prefix: DB_
      secretRef: {name: creds}
    env:
    - {name: LEVEL, value: "9"}
    - {name: GREETING, value: "$(MODE)-$(DB_USER)-$(LEVEL)"}
""")
    assert await _env(pod, objects) == {
        "LEVEL": "9", "MODE": "fast", "DB_PASS": "pässword", "DB_USER": "admin", "GREETING": "fast-admin-9",
    }


async def test_env_from_skips_invalid_keys_and_says_so() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"1badkey": "x", "good": "y", "2alsobad": "z", "..dots": "w"})
    objects.add_secret("creds", {"has space": b"x"})
    pod = _pod("""\
    envFrom:
    - configMapRef: {name: conf}
    - prefix: P_
      secretRef: {name: creds}
""")
    warnings: list[tuple[str, str]] = []
    assert await _env(pod, objects, warnings) == {"good": "y"}
    assert warnings == [
        ("InvalidEnvironmentVariableNames",
         "Keys [..dots, 1badkey, 2alsobad] from the EnvFrom configMap default/conf were skipped since they "
         "are considered invalid environment variable names."),
        ("InvalidEnvironmentVariableNames",
         "Keys [P_has space] from the EnvFrom secret default/creds were skipped since they are considered "
         "invalid environment variable names."),
    ]


async def test_a_prefix_makes_digit_keys_valid() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"1": "one"})
    pod = _pod("    envFrom: [{prefix: N_, configMapRef: {name: conf}}]\n")
    assert await _env(pod, objects) == {"N_1": "one"}


async def test_value_expansion_rules() -> None:
    pod = _pod("""\
    env:
    - {name: A, value: "a"}
    - {name: SELF, value: "$(SELF)"}
    - {name: LATER_REF, value: "$(B)"}
    - {name: B, value: "b-$(A)"}
    - {name: ESCAPED, value: "$$(A)"}
    - {name: UNKNOWN, value: "$(NOPE)"}
    - {name: SHELL, value: "$A ${A}"}
    - {name: EMPTY}
    - {name: A, value: "again-$(A)"}
""")
    assert await _env(pod, FakeObjects()) == {
        "A": "again-a", "SELF": "$(SELF)", "LATER_REF": "$(B)", "B": "b-a", "ESCAPED": "$(A)",
        "UNKNOWN": "$(NOPE)", "SHELL": "$A ${A}", "EMPTY": "",
    }


async def test_field_refs() -> None:
    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
             "spec.nodeName", "spec.serviceAccountName", "status.podIP", "status.podIPs", "status.hostIP",
             "status.hostIPs"]
    env = "".join(
        f"    - name: V{i}\n      valueFrom: {{fieldRef: {{fieldPath: \"{path}\"}}}}\n"
        for i, path in enumerate(paths)
    )
    pod = _pod("    env:\n" + env)
    values = await _env(pod, None)
    assert [values[f"V{i}"] for i in range(len(paths))] == [
        "web", "default", "u-1", "web", "node-1", "default",
        "10.1.0.7", "10.1.0.7", "192.168.1.5", "192.168.1.5",
    ]


async def test_field_ref_of_another_api_version_fails() -> None:
    pod = _pod("    env: [{name: N, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n")
    pod.spec.containers[0].env[0].value_from.field_ref.api_version = "v2"
    with pytest.raises(EnvError, match="unsupported pod version: v2"):
        await _env(pod, None)


async def test_resource_field_refs_default_to_the_container_itself() -> None:
    pod = _pod("""\
    resources: {limits: {cpu: 250m, memory: 64Mi}}
    env:
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Mi}}}
    - name: SIDE_MEM
      valueFrom: {resourceFieldRef: {containerName: side, resource: limits.memory, divisor: 1Gi}}
  - name: side
    image: busybox
""")
    assert await _env(pod, None) == {"CPU": "1", "CPU_M": "250", "MEM_MI": "64", "SIDE_MEM": "8"}


async def test_resource_field_ref_of_an_init_container() -> None:
    pod = _pod("    command: [sh]\n", """\
  initContainers:
  - name: setup
    image: busybox
    resources: {requests: {cpu: 100m}}
    env: [{name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}]
""")
    assert await _env(pod, None, name="setup") == {"CPU_M": "100"}


async def test_resource_field_ref_of_a_missing_container_fails() -> None:
    pod = _pod("""\
    env:
    - {name: X, valueFrom: {resourceFieldRef: {containerName: ghost, resource: limits.cpu}}}
""")
    with pytest.raises(EnvError, match="container ghost not found"):
        await _env(pod, None)


async def test_key_refs() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"mode": "fast"})
    objects.add_secret("creds", {"token": b"s3cr\xc3\xa9t", "raw": b"\xff"})
    pod = _pod("""\
    env:
    - {name: MODE, valueFrom: {configMapKeyRef: {name: conf, key: mode}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
    - {name: RAW, valueFrom: {secretKeyRef: {name: creds, key: raw}}}
""")
    assert await _env(pod, objects) == {"MODE": "fast", "TOKEN": "s3crét", "RAW": "\ufffd"}
    assert sorted(objects.reads) == [("configmaps", "default", "conf"), ("secrets", "default", "creds")]


async def test_optional_references_are_left_out() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"mode": "fast"})
    pod = _pod("""\
    envFrom:
    - {configMapRef: {name: ghost, optional: true}}
    - {secretRef: {name: ghost, optional: true}}
    env:
    - {name: NO_MAP, valueFrom: {configMapKeyRef: {name: ghost, key: k, optional: true}}}
    - {name: NO_KEY, valueFrom: {configMapKeyRef: {name: conf, key: other, optional: true}}}
    - {name: NO_SECRET, valueFrom: {secretKeyRef: {name: ghost, key: k, optional: true}}}
    - {name: KEPT, value: "$(NO_MAP)"}
""")
    assert await _env(pod, objects) == {"KEPT": "$(NO_MAP)"}


@pytest.mark.parametrize(("env", "message"), [
    ("envFrom: [{configMapRef: {name: ghost}}]", 'configmap "ghost" not found'),
    ("envFrom: [{secretRef: {name: ghost, optional: false}}]", 'secret "ghost" not found'),
    ("env: [{name: X, valueFrom: {configMapKeyRef: {name: ghost, key: k}}}]", 'configmap "ghost" not found'),
    ("env: [{name: X, valueFrom: {secretKeyRef: {name: ghost, key: k}}}]", 'secret "ghost" not found'),
    ("env: [{name: X, valueFrom: {configMapKeyRef: {name: conf, key: nope}}}]",
     "couldn't find key nope in ConfigMap default/conf"),
    ("env: [{name: X, valueFrom: {secretKeyRef: {name: creds, key: nope}}}]",
     "couldn't find key nope in Secret default/creds"),
])
async def test_missing_references_fail_in_the_kubelets_words(env: str, message: str) -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"mode": "fast"})
    objects.add_secret("creds", {"token": b"t"})
    with pytest.raises(EnvError) as caught:
        await _env(_pod(f"    {env}\n"), objects)
    assert caught.value.message == message


async def test_unreadable_objects_fail_even_when_optional() -> None:
    objects = FakeObjects()
    objects.error = errors.Unavailable("master unreachable")
    pod = _pod("    envFrom: [{configMapRef: {name: conf, optional: true}}]\n")
    with pytest.raises(EnvError, match="couldn't get configMap default/conf: master unreachable"):
        await _env(pod, objects)


async def test_without_a_reader_references_fail() -> None:
    pod = _pod("    env: [{name: X, valueFrom: {secretKeyRef: {name: creds, key: k}}}]\n")
    with pytest.raises(EnvError, match="couldn't get secret default/creds, no kubeClient defined"):
        await _env(pod, None)


async def test_objects_are_read_in_the_pods_namespace_once_per_resolution() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"a": "1", "b": "2"}, namespace="team")
    pod = _pod("""\
    envFrom: [{configMapRef: {name: conf}}]
    env:
    - {name: A, valueFrom: {configMapKeyRef: {name: conf, key: a}}}
    - {name: B, valueFrom: {configMapKeyRef: {name: conf, key: b}}}
""")
    pod.metadata.namespace = "team"
    assert await _env(pod, objects) == {"a": "1", "b": "2", "A": "1", "B": "2"}
    assert objects.reads == [("configmaps", "team", "conf")]


async def test_resolve_container_expands_command_and_args_against_the_final_env() -> None:
    objects = FakeObjects()
    objects.add_config_map("conf", {"greeting": "hello"})
    pod = _pod("""\
    command: ["sh", "-c", "echo $(GREETING) $$(GREETING) $(NOPE) $(LATE)"]
    args: ["$(POD)", "$(GREETING)"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: conf, key: greeting}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: LATE, value: late}
""")
    original = objects_pb2.Container()
    original.CopyFrom(pod.spec.containers[0])
    resolved = await resolve_container(pod, pod.spec.containers[0], objects, "10.1.0.7", "192.168.1.5")
    assert list(resolved.command) == ["sh", "-c", "echo hello $(GREETING) $(NOPE) late"]
    assert list(resolved.args) == ["web", "hello"]
    assert [(e.name, e.value, e.HasField("value_from")) for e in resolved.env] == [
        ("GREETING", "hello", False), ("POD", "web", False), ("LATE", "late", False),
    ]
    assert not resolved.env_from
    assert (resolved.name, resolved.image) == ("app", "busybox")
    assert pod.spec.containers[0] == original  # the spec itself is left alone


@pytest.mark.parametrize(("name", "valid"), [
    ("A", True), ("my.env-name", True), ("_x", True), ("-x", True), ("MyEnvName1", True),
    ("1A", False), ("", False), ("a b", False), ("a=b", False), (".", False), ("..", False),
    ("..a", False), (".a", True),
])
def test_is_env_var_name(name: str, valid: bool) -> None:
    assert is_env_var_name(name) is valid


async def test_the_kubernetes_documentations_dependent_variables() -> None:
    """"Define an environment dependent variable for a container", as the documentation shows it."""
    pod = _pod("""\
    env:
    - {name: SERVICE_PORT, value: "80"}
    - {name: SERVICE_IP, value: "172.17.0.1"}
    - {name: UNCHANGED_REFERENCE, value: "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"}
    - {name: PROTOCOL, value: "https"}
    - {name: SERVICE_ADDRESS, value: "$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"}
    - {name: ESCAPED_REFERENCE, value: "$$(PROTOCOL)://$(SERVICE_IP):$(SERVICE_PORT)"}
""")
    env = await _env(pod, None)
    assert env["UNCHANGED_REFERENCE"] == "$(PROTOCOL)://172.17.0.1:80"
    assert env["SERVICE_ADDRESS"] == "https://172.17.0.1:80"
    assert env["ESCAPED_REFERENCE"] == "$(PROTOCOL)://172.17.0.1:80"


async def test_the_kubernetes_documentations_container_resources() -> None:
    """dapi-envars-container.yaml: a request of 125m cpu is 1 with the default divisor."""
    pod = _pod("""\
    resources:
      requests: {memory: 32Mi, cpu: 125m}
      limits: {memory: 64Mi, cpu: 250m}
    env:
    - {name: MY_CPU_REQUEST, valueFrom: {resourceFieldRef: {containerName: app, resource: requests.cpu}}}
    - {name: MY_CPU_LIMIT, valueFrom: {resourceFieldRef: {containerName: app, resource: limits.cpu}}}
    - {name: MY_MEM_REQUEST, valueFrom: {resourceFieldRef: {containerName: app, resource: requests.memory}}}
    - {name: MY_MEM_LIMIT, valueFrom: {resourceFieldRef: {containerName: app, resource: limits.memory}}}
""")
    assert await _env(pod, None) == {
        "MY_CPU_REQUEST": "1", "MY_CPU_LIMIT": "1", "MY_MEM_REQUEST": "33554432", "MY_MEM_LIMIT": "67108864",
    }
