"""Opening the store: connect, check (or, for SQLite, bring up to date) the schema.

>>> store = await open_store("sqlite+aiosqlite:///probe.db", spool=Path("probe.db.spool"))
>>> store.start()
>>> await store.recover()       # what a dead process left in the spool
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.errors import StoreError
from probe.store import migrate
from probe.store.connection import UNREACHABLE, create_engine, safe_url
from probe.store.repository import Store
from probe.store.spool import Spool

log = structlog.get_logger("probe.store")


@dataclass(frozen=True, slots=True)
class _Options:
    """How to make the `Store`, once the engine is there."""

    flush_interval: float
    batch_size: int
    spool: Path | None
    node: str
    local_claims: bool

    def store(self, engine: AsyncEngine) -> Store:
        return Store(
            engine,
            flush_interval=self.flush_interval,
            batch_size=self.batch_size,
            spool=Spool(self.spool, node=self.node) if self.spool is not None else None,
            node=self.node or None,
            local_claims=self.local_claims,
        )


async def open_store(
    url: str,
    *,
    flush_interval: float = 0.2,
    batch_size: int = 2000,
    migrate_sqlite: bool = True,
    spool: Path | None = None,
    node: str = "",
    offline_start: bool = False,
    local_claims: bool = True,
) -> Store:
    """Connect, bring SQLite up to date (PostgreSQL must be upgraded with `probe db upgrade`).

    With ``spool`` (a directory), writes go through a spool file there (`probe.store.spool`);
    call `Store.recover` after `Store.start` to replay what a dead process left.

    ``offline_start``: a PostgreSQL store that cannot be reached is opened anyway when its
    spool directory already exists (the daemon has run against it before, so this is a
    restart, not a first start with a wrong URL). The store is then `offline` from the
    start: claims are taken locally, and the schema is checked before the first write.
    """
    options = _Options(flush_interval, batch_size, spool, node, local_claims)
    engine = create_engine(url)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        await engine.dispose()
        raise StoreError(f"unsupported store {engine.dialect.name!r}: use sqlite or postgresql")
    try:
        if engine.dialect.name == "sqlite" and migrate_sqlite:
            await migrate.upgrade(engine)
        current, head = await migrate.revision_state(engine)
    except (SQLAlchemyError, OSError) as exc:
        if offline_start and await _restart(engine, options, exc):
            log.error("store_offline_at_start", store=safe_url(url), error=type(exc).__name__)
            store = options.store(engine)
            store.offline = store.schema_unchecked = True
            return store
        await engine.dispose()
        raise StoreError(f"cannot open store {safe_url(url)}: {exc}") from exc
    if current != head:
        await engine.dispose()
        raise StoreError(
            f"store {safe_url(url)} is at schema {current or 'none'}, this version needs "
            f"{head}: run `probe db upgrade -c CONFIG`"
        )
    return options.store(engine)


async def _restart(engine: AsyncEngine, options: _Options, exc: BaseException) -> bool:
    """Whether a store that could not be reached may open offline: a PostgreSQL one this
    daemon has run against (its spool directory exists), with local claims."""
    if engine.dialect.name != "postgresql" or not options.local_claims:
        return False
    if options.spool is None or not isinstance(exc, UNREACHABLE):
        return False
    return await asyncio.to_thread(os.path.isdir, options.spool)
