"""The SQL store: tables, migrations and the batched repository."""

from probe.store.repository import (
    Store,
    StoredProbe,
    create_engine,
    default_spool_dir,
    open_store,
    safe_url,
)
from probe.store.spool import ProbeRow, SentRow

__all__ = [
    "ProbeRow",
    "SentRow",
    "Store",
    "StoredProbe",
    "create_engine",
    "default_spool_dir",
    "open_store",
    "safe_url",
]
