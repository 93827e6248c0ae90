"""The SQL store: tables, migrations, the batched writer and the read side (`queries`)."""

from probe.store.connection import create_engine, default_spool_dir, safe_url
from probe.store.opening import open_store
from probe.store.queries import StoredProbe
from probe.store.repository import Store
from probe.store.rows import ProbeRow, SentRow

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
