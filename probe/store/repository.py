"""The store: slot claims written at once, everything else written in batches.

Claims are group-committed: every claim that arrives while a claim transaction runs goes
into the next one, so a thousand probes per second cost a few transactions, not a thousand,
and no claim waits for a timer. Sightings, send receipts and results are queued and written
together every ``flush_interval`` or ``batch_size`` items. A failed batch stays queued and
is retried with backoff; `probe_store_write_errors_total` counts the failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, event, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from probe.errors import StoreError
from probe.model import Result, Sighting
from probe.store import migrate, rollup
from probe.store.tables import probes, results, sightings

log = structlog.get_logger("probe.store")


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """A probe as stored before it is sent."""

    probe_id: str
    flow: str
    slot_at: datetime
    claimed_at: datetime
    deadline_at: datetime
    node: str | None = None


@dataclass(frozen=True, slots=True)
class SentRow:
    probe_id: str
    sent_at: datetime
    send_reason: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class StoredProbe:
    """A probe read back from the store, with the destinations that already have a result."""

    probe_id: str
    flow: str
    slot_at: datetime
    claimed_at: datetime
    deadline_at: datetime
    sent_at: datetime | None
    send_reason: str | None
    node: str | None
    resolved: frozenset[str]


class Store:
    """Async access to the probe store. Create with `open_store`."""

    def __init__(self, engine: AsyncEngine, *, flush_interval: float, batch_size: int) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.on_write_error: Callable[[], None] = lambda: None
        self._claims: list[tuple[ProbeRow, asyncio.Future[bool]]] = []
        self._claim_wake = asyncio.Event()
        self._queue: list[SentRow | Sighting | Result] = []
        self._queue_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        dialect = engine.dialect.name
        self._insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert

    @property
    def backlog(self) -> int:
        """Items waiting to be written."""
        return len(self._queue) + len(self._claims)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="store-claims"),
            asyncio.create_task(self._write_loop(), name="store-writes"),
        ]

    async def claim(self, row: ProbeRow) -> bool:
        """Store the probe if its (flow, slot) is free. False: another daemon has the slot."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((row, future))
        self._claim_wake.set()
        return await future

    def record_sent(self, row: SentRow) -> None:
        self._enqueue(row)

    def add_sighting(self, sighting: Sighting) -> None:
        self._enqueue(sighting)

    def add_result(self, result: Result) -> None:
        self._enqueue(result)

    def _enqueue(self, item: SentRow | Sighting | Result) -> None:
        self._queue.append(item)
        if len(self._queue) >= self.batch_size:
            self._queue_wake.set()

    async def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc

    async def close(self, *, flush_timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``flush_timeout``), then close the engine."""
        self._closing = True
        self._queue_wake.set()
        self._claim_wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        if self._queue:
            log.error("store_unflushed", items=len(self._queue))
        for _, future in self._claims:
            if not future.done():
                future.set_exception(StoreError("store closed"))
        await self.engine.dispose()

    async def _claim_loop(self) -> None:
        while not (self._closing and not self._claims):
            await self._claim_wake.wait()
            self._claim_wake.clear()
            batch, self._claims = self._claims, []
            if not batch:
                continue
            try:
                won = await self._insert_claims([row for row, _ in batch])
            except SQLAlchemyError as exc:
                self.on_write_error()
                error = StoreError(f"cannot claim slot: {type(exc).__name__}: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for row, future in batch:
                if not future.done():
                    future.set_result(row.probe_id in won)

    async def _insert_claims(self, rows: list[ProbeRow]) -> set[str]:
        statement = (
            self._insert(probes)
            .on_conflict_do_nothing(index_elements=["flow", "slot_at"])
            .returning(probes.c.probe_id)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(statement, [asdict(row) for row in rows])
            return {row.probe_id for row in result}

    async def _write_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._queue_wake.wait()
            self._queue_wake.clear()
            if self._queue:
                batch = self._queue[: self.batch_size]
                await self._write_with_retry(batch)
                del self._queue[: len(batch)]
            elif self._closing:
                return

    async def _write_with_retry(self, batch: Sequence[SentRow | Sighting | Result]) -> None:
        """Write a batch; retry while the database is unreachable, isolate rows it refuses."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((OperationalError, InterfaceError, OSError)),
            wait=wait_exponential(multiplier=0.2, max=10),
            before_sleep=lambda state: self._write_failed(state.outcome),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._write(batch)
        except SQLAlchemyError:
            # The database answered but refused something in the batch (a constraint, a
            # value too long): write row by row so one bad row cannot block the rest.
            self.on_write_error()
            for item in batch:
                try:
                    await self._write([item])
                except SQLAlchemyError as exc:
                    self.on_write_error()
                    log.error("store_row_refused", item=type(item).__name__, error=str(exc)[:300])

    def _write_failed(self, outcome: Any) -> None:
        self.on_write_error()
        error = outcome.exception() if outcome is not None else None
        log.warning("store_write_failed", error=type(error).__name__, backlog=self.backlog)

    async def _write(self, batch: Sequence[SentRow | Sighting | Result]) -> None:
        sent = [asdict(i) for i in batch if isinstance(i, SentRow)]
        seen = [_sighting_row(i) for i in batch if isinstance(i, Sighting)]
        done = [_result_row(i) for i in batch if isinstance(i, Result)]
        async with self.engine.begin() as conn:
            if seen:
                await conn.execute(insert(sightings), seen)
            if sent:
                statement = (
                    update(probes)
                    .where(probes.c.probe_id == bindparam("b_probe_id"))
                    .values(
                        sent_at=bindparam("b_sent_at"),
                        send_reason=bindparam("b_send_reason"),
                        detail=bindparam("b_detail"),
                    )
                )
                await conn.execute(statement, [{f"b_{k}": v for k, v in r.items()} for r in sent])
            if done:
                # Idempotent: a result replayed after a restart changes nothing, rollups
                # included, since only rows really inserted are rolled up.
                statement = (
                    self._insert(results)
                    .on_conflict_do_nothing()
                    .returning(results.c.probe_id, results.c.destination)
                )
                inserted = {
                    (r.probe_id, r.destination) for r in await conn.execute(statement, done)
                }
                fresh = []
                for r in batch:
                    # Only the copy the database inserted: a replay in the same batch is not.
                    if isinstance(r, Result) and (r.probe_id, r.destination) in inserted:
                        inserted.discard((r.probe_id, r.destination))
                        fresh.append(
                            rollup.Row(
                                r.flow, r.destination, r.slot, str(r.outcome), r.latency,
                                r.maintenance,
                            )
                        )  # fmt: skip
                await rollup.apply(conn, fresh)

    async def unresolved(self, *, since: datetime) -> list[StoredProbe]:
        """Probes claimed since ``since`` that may still lack a result for some destination."""
        query = (
            select(probes, results.c.destination)
            .outerjoin(results, and_(results.c.probe_id == probes.c.probe_id))
            .where(probes.c.claimed_at >= since)
            .order_by(probes.c.claimed_at)
        )
        found: dict[str, tuple[Any, set[str]]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                entry = found.setdefault(row.probe_id, (row, set()))
                if row.destination is not None:
                    entry[1].add(row.destination)
        return [
            StoredProbe(
                probe_id=row.probe_id,
                flow=row.flow,
                slot_at=row.slot_at,
                claimed_at=row.claimed_at,
                deadline_at=row.deadline_at,
                sent_at=row.sent_at,
                send_reason=row.send_reason,
                node=row.node,
                resolved=frozenset(done),
            )
            for row, done in found.values()
        ]


def _sighting_row(s: Sighting) -> dict[str, Any]:
    return {
        "probe_id": s.probe_id,
        "destination": s.destination,
        "seen_at": s.seen_at,
        "arrived_at": s.arrived_at,
        "count": s.count,
    }


def _result_row(r: Result) -> dict[str, Any]:
    row = asdict(r)
    row["slot_at"] = row.pop("slot")
    row["latency_s"] = row.pop("latency")
    row["outcome"] = str(r.outcome)
    return row


async def open_store(
    url: str, *, flush_interval: float = 0.2, batch_size: int = 500, migrate_sqlite: bool = True
) -> Store:
    """Connect, bring SQLite up to date (PostgreSQL must be upgraded with `probe db upgrade`)."""
    engine = create_engine(url)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        await engine.dispose()
        raise StoreError(f"unsupported store {engine.dialect.name!r}: use sqlite or postgresql")
    try:
        if engine.dialect.name == "sqlite" and migrate_sqlite:
            await migrate.upgrade(engine)
        current, head = await migrate.revision_state(engine)
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        raise StoreError(f"cannot open store {safe_url(url)}: {exc}") from exc
    if current != head:
        await engine.dispose()
        raise StoreError(
            f"store {safe_url(url)} is at schema {current or 'none'}, this version needs "
            f"{head}: run `probe db upgrade -c CONFIG`"
        )
    return Store(engine, flush_interval=flush_interval, batch_size=batch_size)


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the writer."""
    engine = create_async_engine(url, pool_pre_ping=True)
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
