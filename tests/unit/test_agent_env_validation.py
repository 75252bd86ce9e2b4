"""The API's validation of what the agent's env resolution honours (pymaster.api.env_validation):
env valueFrom sources and envFrom, each refusal with its field path and Kubernetes' rule."""

from __future__ import annotations

import pytest

from pymaster.api.errors import ValidationError
from pymaster.api.manifest import load_pods

ENV = "spec.containers[0].env[1].valueFrom"
FROM = "spec.containers[0].envFrom[0]"


def _load(container: str) -> None:
    """Loads (and so validates) a pod whose container carries the YAML ``container`` lines; env[0]
    is a plain variable, so the entry under test is env[1]."""
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: app\n"
        "    image: busybox\n    env:\n    - {name: PLAIN, value: x}\n" + container
    )
    load_pods(manifest)


ACCEPTED = [
    "    - {name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n",
    "    - {name: A, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: status.podIPs}}}\n",
    "    - {name: A, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app.kubernetes.io/name']\"}}}\n",
    "    - {name: A, valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['Example.com/Note']\"}}}\n",
    "    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}\n",
    "    - {name: A, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1000m}}}\n",
    "    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n",
    "    - {name: A, valueFrom: {resourceFieldRef: {resource: requests.ephemeral-storage, divisor: 1G}}}\n",
    "    - {name: A, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.memory}}}\n",
    "    - {name: A, valueFrom: {configMapKeyRef: {name: my.config, key: .hidden_Key-1}}}\n",
    "    - {name: A, valueFrom: {secretKeyRef: {name: creds, key: token, optional: true}}}\n",
    "    - {name: A, value: \"$(PLAIN)\"}\n",
    "    envFrom: [{configMapRef: {name: conf}}, {prefix: DB_, secretRef: {name: creds, optional: true}}]\n",
    "    envFrom: [{prefix: _, configMapRef: {name: conf}}]\n",
]


@pytest.mark.parametrize("container", ACCEPTED)
def test_accepted(container: str) -> None:
    _load(container)


REFUSED = [
    ("    - {name: A, valueFrom: {}}\n",
     f"{ENV}: must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"),
    ("    - {name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n",
     f"{ENV}: may not be specified when `value` is not empty"),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}, configMapKeyRef: {name: c, key: k}}}"
     "\n",
     f"{ENV}: may not have more than one field specified at a time"),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: spec.foo}}}\n",
     f'{ENV}.fieldRef.fieldPath: Unsupported value: "spec.foo": supported values: "metadata.name", '
     '"metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", '
     '"status.hostIPs", "status.podIP", "status.podIPs"'),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: metadata.labels}}}\n",  # volumes only
     f'{ENV}.fieldRef.fieldPath: Unsupported value: "metadata.labels": supported values: '),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: status.phase}}}\n",
     f'{ENV}.fieldRef.fieldPath: Unsupported value: "status.phase"'),
    ("    - {name: A, valueFrom: {fieldRef: {}}}\n", f"{ENV}.fieldRef.fieldPath: required"),
    ("    - {name: A, valueFrom: {fieldRef: {apiVersion: v2, fieldPath: metadata.name}}}\n",
     f'{ENV}.fieldRef.apiVersion: Unsupported value: "v2": supported values: "v1"'),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: \"spec.nodeName['x']\"}}}\n",
     f'{ENV}.fieldRef.fieldPath: invalid value "spec.nodeName": does not support subscript'),
    ("    - {name: A, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['bad key']\"}}}\n",
     f'{ENV}.fieldRef.fieldPath: invalid key "bad key": name part must be at most 63 characters'),
    ("    - {name: A, valueFrom: {resourceFieldRef: {divisor: 1m}}}\n",
     f"{ENV}.resourceFieldRef.resource: required"),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.nvidia.com/gpu}}}\n",
     f'{ENV}.resourceFieldRef.resource: Unsupported value: "limits.nvidia.com/gpu": supported values: '
     '"limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory", '
     '"requests.ephemeral-storage"'),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 2m}}}\n",
     f'{ENV}.resourceFieldRef.divisor: invalid value "2m": only divisor\'s values 1m and 1 are supported '
     "with the cpu resource"),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1Mi}}}\n",
     f'{ENV}.resourceFieldRef.divisor: invalid value "1Mi": only divisor\'s values 1m and 1'),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1m}}}\n",
     f'{ENV}.resourceFieldRef.divisor: invalid value "1m": only divisor\'s values 1, 1k, 1M, 1G, 1T, 1P, 1E, '
     "1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.ephemeral-storage, divisor: 3Ki}}}\n",
     f'{ENV}.resourceFieldRef.divisor: invalid value "3Ki": only divisor\'s values 1, 1k, 1M, 1G, 1T, 1P, '
     "1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource"),
    ("    - {name: A, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: lots}}}\n",
     f'{ENV}.resourceFieldRef.divisor: invalid quantity "lots"'),
    ("    - {name: A, valueFrom: {configMapKeyRef: {key: k}}}\n", f"{ENV}.configMapKeyRef.name: required"),
    ("    - {name: A, valueFrom: {configMapKeyRef: {name: My_Config, key: k}}}\n",
     f'{ENV}.configMapKeyRef.name: invalid value "My_Config": must be a lowercase RFC 1123 subdomain'),
    ("    - {name: A, valueFrom: {configMapKeyRef: {name: c}}}\n", f"{ENV}.configMapKeyRef.key: required"),
    ("    - {name: A, valueFrom: {secretKeyRef: {name: s, key: a/b}}}\n",
     f'{ENV}.secretKeyRef.key: invalid value "a/b": a valid config key must consist of alphanumeric '
     "characters, '-', '_' or '.'"),
    ("    - {name: A, valueFrom: {secretKeyRef: {name: s, key: ..}}}\n",
     f"{ENV}.secretKeyRef.key: invalid value \"..\": must not be '..'"),
    ("    - {name: A, valueFrom: {secretKeyRef: {name: s, key: ..x}}}\n",
     f"{ENV}.secretKeyRef.key: invalid value \"..x\": must not start with '..'"),
    (f"    - {{name: A, valueFrom: {{secretKeyRef: {{name: s, key: {'k' * 254}}}}}}}\n",
     f'{ENV}.secretKeyRef.key: invalid value "{"k" * 254}": must be no more than 253 characters'),
    ("    - {name: .., value: x}\n",
     "spec.containers[0].env[1].name: invalid value \"..\": must not be '..'"),
    ("    envFrom: [{prefix: P_}]\n", f"{FROM}: must specify one of: `configMapRef` or `secretRef`"),
    ("    envFrom: [{configMapRef: {name: c}, secretRef: {name: s}}]\n",
     f"{FROM}: may not have more than one field specified at a time"),
    ("    envFrom: [{prefix: '1_', configMapRef: {name: c}}]\n",
     f'{FROM}.prefix: invalid value "1_": must consist of letters, digits'),
    ("    envFrom: [{configMapRef: {}}]\n", f"{FROM}.configMapRef.name: required"),
    ("    envFrom: [{secretRef: {name: -s}}]\n", f'{FROM}.secretRef.name: invalid value "-s"'),
]


@pytest.mark.parametrize(("container", "message"), REFUSED)
def test_refused(container: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _load(container)
    assert str(caught.value).startswith(message), str(caught.value)


def test_env_from_entries_are_counted() -> None:
    sources = ", ".join("{configMapRef: {name: c}}" for _ in range(1001))
    with pytest.raises(ValidationError, match=r"spec.containers\[0\].envFrom: at most 1000 entries allowed"):
        _load(f"    envFrom: [{sources}]\n")
