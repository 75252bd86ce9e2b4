"""The ConfigMaps and Secrets of ``pyctl create configmap|secret``, built from the command line
the way kubectl builds them, with kubectl's messages:

- ``--from-literal KEY=VALUE`` (the value may hold "=");
- ``--from-file [KEY=]PATH``: the file's content under KEY, else under the file's base name; a
  directory gives one key per regular file in it (no recursion; symlinks, devices and
  sub-directories are skipped) and takes no KEY; in a ConfigMap, content that is not UTF-8 goes
  to ``binaryData``;
- ``--from-env-file PATH`` (repeatable, not with the two above): ``KEY=VALUE`` lines, ``#``
  comments and blank lines skipped, leading blanks and a UTF-8 byte order mark dropped, a line
  holding only ``KEY`` takes the value of that variable in pyctl's environment (empty if unset),
  keys must be environment variable names;
- ``secret tls``: the certificate and key files, checked to be a PEM pair that belongs together;
- ``secret docker-registry``: a ``.dockerconfigjson`` for one registry, or files.

A key given twice is an error. Everything here reads only the files named; it raises
``CommandError``.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pymaster.api import objects_pb2
from pymaster.api.config_validation import (
    DOCKER_CONFIG_JSON,
    DOCKER_CONFIG_JSON_KEY,
    TLS,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    config_key_error,
)
from pymaster.cli.context import CommandError

DEFAULT_DOCKER_SERVER = "https://index.docker.io/v1/"
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_ENV_VAR_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
    "'.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
    "regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
)
_UTF8_BOM = b"\xef\xbb\xbf"

# (key, content) -> None: adds one entry, raising CommandError for a bad or repeated key.
AddEntry = Callable[[str, bytes], None]


def _q(text: str) -> str:
    """Go's %q, near enough."""
    return json.dumps(text, ensure_ascii=False)


def parse_literal_source(source: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value); the value keeps any further "="."""
    key, sep, value = source.partition("=")
    if not sep or not key:
        raise CommandError(f"invalid literal source {source}, expected key=value")
    return key, value


def parse_file_source(source: str) -> tuple[str, str]:
    """``[KEY=]PATH`` -> (key, path); without KEY the key is the path's base name."""
    separators = source.count("=")
    if separators == 0:
        return posixpath.basename(source.rstrip("/")) or source, source
    if separators > 1:
        raise CommandError("key names or file paths cannot contain '='")
    key, _, path = source.partition("=")
    if not key:
        raise CommandError(f"key name for file path {path} missing")
    if not path:
        raise CommandError(f"file path for key name {key} missing")
    return key, path


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise CommandError(f"error reading {path}: {_reason(err)}") from None


def _reason(err: OSError) -> str:
    """The lower-case reason Go prints ("no such file or directory")."""
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def add_file_sources(sources: Sequence[str], add: AddEntry) -> None:
    """Every ``--from-file`` source, in order."""
    for source in sources:
        key, path = parse_file_source(source)
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            raise CommandError(f"error reading {path}: {_reason(err)}") from None
        if not stat.S_ISDIR(mode):
            add(key, _read(path))
            continue
        if "=" in source:
            raise CommandError("cannot give a key name for a directory path")
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as err:
            raise CommandError(f"error listing files in {path}: {_reason(err)}") from None
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                add(entry.name, _read(entry.path))


def add_literal_sources(sources: Sequence[str], add: AddEntry) -> None:
    for source in sources:
        key, value = parse_literal_source(source)
        add(key, value.encode())


def parse_env_file(path: str, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The (key, value) pairs of an env file, by kubectl's rules (see the module docstring)."""
    if Path(path).is_dir():
        raise CommandError(f"env file {path} cannot be a directory")
    environ = os.environ if environ is None else environ
    pairs = []
    for number, raw in enumerate(_read(path).split(b"\n"), 1):
        line = raw.removesuffix(b"\r")
        if number == 1:
            line = line.removeprefix(_UTF8_BOM)
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise CommandError(f"env file {path} contains invalid utf8 bytes at line {number}") from None
        text = text.lstrip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not _ENV_VAR_NAME.fullmatch(key):
            raise CommandError(f"{_q(key)} is not a valid key name: {_ENV_VAR_MSG}")
        pairs.append((key, value if sep else environ.get(key, "")))
    return pairs


def add_env_file_sources(sources: Sequence[str], add: AddEntry) -> None:
    for path in sources:
        for key, value in parse_env_file(path):
            add(key, value.encode())


def _check_sources(literals: Sequence[str], files: Sequence[str], env_files: Sequence[str]) -> None:
    if env_files and (literals or files):
        raise CommandError("from-env-file cannot be combined with from-file or from-literal")


def _new(message: type, kind: str, name: str, namespace: str):
    obj = message(api_version="v1", kind=kind)
    obj.metadata.name = name
    obj.metadata.namespace = namespace
    return obj


def config_map_from_sources(
    name: str, namespace: str, literals: Sequence[str], files: Sequence[str], env_files: Sequence[str]
) -> objects_pb2.ConfigMap:
    """kubectl create configmap: files, then literals, then env files."""
    _check_sources(literals, files, env_files)
    config_map = _new(objects_pb2.ConfigMap, "ConfigMap", name, namespace)

    def add(key: str, content: bytes) -> None:
        error = config_key_error(key)
        if error is not None:
            raise CommandError(f"{_q(key)} is not a valid key name for a ConfigMap: {error}")
        for field, where in ((config_map.data, "Data"), (config_map.binary_data, "BinaryData")):
            if key in field:
                raise CommandError(
                    f"cannot add key {_q(key)}, another key by that name already exists in {where} for "
                    f"ConfigMap {_q(name)}"
                )
        try:
            config_map.data[key] = content.decode()
        except UnicodeDecodeError:
            config_map.binary_data[key] = content

    add_file_sources(files, add)
    add_literal_sources(literals, add)
    add_env_file_sources(env_files, add)
    return config_map


def _secret_adder(secret: objects_pb2.Secret) -> AddEntry:
    def add(key: str, content: bytes) -> None:
        error = config_key_error(key)
        if error is not None:
            raise CommandError(f"{_q(key)} is not valid key name for a Secret {error}")
        if key in secret.data:
            raise CommandError(f"cannot add key {key}, another key by that name already exists")
        secret.data[key] = content

    return add


def secret_from_sources(
    name: str, namespace: str, type_: str, literals: Sequence[str], files: Sequence[str],
    env_files: Sequence[str],
) -> objects_pb2.Secret:
    """kubectl create secret generic: literals, then files, then env files; type "" is the
    server's default (Opaque)."""
    _check_sources(literals, files, env_files)
    secret = _new(objects_pb2.Secret, "Secret", name, namespace)
    secret.type = type_
    add = _secret_adder(secret)
    add_literal_sources(literals, add)
    add_file_sources(files, add)
    add_env_file_sources(env_files, add)
    return secret


def check_tls_pair(cert_pem: bytes, key_pem: bytes) -> None:
    """The certificate file's first certificate and the key file's key belong together (Go's
    tls.X509KeyPair, with its messages)."""
    if b"-----BEGIN" not in cert_pem:
        raise CommandError("tls: failed to find any PEM data in certificate input")
    if b"-----BEGIN" not in key_pem:
        raise CommandError("tls: failed to find any PEM data in key input")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CommandError("tls: failed to find certificate PEM data in certificate input") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CommandError("tls: failed to parse private key") from None
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise CommandError("tls: private key does not match public key")


def tls_secret(name: str, namespace: str, cert_path: str, key_path: str) -> objects_pb2.Secret:
    """kubectl create secret tls: ``tls.crt`` and ``tls.key``, type kubernetes.io/tls."""
    if not cert_path or not key_path:
        raise CommandError("key and cert must be specified")
    contents = []
    for path in (cert_path, key_path):
        try:
            contents.append(Path(path).read_bytes())
        except OSError as err:
            raise CommandError(f"Cannot read file {path}, open {path}: {_reason(err)}") from None
    check_tls_pair(*contents)
    secret = _new(objects_pb2.Secret, "Secret", name, namespace)
    secret.type = TLS
    secret.data[TLS_CERT_KEY], secret.data[TLS_KEY_KEY] = contents
    return secret


def docker_config_json(server: str, username: str, password: str, email: str) -> bytes:
    """A ~/.docker/config.json for one registry, as kubectl writes it (compact, empty fields
    left out, ``auth`` = base64 of user:password)."""
    entry = {"username": username, "password": password, "email": email}
    entry = {k: v for k, v in entry.items() if v}
    entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: entry}}, separators=(",", ":"), ensure_ascii=False).encode()


def docker_registry_secret(
    name: str, namespace: str, server: str, username: str, password: str, email: str, files: Sequence[str]
) -> objects_pb2.Secret:
    """kubectl create secret docker-registry: type kubernetes.io/dockerconfigjson, from the
    credentials or from --from-file."""
    if not files and not (username and password and server):
        raise CommandError(
            "either --from-file or the combination of --docker-username, --docker-password and "
            "--docker-server is required"
        )
    secret = _new(objects_pb2.Secret, "Secret", name, namespace)
    secret.type = DOCKER_CONFIG_JSON
    if files:
        add_file_sources(files, _secret_adder(secret))
    else:
        secret.data[DOCKER_CONFIG_JSON_KEY] = docker_config_json(server, username, password, email)
    return secret
