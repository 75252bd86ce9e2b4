"""The master's storage: API objects by kind, namespace and name, with one cluster-wide
resourceVersion counter and watches served from an in-memory event log.

`base` is the contract (Store, Watch, WatchEvent), `events` the event log and watcher fan-out,
`sqlite` the embedded backend (the default). An etcd backend can implement the same protocol.
"""

from __future__ import annotations

import os
from pathlib import Path

from pymaster.store.events import DEFAULT_HISTORY
from pymaster.store.sqlite import SQLiteStore

DB_FILE = "pykube.db"


def open_store(data_dir: str | os.PathLike[str], history: int = DEFAULT_HISTORY) -> SQLiteStore:
    """Returns the SQLite store of a master data directory, creating the directory if needed.

    The store is not opened yet: ``await store.open()`` before use.

    Args:
        data_dir: The master's data directory; the database is ``<data_dir>/pykube.db``.
        history: How many events the watch log keeps.
    """
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(path / DB_FILE, history)
