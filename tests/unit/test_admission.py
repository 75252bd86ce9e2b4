"""The admission policy (pymaster.server.admission): what a valid pod may still not do."""

from __future__ import annotations

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import Forbidden, ValidationError
from pymaster.server.admission import AdmissionPolicy, admit_pod, normalize_host_path, path_is_under


def pod(*, privileged: tuple[bool, ...] = (False,), host_network: bool = False, paths: tuple[str, ...] = ()):
    p = objects_pb2.Pod()
    p.metadata.name = "web"
    for i, flag in enumerate(privileged):
        container = p.spec.containers.add(name=f"c{i}", image="busybox")
        if flag:
            container.security_context.privileged = True
    p.spec.host_network = host_network
    for i, path in enumerate(paths):
        volume = p.spec.volumes.add(name=f"v{i}")
        volume.host_path.path = path
    p.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    return p


DEFAULT = AdmissionPolicy()
OPEN = AdmissionPolicy.of(
    allow_privileged=True, allow_host_network=True, allowed_host_paths=["/srv/data/", "/tmp"]
)


@pytest.mark.parametrize(
    "p, policy",
    [
        (pod(), DEFAULT),
        (pod(privileged=(False, False)), DEFAULT),
        (pod(privileged=(True,)), OPEN),
        (pod(host_network=True), OPEN),
        (pod(paths=("/srv/data",)), OPEN),
        (pod(paths=("/srv/data/x/y", "/tmp/")), OPEN),
        (pod(paths=("//srv//data/./x",)), OPEN),
        (pod(paths=("/anything",)), AdmissionPolicy.of(allowed_host_paths=["/"])),
    ],
)
def test_admitted(p, policy):
    admit_pod(p, policy)


@pytest.mark.parametrize(
    "p, policy, message",
    [
        (
            pod(privileged=(False, True)),
            DEFAULT,
            "spec.containers[1].securityContext.privileged: privileged containers are not allowed on this "
            "cluster (pymaster --allow-privileged)",
        ),
        (
            pod(host_network=True),
            DEFAULT,
            "spec.hostNetwork: host networking is not allowed on this cluster "
            "(pymaster --allow-host-network)",
        ),
        (
            pod(paths=("/srv/data",)),
            DEFAULT,
            "spec.volumes[0].hostPath.path: host path /srv/data is not under an allowed prefix "
            "(allowed: none; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/tmp/x", "/srv/database")),
            OPEN,
            "spec.volumes[1].hostPath.path: host path /srv/database is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/srv/data/../../etc/shadow",)),
            OPEN,
            "spec.volumes[0].hostPath.path: host path /etc/shadow is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
        (
            pod(paths=("/srv",)),
            OPEN,
            "spec.volumes[0].hostPath.path: host path /srv is not under an allowed prefix "
            "(allowed: /srv/data, /tmp; pymaster --allowed-host-path PREFIX)",
        ),
    ],
)
def test_refused(p, policy, message):
    with pytest.raises(Forbidden) as err:
        admit_pod(p, policy)
    assert err.value.message == message


@pytest.mark.parametrize("path", ["relative/path", "", "/a\0b"])
def test_bad_host_path_is_invalid(path):
    with pytest.raises(ValidationError) as err:
        admit_pod(pod(paths=(path,)), OPEN)
    assert err.value.field == "spec.volumes[0].hostPath.path"


@pytest.mark.parametrize(
    "path, normalized",
    [
        ("/", "/"),
        ("//", "/"),
        ("///etc", "/etc"),
        ("/a/b/../c/./d/", "/a/c/d"),
        ("/../../etc", "/etc"),
    ],
)
def test_normalize_host_path(path, normalized):
    assert normalize_host_path(path) == normalized


@pytest.mark.parametrize(
    "path, prefix, under",
    [
        ("/data", "/data", True),
        ("/data/x", "/data", True),
        ("/database", "/data", False),
        ("/etc", "/", True),
        ("/", "/data", False),
    ],
)
def test_path_is_under(path, prefix, under):
    assert path_is_under(path, prefix) is under


def test_policy_rejects_relative_prefix():
    with pytest.raises(ValueError, match="allowed host path 'data'"):
        AdmissionPolicy.of(allowed_host_paths=["data"])
