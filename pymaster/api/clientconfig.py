"""Client config files (kubeconfig-like YAML): where the master is and the mTLS material to reach it.

Format (``admin.yaml`` written by the master and the agent's own config share it)::

    server: 127.0.0.1:6443
    certificate-authority-data: <base64 of CA PEM>
    client-certificate-data: <base64 of cert PEM>
    client-key-data: <base64 of key PEM>
    tls-server-name: pymaster   # the name checked in the master's certificate (the default)

Several masters (``pymaster --leader-elect``) are listed under ``servers:`` instead (or as a comma
list in ``server:``); the client uses the first and moves to the next when one is UNAVAILABLE::

    servers: [10.0.0.1:6443, 10.0.0.2:6443, 10.0.0.3:6443]

The client checks the master's certificate for the name ``tls-server-name`` (default
``pymaster``, ``pki.MASTER_SERVER_NAME``), never for the address it dials: node certificates are
signed by the same CA and may carry the master's address, but never that name.

The file holds a private key, so it is written 0600 and atomically (temp file + rename).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from pymaster.api.pki import MASTER_SERVER_NAME, atomic_write, cert_info, load_key

CONFIG_ENV = "PYKUBE_CONFIG"
_SERVER = "server"
_SERVERS = "servers"
_CA = "certificate-authority-data"
_CERT = "client-certificate-data"
_KEY = "client-key-data"
_SERVER_NAME = "tls-server-name"


@dataclass
class ClientConfig:
    """Connection settings of a pykube client. ``repr`` hides the private key."""

    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    tls_server_name: str = MASTER_SERVER_NAME
    # Every master, in the order tried ([server] when there is one); see ``split_servers``.
    servers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.servers:
            self.servers = split_servers(self.server)
        self.server = self.servers[0] if self.servers else self.server


def split_servers(text: str) -> list[str]:
    """"a:6443,b:6443" -> ["a:6443", "b:6443"] (blanks dropped, order kept, duplicates once)."""
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def default_config_path() -> Path:
    """``$PYKUBE_CONFIG`` if set, else ``~/.pykube/config``."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else Path.home() / ".pykube" / "config"


def _pem_field(data: dict, key: str, path: Path) -> bytes:
    value = data.get(key)
    if not value:
        raise ValueError(f"{path}: missing {key}")
    if not isinstance(value, str):
        raise ValueError(f"{path}: {key}: must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{path}: {key}: invalid base64") from None


def load_config(path: str | Path) -> ClientConfig:
    """Read and check a client config file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: bad YAML, a missing or malformed key, or PEM data that does not parse; the
            message names the file and the key.
    """
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be a YAML mapping")
    servers = data.get(_SERVERS)
    if servers is not None and (
        not isinstance(servers, list) or not servers or not all(isinstance(s, str) and s for s in servers)
    ):
        raise ValueError(f"{path}: {_SERVERS}: must be a list of HOST:PORT strings")
    server = data.get(_SERVER) or (",".join(servers) if servers else None)
    if not server or not isinstance(server, str):
        raise ValueError(f"{path}: missing {_SERVER} (or {_SERVERS})")
    server_name = data.get(_SERVER_NAME) or MASTER_SERVER_NAME
    if not isinstance(server_name, str):
        raise ValueError(f"{path}: {_SERVER_NAME}: must be a string")
    cfg = ClientConfig(
        server=server,
        ca_pem=_pem_field(data, _CA, path),
        cert_pem=_pem_field(data, _CERT, path),
        key_pem=_pem_field(data, _KEY, path),
        tls_server_name=server_name,
        servers=split_servers(",".join(servers)) if servers else [],
    )
    # Parse now: a broken file is reported here, by name, not as an opaque TLS handshake failure.
    for key, value, parse in (
        (_CA, cfg.ca_pem, cert_info),
        (_CERT, cfg.cert_pem, cert_info),
        (_KEY, cfg.key_pem, load_key),
    ):
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{path}: {key}: {exc}") from None
    return cfg


def dump_config(cfg: ClientConfig) -> str:
    """The YAML text of a client config."""
    data: dict[str, object] = {_SERVERS: list(cfg.servers)} if len(cfg.servers) > 1 else {_SERVER: cfg.server}
    data |= {
        _CA: base64.b64encode(cfg.ca_pem).decode(),
        _CERT: base64.b64encode(cfg.cert_pem).decode(),
        _KEY: base64.b64encode(cfg.key_pem).decode(),
        _SERVER_NAME: cfg.tls_server_name,
    }
    return yaml.safe_dump(data, sort_keys=False, width=1 << 20)


def save_config(path: str | Path, cfg: ClientConfig) -> None:
    """Write ``cfg`` to ``path`` (mode 0600, parent directories created 0700, atomic rename)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, dump_config(cfg).encode(), 0o600)


def channel_credentials(cfg: ClientConfig) -> grpc.ChannelCredentials:
    """mTLS channel credentials: trust the cluster CA, present the config's client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=cfg.ca_pem, private_key=cfg.key_pem, certificate_chain=cfg.cert_pem
    )


def channel_options(cfg: ClientConfig) -> list[tuple[str, str]]:
    """Channel options: the name to check in the master's certificate, whatever address is
    dialled (``tls_server_name``; the master's reserved name when empty)."""
    return [("grpc.ssl_target_name_override", cfg.tls_server_name or MASTER_SERVER_NAME)]
