"""The agent API's choice of container for a logs request."""

from __future__ import annotations

import grpc
import pytest

from pykubelet.runtime.base import INFRA_CONTAINER_NAME, ContainerInfo, PodRuntime
from pykubelet.server import ContainerLookupError, pick_container


def c(cid: str, name: str) -> ContainerInfo:
    return ContainerInfo(
        id=cid, name=name, pod_uid="u1", pod_name="web", pod_namespace="default", state="running"
    )


ONE = PodRuntime("u1", "web", "default", [c("new", "app"), c("old", "app"), c("i", INFRA_CONTAINER_NAME)])
TWO = PodRuntime("u1", "web", "default", [c("a1", "app"), c("s1", "sidecar"), c("i", INFRA_CONTAINER_NAME)])


@pytest.mark.parametrize(
    ("pod", "name", "expected"),
    [(ONE, "app", "new"), (ONE, "", "new"), (TWO, "sidecar", "s1"), (TWO, "app", "a1")],
)
def test_pick_container(pod: PodRuntime, name: str, expected: str) -> None:
    assert pick_container(pod, "u1", name, "n1").id == expected


@pytest.mark.parametrize(
    ("pod", "name", "code", "message"),
    [
        (None, "app", grpc.StatusCode.NOT_FOUND, "pod uid u1 has no containers on node n1"),
        (PodRuntime("u1", "web", "default"), "", grpc.StatusCode.NOT_FOUND, "pod uid u1 has no containers"),
        (ONE, "db", grpc.StatusCode.NOT_FOUND, "container db not found in pod default/web on node n1"),
        (ONE, INFRA_CONTAINER_NAME, grpc.StatusCode.NOT_FOUND, "container POD not found"),
        (TWO, "", grpc.StatusCode.INVALID_ARGUMENT, "choose one of: app, sidecar"),
    ],
)
def test_pick_container_errors(
    pod: PodRuntime | None, name: str, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(ContainerLookupError) as err:
        pick_container(pod, "u1", name, "n1")
    assert err.value.code == code
    assert message in err.value.message
