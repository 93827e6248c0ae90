"""A destination the simulator inserts rows into, like a system other integrations poll.

One row per delivered copy, in a table created if absent:
`id` (autoincrement), `probe_id` varchar(20), `received_at` timestamptz (UTC, when
inserted) and `message` text (what GS sent, mojibake if corrupted).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.sim.config import SqlDestinationConfig
from probe.sim.destinations.base import Fate, QueuedDestination
from probe.sim.payload import Message, mangle
from probe.sim.truth import TruthLog
from probe.store import create_engine, safe_url

log = structlog.get_logger("probe.sim")

# Tries before a message is `undeliverable`, and the pause before the second try (doubled
# before each later one): short, because later messages wait behind it.
ATTEMPTS = 3
_BACKOFF_SECONDS = 0.1


def inbox_table(name: str) -> Table:
    """The table a SQL destination writes, in a metadata of its own."""
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("probe_id", String(20), nullable=False, index=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("message", Text, nullable=False),
    )


class SqlDestination(QueuedDestination):
    """Inserts each due message; `visible_at` is the row's `received_at`.

    That time is taken right before the INSERT, in the transaction that commits right
    after it, so readers see the row a moment (the commit) after `visible_at`.
    """

    kind = "sql"

    def __init__(
        self, name: str, config: SqlDestinationConfig, *, seed: int, truth: TruthLog
    ) -> None:
        super().__init__(name, config, seed=seed, truth=truth)
        self.url = config.url
        self.table = inbox_table(config.table)
        self._engine: AsyncEngine | None = None

    async def open(self) -> None:
        """Connect and create the table if it is absent; errors reach `Simulator.start`."""
        self._engine = create_engine(self.url)
        async with self._engine.begin() as conn:
            await conn.run_sync(self.table.metadata.create_all)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def write(self, message: Message, fate: Fate) -> None:
        """Insert the row(s) and record the truth once they are committed."""
        sent = mangle(message.text) if fate.corrupt else message.text
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                inserted_at = await self._insert(message.probe_id, sent, fate.copies)
            except SQLAlchemyError as exc:
                log.info("sim_sql_insert_failed", destination=self.name, error=str(exc))
                continue
            corrupted = sent != message.text
            self._record(message, fate, "delivered", visible_at=inserted_at, corrupted=corrupted)
            return
        log.warning(
            "sim_sql_undeliverable",
            destination=self.name,
            probe_id=message.probe_id,
            url=safe_url(self.url),
        )
        self._record(message, fate, "undeliverable")

    async def _insert(self, probe_id: str, text: str, copies: int) -> float:
        assert self._engine is not None
        async with self._engine.begin() as conn:
            inserted_at = time.time()
            row = {
                # The column is varchar(20), the longest id HL7 MSH-10 holds.
                "probe_id": probe_id[:20],
                "received_at": datetime.fromtimestamp(inserted_at, tz=UTC),
                "message": text,
            }
            await conn.execute(self.table.insert(), [row] * copies)
        return inserted_at
