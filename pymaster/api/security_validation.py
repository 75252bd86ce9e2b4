"""Validation of security contexts with Kubernetes' rules and field paths: a container's
``securityContext``, the pod's ``spec.securityContext`` and the older AppArmor annotations
(``container.apparmor.security.beta.kubernetes.io/<container>``).

Kubernetes' rules: user and group ids between 0 and 2^31-1; seccomp and AppArmor profile types
(``RuntimeDefault``, ``Unconfined``, ``Localhost``) with a ``localhostProfile`` exactly when the
type is ``Localhost`` (a seccomp one a relative path without ``..``); ``procMount`` ``Default``
(``Unmasked`` needs a user namespace, ``hostUsers: false``, which pykube does not offer);
``allowPrivilegeEscalation: false`` neither with ``privileged`` nor with the capability
``SYS_ADMIN``; ``fsGroupChangePolicy`` ``Always`` or ``OnRootMismatch``; sysctl names in
Kubernetes' format, no duplicates, no network sysctl with ``hostNetwork``; an AppArmor annotation
names a container of the pod, holds ``runtime/default``, ``unconfined`` or ``localhost/<name>``,
and agrees with the container's (else the pod's) ``appArmorProfile``.

Stricter than Kubernetes, because Kubernetes lets these through to fail (or do nothing) on the
node: capability names must be Linux capabilities (``NET_ADMIN`` or ``CAP_NET_ADMIN``, any case,
or ``ALL``); ``SYS_ADMIN`` without the ``CAP_`` prefix and ``ALL`` count as ``CAP_SYS_ADMIN`` for
``allowPrivilegeEscalation``; an AppArmor ``localhost/`` annotation needs a profile name.

Whether a node runs what is valid is its own admission's business (``pykubelet.admission``:
unsafe sysctls, AppArmor on the host), and ``privileged`` the admission policy's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pymaster.api import objects_pb2
from pymaster.api.admission import (
    NET,
    SYSCTL_MAX_LENGTH,
    SYSCTL_NAME,
    normalize_sysctl,
    sysctl_namespace,
)
from pymaster.api.checks import MAX_PATH_BYTES, check_count, check_enum, check_string_size, key_path, quote
from pymaster.api.errors import ValidationError

RUNTIME_DEFAULT, UNCONFINED, LOCALHOST = "RuntimeDefault", "Unconfined", "Localhost"
PROFILE_TYPES = (RUNTIME_DEFAULT, UNCONFINED, LOCALHOST)
APPARMOR_UNCONFINED = UNCONFINED
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
# The annotation's values: runtime/default, unconfined, localhost/<profile>.
APPARMOR_ANNOTATION_RUNTIME_DEFAULT = "runtime/default"
APPARMOR_ANNOTATION_UNCONFINED = "unconfined"
APPARMOR_ANNOTATION_LOCALHOST = "localhost/"
PROC_MOUNT_TYPES = ("Default", "Unmasked")
FS_GROUP_CHANGE_POLICIES = ("OnRootMismatch", "Always")
MAX_ID = 2**31 - 1  # Kubernetes' maxUserID/maxGroupID
MAX_APPARMOR_PROFILE = 4095  # PATH_MAX - 1, Kubernetes' limit on a localhost AppArmor profile
MAX_CAPABILITIES = 64  # per add/drop list; Linux has 41
MAX_GROUPS = 1024  # supplementalGroups
MAX_SYSCTLS = 128
MAX_SYSCTL_VALUE = 4096  # a /proc/sys write takes at most a page

# Linux capabilities (capability.h), without the CAP_ prefix.
CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
})
ALL_CAPABILITIES = "ALL"


def normalize_capability(name: str) -> str:
    """A capability as the engine takes it: ``CAP_NET_ADMIN`` for ``net_admin``, ``ALL`` for all."""
    upper = name.upper()
    if upper == ALL_CAPABILITIES:
        return upper
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def check_container_security(path: str, context: objects_pb2.SecurityContext) -> None:
    """Check a container's ``securityContext`` at ``path``, in field order."""
    for field in ("add", "drop"):
        _check_capabilities(f"{path}.capabilities.{field}", getattr(context.capabilities, field))
    if context.HasField("run_as_user"):
        _check_id(f"{path}.runAsUser", context.run_as_user)
    if context.HasField("run_as_group"):
        _check_id(f"{path}.runAsGroup", context.run_as_group)
    if context.HasField("allow_privilege_escalation") and not context.allow_privilege_escalation:
        if context.privileged:
            raise ValidationError(
                path, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
            )
        added = {normalize_capability(name) for name in context.capabilities.add}
        if added & {"CAP_SYS_ADMIN", ALL_CAPABILITIES}:
            raise ValidationError(
                path, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"
            )
    if context.HasField("seccomp_profile"):
        _check_seccomp(f"{path}.seccompProfile", context.seccomp_profile)
    if context.HasField("app_armor_profile"):
        _check_apparmor(f"{path}.appArmorProfile", context.app_armor_profile)
    check_enum(f"{path}.procMount", context.proc_mount, PROC_MOUNT_TYPES)
    if context.proc_mount == "Unmasked":
        raise ValidationError(
            f"{path}.procMount",
            'invalid value "Unmasked": `hostUsers` must be false to use `Unmasked` (pykube runs no pod '
            "in a user namespace)",
        )


def check_pod_security(spec: objects_pb2.PodSpec, annotations: Mapping[str, str] | None = None) -> None:
    """Check the pod's ``spec.securityContext``, in field order, then the AppArmor annotations
    among ``annotations`` (the pod's metadata.annotations) against ``spec``."""
    context, path = spec.security_context, "spec.securityContext"
    ids = (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup"), ("fs_group", "fsGroup"))
    for field, json_name in ids:
        if context.HasField(field):
            _check_id(f"{path}.{json_name}", getattr(context, field))
    check_count(f"{path}.supplementalGroups", context.supplemental_groups, MAX_GROUPS, "groups")
    for i, gid in enumerate(context.supplemental_groups):
        _check_id(f"{path}.supplementalGroups[{i}]", gid)
    check_enum(f"{path}.fsGroupChangePolicy", context.fs_group_change_policy, FS_GROUP_CHANGE_POLICIES)
    if context.HasField("seccomp_profile"):
        _check_seccomp(f"{path}.seccompProfile", context.seccomp_profile)
    if context.HasField("app_armor_profile"):
        _check_apparmor(f"{path}.appArmorProfile", context.app_armor_profile)
    _check_sysctls(f"{path}.sysctls", context.sysctls, spec.host_network)
    if annotations:
        check_apparmor_annotations(spec, annotations)


def check_apparmor_annotations(spec: objects_pb2.PodSpec, annotations: Mapping[str, str]) -> None:
    """Check the AppArmor annotations of a pod: each names one of its containers, holds a valid
    profile, and agrees with the container's (else the pod's) ``appArmorProfile``."""
    containers = {c.name: (f"spec.initContainers[{i}]", c) for i, c in enumerate(spec.init_containers)}
    containers.update({c.name: (f"spec.containers[{i}]", c) for i, c in enumerate(spec.containers)})
    for key in sorted(annotations):
        if not key.startswith(APPARMOR_ANNOTATION_PREFIX):
            continue
        path, value = key_path("metadata.annotations", key), annotations[key]
        name = key[len(APPARMOR_ANNOTATION_PREFIX):]
        if name not in containers:
            raise ValidationError(path, f"invalid value {quote(name)}: container not found")
        profile = apparmor_annotation_profile(value)
        if profile is None:
            raise ValidationError(
                path, f"invalid value {quote(value)}: invalid AppArmor profile name (runtime/default, "
                "unconfined or localhost/<profile>)"
            )
        if profile.type == LOCALHOST and not profile.localhost_profile.strip():
            raise ValidationError(path, f"invalid value {quote(value)}: invalid empty AppArmor profile name")
        container_path, container = containers[name]
        if container.security_context.HasField("app_armor_profile"):
            field = container.security_context.app_armor_profile
        elif spec.security_context.HasField("app_armor_profile"):
            field = spec.security_context.app_armor_profile
        else:
            continue
        if not profile.type:  # an empty annotation asks for nothing: nothing to disagree with
            continue
        field_path = f"{container_path}.securityContext.appArmorProfile"
        if field.type != profile.type:
            raise ValidationError(f"{field_path}.type", "apparmor type in annotation and field must match")
        if field.localhost_profile != profile.localhost_profile:
            raise ValidationError(
                f"{field_path}.localhostProfile", "apparmor profile in annotation and field must match"
            )


def check_apparmor_annotation_update(old: Mapping[str, str], new: Mapping[str, str]) -> None:
    """AppArmor annotations may not be added, changed or removed on an update (Kubernetes' rule)."""
    for key in sorted(set(old) | set(new)):
        if not key.startswith(APPARMOR_ANNOTATION_PREFIX) or old.get(key) == new.get(key):
            continue
        if key in old:
            message = "may not remove or update AppArmor annotations"
        else:
            message = "may not add AppArmor annotations"
        raise ValidationError(key_path("metadata.annotations", key), message)


def apparmor_annotation_profile(value: str) -> objects_pb2.AppArmorProfile | None:
    """The profile an AppArmor annotation's value asks for (an empty profile for "", which asks
    for nothing); None when the value is none of Kubernetes' forms."""
    if value == APPARMOR_ANNOTATION_RUNTIME_DEFAULT:
        return objects_pb2.AppArmorProfile(type=RUNTIME_DEFAULT)
    if value == APPARMOR_ANNOTATION_UNCONFINED:
        return objects_pb2.AppArmorProfile(type=UNCONFINED)
    if value.startswith(APPARMOR_ANNOTATION_LOCALHOST):
        name = value[len(APPARMOR_ANNOTATION_LOCALHOST):]
        return objects_pb2.AppArmorProfile(type=LOCALHOST, localhost_profile=name)
    return objects_pb2.AppArmorProfile() if value == "" else None


def _check_id(path: str, value: int) -> None:
    if not 0 <= value <= MAX_ID:
        raise ValidationError(path, f"invalid value {value}: must be between 0 and {MAX_ID}, inclusive")


def _check_capabilities(path: str, names: Sequence[str]) -> None:
    check_count(path, names, MAX_CAPABILITIES, "capabilities")
    for i, name in enumerate(names):
        normalized = normalize_capability(name)
        if normalized != ALL_CAPABILITIES and normalized.removeprefix("CAP_") not in CAPABILITIES:
            raise ValidationError(
                f"{path}[{i}]",
                f"unsupported value {quote(name)}: not a Linux capability (such as NET_ADMIN or "
                "CAP_NET_ADMIN), nor ALL",
            )


def _check_seccomp(path: str, profile: objects_pb2.SeccompProfile) -> None:
    check_enum(f"{path}.type", profile.type, PROFILE_TYPES, required=True)
    local, local_path = profile.localhost_profile, f"{path}.localhostProfile"
    if profile.type != LOCALHOST:
        if local:
            raise ValidationError(local_path, "can only be set when seccomp type is Localhost")
        return
    if not local:
        raise ValidationError(local_path, "required: must be set when seccomp type is Localhost")
    check_string_size(local_path, local, MAX_PATH_BYTES)
    if local.startswith("/"):
        raise ValidationError(local_path, f"invalid value {quote(local)}: must be a relative path")
    if ".." in local.split("/"):
        raise ValidationError(local_path, f"invalid value {quote(local)}: must not contain '..'")


def _check_apparmor(path: str, profile: objects_pb2.AppArmorProfile) -> None:
    check_enum(f"{path}.type", profile.type, PROFILE_TYPES, required=True)
    local, local_path = profile.localhost_profile, f"{path}.localhostProfile"
    if profile.type != LOCALHOST:
        if local:
            raise ValidationError(local_path, "can only be set when AppArmor type is Localhost")
        return
    if not local.strip():
        raise ValidationError(local_path, "required: must be set when AppArmor type is Localhost")
    if local != local.strip():
        raise ValidationError(local_path, f"invalid value {quote(local)}: must not be padded with whitespace")
    if len(local) > MAX_APPARMOR_PROFILE:
        raise ValidationError(local_path, f"too long: must have at most {MAX_APPARMOR_PROFILE} characters")


def _check_sysctls(path: str, sysctls: Sequence[objects_pb2.Sysctl], host_network: bool) -> None:
    check_count(path, sysctls, MAX_SYSCTLS, "sysctls")
    seen: set[str] = set()
    for i, sysctl in enumerate(sysctls):
        name_path = f"{path}[{i}].name"
        if not sysctl.name:
            raise ValidationError(name_path, "required")
        if len(sysctl.name) > SYSCTL_MAX_LENGTH or not SYSCTL_NAME.fullmatch(sysctl.name):
            raise ValidationError(
                name_path, f"invalid value {quote(sysctl.name)}: must have at most {SYSCTL_MAX_LENGTH} "
                f"characters and match regex {SYSCTL_NAME.pattern}"
            )
        name = normalize_sysctl(sysctl.name)
        if name in seen:
            raise ValidationError(name_path, f"duplicate value {quote(sysctl.name)}")
        seen.add(name)
        if host_network and sysctl_namespace(name) == NET:
            message = "may not be specified when 'hostNetwork' is true"
            raise ValidationError(name_path, f"invalid value {quote(sysctl.name)}: {message}")
        check_string_size(f"{path}[{i}].value", sysctl.value, MAX_SYSCTL_VALUE)
