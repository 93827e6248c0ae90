"""The SQL store: tables, migrations and the batched repository."""

from probe.store.repository import (
    ProbeRow,
    SentRow,
    Store,
    StoredProbe,
    create_engine,
    open_store,
    safe_url,
)

__all__ = [
    "ProbeRow",
    "SentRow",
    "Store",
    "StoredProbe",
    "create_engine",
    "open_store",
    "safe_url",
]
