"""Engines and URLs: how the store connects, what counts as unreachable, where it spools.

>>> engine = create_engine("sqlite+aiosqlite:///probe.db")     # WAL, a busy timeout
>>> safe_url("postgresql+psycopg://probe:secret@db/probe")
'postgresql+psycopg://probe:***@db/probe'
>>> default_spool_dir("sqlite+aiosqlite:///probe.db")
PosixPath('probe.db.spool')
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from probe.store import bulk

# The database counts as unreachable for these, and for a timeout.
UNREACHABLE = (OperationalError, InterfaceError, OSError, TimeoutError)
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z._-]")


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the writer."""
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        # A database that does not answer must fail a connect in seconds, not minutes.
        connect_args["connect_timeout"] = 5
        bulk.binary_lists()
    elif backend == "sqlite":
        # Each batch size is its own multi-row INSERT, and sqlite3 keeps 128 prepared
        # statements per connection by default, about 0.5 MB each for a 500-row batch:
        # the soak grew by 200 MB before that cache was full. Preparing is cheap.
        connect_args["cached_statements"] = 16
    engine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as nothing rather than leaked
        return "<invalid store url>"


def default_spool_dir(url: str) -> Path | None:
    """Next to a SQLite file (``probe.db.spool``), else ``probe-spool/<store>`` here.

    The directory belongs to one store, so a spool is never replayed into another one.
    None for an in-memory SQLite database, which a restart does not keep anyway.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return Path(parsed.database + ".spool")
    name = f"{parsed.host or 'local'}-{parsed.port or ''}-{parsed.database or ''}"
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return Path("probe-spool") / f"{_UNSAFE_NAME.sub('_', name)[:80]}-{digest}"
