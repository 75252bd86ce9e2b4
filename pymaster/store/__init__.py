"""The master's storage: API objects by kind, namespace and name, with one cluster-wide
resourceVersion counter and watches served from an in-memory event log.

``base`` is the contract (Store, Watch, WatchEvent, ValueTransformer), ``events`` the event log
and watcher fan-out, ``cache`` the in-memory copy every backend serves reads and watches from,
``sqlite`` the embedded backend (the default), ``etcd`` the backend several masters share,
``encryption`` the encryption of Secrets at rest.
``open_store(url)`` picks the backend from a URL, so everything above this package sees only the
Store protocol.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from pymaster.store.base import Store, ValueTransformer
from pymaster.store.etcd import EtcdStore
from pymaster.store.etcd_client import EtcdTLS
from pymaster.store.events import DEFAULT_HISTORY
from pymaster.store.sqlite import SQLiteStore

DB_FILE = "pykube.db"


def sqlite_url(data_dir: str | os.PathLike[str]) -> str:
    """The URL of a master data directory's SQLite database: ``sqlite:///<abs dir>/pykube.db``."""
    return f"sqlite://{Path(data_dir).absolute() / DB_FILE}"


def open_store(
    url: str,
    history: int = DEFAULT_HISTORY,
    transformer: ValueTransformer | None = None,
    etcd_tls: EtcdTLS | None = None,
    ttls: Mapping[str, float] | None = None,
) -> Store:
    """The store a URL names, not opened yet (``await store.open()`` before use).

    Args:
        url: ``sqlite:///absolute/path/pykube.db`` (the directory is created if missing) or
            ``etcd://HOST:PORT[,HOST:PORT...]`` (the client URLs of etcd members).
        history: How many events the watch log keeps.
        transformer: What the backend writes for each object's bytes, and reads back (encryption
            at rest); None: the bytes as they are.
        etcd_tls: TLS files for etcd (ignored by sqlite://); None: plain text.
        ttls: Seconds objects of a kind live after their last write, kept by etcd leases (etcd://
            only; on SQLite the master's TTL controller alone deletes them).

    Raises:
        ValueError: an unsupported scheme or a malformed URL; the message says what is accepted.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ValueError(f"store URL {url!r}: expected sqlite:///absolute/path/to/{DB_FILE}")
        path = Path(parsed.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, history, transformer=transformer)
    if parsed.scheme == "etcd":
        return EtcdStore(url, history, transformer=transformer, tls=etcd_tls, ttls=ttls)
    raise ValueError(
        f"store URL {url!r}: unsupported scheme {parsed.scheme!r}; supported: sqlite://, etcd://"
    )
