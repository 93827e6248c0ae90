"""The store: slot claims written at once, everything else written in batches.

Claims are group-committed: every claim that arrives while a claim transaction runs goes
into the next one, so a thousand probes per second cost a few transactions, not a thousand,
and no claim waits for a timer. Sightings, send receipts and results are appended to the
spool (`probe.store.spool`) and queued, and written together every ``flush_interval`` or
``batch_size`` items. A failed batch stays queued and is retried with backoff;
`probe_store_write_errors_total` counts the failures.

While the database is unreachable, probing goes on: a claim that cannot reach it is
taken locally (spooled, and inserted when the database is back), and the queue grows in
memory up to `MEMORY_LIMIT` items, past which items stay in the spool file only and are
read back from it. Every batch commits the spool position it reached in the same
transaction, so neither a replay after a crash nor a retry writes anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import and_, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from probe.errors import StoreError
from probe.model import Result, Sighting, utcnow
from probe.store import bulk, migrate, rollup
from probe.store.spool import Item, ProbeRow, SentRow, Spool, Spooled, UnknownVersion
from probe.store.spool import read as read_spool
from probe.store.tables import probes, results, sightings, spool_marks

log = structlog.get_logger("probe.store")

# Items kept in memory while the database is away; the rest wait in the spool file only.
MEMORY_LIMIT = 100_000
# A spool file is replaced by a new one past this size, once all of it is committed.
ROTATE_BYTES = 32 * 1024 * 1024
# The database counts as unreachable for these, and for a timeout.
UNREACHABLE = (OperationalError, InterfaceError, OSError, TimeoutError)
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z._-]")
# Starts a named long-lived task: `asyncio.create_task`, or a supervisor's `spawn`.
Spawn = Callable[[str, Callable[[], Coroutine[Any, Any, None]]], "asyncio.Task[None]"]


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

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        flush_interval: float,
        batch_size: int,
        spool: Spool | None = None,
        claim_timeout: float = 3.0,
        local_claims: bool = True,
        write_timeout: float = 30.0,
        node: str | None = None,
    ) -> None:
        self.engine = engine
        self.node = node
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.spool = spool
        self.claim_timeout = claim_timeout
        # False (several daemons share the store): a slot is never claimed while the
        # database is away, so no slot is probed twice; it is skipped, and counted.
        self.local_claims = local_claims
        self.write_timeout = write_timeout
        self.on_write_error: Callable[[], None] = lambda: None
        self.on_spool_error: Callable[[], None] = lambda: None
        self.on_drop: Callable[[str], None] = lambda reason: None
        self.spool_errors = 0  # appends the spool's disk refused; those items stayed in memory
        self.dropped = 0  # items neither the spool nor memory could keep (counted, logged)
        self._spool_failing = False
        self._writing = 0  # items at the head of the queue in the write under way
        self.offline = False  # the last attempt to reach the database failed
        self.schema_unchecked = False  # opened offline: check the schema before writing
        self.offline_claims = 0  # slots claimed locally while the database was away
        self._claims: list[tuple[ProbeRow, asyncio.Future[bool]]] = []
        self._claim_wake = asyncio.Event()
        self._queue: list[Spooled] = []
        self._queue_wake = asyncio.Event()
        self._overflow: tuple[str, int] | None = None  # (spool file, byte) not yet in memory
        self._overflowed = 0  # items in the spool file only
        self._orphans: list[Path] = []
        self._conflicts: set[str] = set()  # local claims another daemon had taken first
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        dialect = engine.dialect.name
        self._insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # No timeout on SQLite writes: a local file cannot hang like a network database
        # (its busy_timeout bounds lock waits), and a statement cancelled mid-execution
        # leaves its connection holding the write lock until the garbage collector finds
        # the cursor, which blocked every later write.
        self._write_limit = write_timeout if dialect == "postgresql" else None

    @property
    def backlog(self) -> int:
        """Items waiting to be written."""
        return len(self._queue) + len(self._claims) + self._overflowed

    def start(self, spawn: Spawn | None = None) -> None:
        """Open the spool and start the claim and write loops, through ``spawn`` (a
        `probe.engine.supervise.Supervisor`'s, which restarts a loop that fails) if given."""
        if self.spool is not None and self.spool.path is None:
            self._orphans = self.spool.open()
            for _ in range(self.spool.torn):
                self._count_skipped("spool_torn")
        start = spawn or (lambda name, run: asyncio.create_task(run(), name=name))
        self._tasks = [
            start("store-claims", self._claim_loop),
            start("store-writes", self._write_loop),
        ]

    async def recover(self) -> int:
        """Replay the spool files of processes that died, from their committed mark."""
        replayed = 0
        assert self.spool is not None or not self._orphans
        for path in self._orphans:
            async with self.engine.connect() as conn:
                query = select(spool_marks.c.position).where(spool_marks.c.spool == path.name)
                start = (await conn.execute(query)).scalar_one_or_none() or 0
            count = 0
            chunk: list[Spooled] = []
            try:
                for spooled in read_spool(path, start, skipped=self._count_skipped):
                    chunk.append(spooled)
                    if len(chunk) >= self.batch_size:
                        await self._write_with_retry(chunk)
                        count, chunk = count + len(chunk), []
            except UnknownVersion as exc:
                # Written by a newer daemon: what came before is replayed, the file is left
                # for that daemon, and this one says so and goes on.
                if chunk:
                    await self._write_with_retry(chunk)
                log.error("spool_not_replayed", file=path.name, error=str(exc))
                continue
            if chunk:
                await self._write_with_retry(chunk)
                count += len(chunk)
            assert self.spool is not None
            self.spool.forget(path.name)
            log.info("spool_replayed", file=path.name, records=count, from_byte=start)
            replayed += count
        self._orphans = []
        return replayed

    def _count_skipped(self, reason: str) -> None:
        self.dropped += 1
        self.on_drop(reason)

    async def claim(self, row: ProbeRow) -> bool:
        """Store the probe if its (flow, slot) is free. False: another daemon has the slot.

        With a spool, a claim that cannot reach the database is taken locally (True).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((row, future))
        self._claim_wake.set()
        return await future

    def record_sent(self, row: SentRow) -> None:
        self._enqueue(row)

    def add_sighting(self, sighting: Sighting) -> None:
        if sighting.node is None:
            sighting = replace(sighting, node=self.node)
        self._enqueue(sighting)

    def add_result(self, result: Result) -> None:
        self._enqueue(result)

    def _enqueue(self, item: Item) -> None:
        if self.spool is None:
            self._queue.append(Spooled(item))
        elif self._overflow is not None:
            # Memory is full and the rest waits in the spool file, in order.
            if self._append(item) is None:
                self._drop(item, "spool_failed")
            else:
                self._overflowed += 1
        else:
            start = self.spool.size
            spooled = self._append(item)
            if spooled is None:  # the disk failed: memory only, within its bound
                if len(self._queue) >= MEMORY_LIMIT:
                    self._drop_oldest()
                self._queue.append(Spooled(item))
            elif len(self._queue) >= MEMORY_LIMIT:
                self._overflow = (spooled.file or "", start)
                self._overflowed += 1
                log.warning("store_backlog_on_disk", in_memory=len(self._queue))
            else:
                self._queue.append(spooled)
        if len(self._queue) >= self.batch_size:
            self._queue_wake.set()

    def _append(self, item: Item) -> Spooled | None:
        """The item spooled, or None when the disk refused it (logged once per episode)."""
        assert self.spool is not None
        try:
            spooled = self.spool.append(item)
        except OSError as exc:
            self._spool_failed(exc)
            return None
        if self._spool_failing:
            self._spool_failing = False
            log.info("spool_write_recovered", errors=self.spool_errors)
        return spooled

    def _drop_oldest(self) -> None:
        """Make room in memory: drop the oldest item that is not a claim (a probe row is
        what every later item of its probe updates) and not in the batch being written."""
        for index in range(self._writing, len(self._queue)):
            item = self._queue[index].item
            if not isinstance(item, ProbeRow):
                del self._queue[index]
                self._drop(item, "memory_full")
                return

    def _drop(self, item: Item, reason: str) -> None:
        self.dropped += 1
        self.on_drop(reason)
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error("store_items_dropped", reason=reason, dropped=self.dropped,
                      item=type(item).__name__)  # fmt: skip

    def _refill(self) -> None:
        """Read items that overflowed to the spool file back into memory."""
        if self._overflow is None or self._queue or self.spool is None:
            return
        name, start = self._overflow
        if self.spool.path is None or name != self.spool.name:
            self._overflow = None  # cannot happen: no rotation while overflowing
            return
        for spooled in read_spool(self.spool.path, start, limit=MEMORY_LIMIT // 2):
            self._queue.append(spooled)
            start = spooled.end
        self._overflowed = max(0, self._overflowed - len(self._queue))
        caught_up = start >= self.spool.size
        self._overflow = None if caught_up else (name, start)
        if caught_up:
            self._overflowed = 0

    async def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc

    async def close(self, *, flush_timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``flush_timeout``), then close the engine.

        What could not be written stays in the spool file for the next start.
        """
        self._closing = True
        self._queue_wake.set()
        self._claim_wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = self.backlog
        if left:
            where = "kept in the spool" if self.spool else "lost"
            log.error("store_unflushed", items=left, note=where)
        for _, future in self._claims:
            if not future.done():
                future.set_exception(StoreError("store closed"))
        if self.spool is not None:
            self.spool.close(committed=not left)
        await self.engine.dispose()

    async def _claim_loop(self) -> None:
        while not (self._closing and not self._claims):
            await self._claim_wake.wait()
            self._claim_wake.clear()
            batch, self._claims = self._claims, []
            if not batch:
                continue
            try:
                await self._claim_batch(batch)
            except Exception:  # a bug must cost these claims, never every claim after them
                log.exception("store_claims_failed", claims=len(batch))
                self.on_write_error()
            finally:
                # Whatever went wrong, no probe waits forever for its claim: an unanswered
                # claim held its slot's task, and in time the flow's every max_in_flight.
                error = StoreError("the claim failed inside the store")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)

    async def _claim_batch(self, batch: list[tuple[ProbeRow, asyncio.Future[bool]]]) -> None:
        local = self.spool is not None and self.local_claims
        if self.offline and local:
            self._claim_locally(batch)
            return
        try:
            async with asyncio.timeout(self.claim_timeout):
                won = await self._insert_claims([row for row, _ in batch])
        except (*UNREACHABLE, SQLAlchemyError) as exc:
            self.on_write_error()
            if isinstance(exc, UNREACHABLE):
                self._went_offline(exc)
            if local and isinstance(exc, UNREACHABLE):
                self._claim_locally(batch)
                return
            error = StoreError(f"cannot claim slot: {type(exc).__name__}: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for row, future in batch:
            if not future.done():
                future.set_result(row.probe_id in won)

    def _claim_locally(self, batch: list[tuple[ProbeRow, asyncio.Future[bool]]]) -> None:
        """The database is away: take the slots here; the claims are inserted later."""
        for row, future in batch:
            if future.done():
                continue
            self._enqueue(row)
            self.offline_claims += 1
            future.set_result(True)

    def _went_offline(self, exc: BaseException) -> None:
        if not self.offline:
            self.offline = True
            log.error("store_offline", error=f"{type(exc).__name__}: {str(exc)[:200]}")

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
            if len(self._queue) < self.batch_size:  # a full batch goes at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._queue_wake.wait()
            self._queue_wake.clear()
            if self.spool is not None:
                await self._sync()
            self._refill()
            if self._queue:
                batch = self._queue[: self.batch_size]
                self._writing = len(batch)  # the head of the queue no drop may touch
                try:
                    await self._write_with_retry(batch)
                finally:
                    self._writing = 0
                del self._queue[: len(batch)]
                self._maybe_rotate()
            elif self._closing:
                return

    async def _sync(self) -> None:
        """fsync the spool; a disk that fails it (EIO, ENOSPC) is counted, not fatal."""
        assert self.spool is not None
        try:
            await asyncio.to_thread(self.spool.sync)
        except OSError as exc:
            self._spool_failed(exc)

    def _spool_failed(self, exc: OSError) -> None:
        """Count a refused append or fsync; log the first of an episode."""
        self.spool_errors += 1
        self.on_spool_error()
        if not self._spool_failing:
            self._spool_failing = True
            log.error(
                "spool_write_failed",
                error=f"{type(exc).__name__}: {exc}",
                note="items are kept in memory until the disk takes them again",
            )

    def _maybe_rotate(self) -> None:
        spool = self.spool
        if spool is None or spool.size < ROTATE_BYTES or self._queue or self._overflow:
            return
        spool.rotate()

    async def _write_with_retry(self, batch: Sequence[Spooled]) -> None:
        """Write a batch; retry while the database is unreachable, isolate rows it refuses."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(UNREACHABLE),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda state: self._write_failed(state.outcome),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with asyncio.timeout(self._write_limit):
                        if self.schema_unchecked:
                            await self._check_schema()
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
                    log.error(
                        "store_row_refused", item=type(item.item).__name__, error=str(exc)[:300]
                    )
        if self.offline:
            self.offline = False
            log.info("store_online", backlog=self.backlog, claimed_locally=self.offline_claims)

    def _write_failed(self, outcome: Any) -> None:
        self.on_write_error()
        error = outcome.exception() if outcome is not None else None
        if error is not None:
            self._went_offline(error)
        log.warning("store_write_failed", error=type(error).__name__, backlog=self.backlog)

    async def _check_schema(self) -> None:
        """The schema of a store opened offline, once it answers: a wrong one is fatal."""
        current, head = await migrate.revision_state(self.engine)
        if current != head:
            raise StoreError(
                f"the store is at schema {current or 'none'}, this version needs {head}: "
                "run `probe db upgrade -c CONFIG`"
            )
        self.schema_unchecked = False

    async def wait_online(self, *, every: float = 1.0, most: float = 10.0) -> None:
        """Return once the database answers (with backoff between the tries)."""
        delay = every
        while True:
            try:
                await self.ping()
                return
            except StoreError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, most)

    async def _write(self, batch: Sequence[Spooled]) -> None:
        async with self.engine.begin() as conn:
            claims = [s.item for s in batch if isinstance(s.item, ProbeRow)]
            if claims:
                await self._insert_local_claims(conn, claims)
            items = [s.item for s in batch if s.item.probe_id not in self._conflicts]
            sent = [
                {"probe_id": i.probe_id, "sent_at": i.sent_at, "send_reason": i.send_reason,
                 "detail": i.detail}
                for i in items
                if isinstance(i, SentRow)
            ]  # fmt: skip
            seen = [_sighting_row(i) for i in items if isinstance(i, Sighting)]
            done = [_result_row(i) for i in items if isinstance(i, Result)]
            await bulk.insert_rows(conn, sightings, seen)
            await bulk.update_rows(conn, probes, sent, key=("probe_id",))
            if done:
                # Idempotent: a result replayed after a restart changes nothing, rollups
                # included, since only rows really inserted are rolled up.
                returned = await bulk.insert_rows(
                    conn, results, done, returning=("probe_id", "destination"),
                    skip_conflicts=True,
                )  # fmt: skip
                inserted = {(r.probe_id, r.destination) for r in returned}
                fresh = []
                for r in items:
                    # Only the copy the database inserted: a replay in the same batch is not.
                    if isinstance(r, Result) and (r.probe_id, r.destination) in inserted:
                        inserted.discard((r.probe_id, r.destination))
                        if r.adhoc:  # `probe once --store`: on record, in no statistic
                            continue
                        fresh.append(
                            rollup.Row(
                                r.flow, r.destination, r.slot, str(r.outcome), r.latency,
                                r.maintenance, r.span, r.reason,
                            )
                        )  # fmt: skip
                await rollup.apply(conn, fresh)
            await self._mark(conn, batch)

    async def _insert_local_claims(self, conn: Any, claims: list[ProbeRow]) -> None:
        """Insert slots claimed while the database was away; note the ones lost to a peer."""
        statement = self._insert(probes).on_conflict_do_nothing().returning(probes.c.probe_id)
        won = {r.probe_id for r in await conn.execute(statement, [asdict(c) for c in claims])}
        others = [c for c in claims if c.probe_id not in won]
        if not others:
            return
        query = select(probes.c.probe_id).where(probes.c.probe_id.in_([c.probe_id for c in others]))
        already = {r.probe_id for r in await conn.execute(query)}  # a replay: ours already
        for claim in others:
            if claim.probe_id not in already:
                # Another daemon claimed this slot while we could not see the database: the
                # slot was probed twice. Its probe stands; ours is dropped, and said so.
                self._conflicts.add(claim.probe_id)
                log.warning(
                    "local_claim_conflict",
                    flow=claim.flow,
                    slot=claim.slot_at.isoformat(),
                    probe_id=claim.probe_id,
                )

    async def _mark(self, conn: Any, batch: Sequence[Spooled]) -> None:
        """Record how far into each spool file this batch reaches, in its transaction."""
        ends: dict[str, int] = {}
        for spooled in batch:
            if spooled.file is not None:
                ends[spooled.file] = max(ends.get(spooled.file, 0), spooled.end)
        if not ends:
            return
        now = utcnow()
        for name, end in ends.items():
            statement = self._insert(spool_marks).values(spool=name, position=end, updated_at=now)
            statement = statement.on_conflict_do_update(
                index_elements=["spool"],
                set_={"position": statement.excluded.position, "updated_at": now},
            )
            await conn.execute(statement)

    async def sightings_for(
        self, probe_ids: Sequence[str], *, other_nodes: bool = False
    ) -> dict[tuple[str, str], tuple[datetime, int]]:
        """The first stored sighting and the copies, per (probe id, destination).

        ``other_nodes``: only what other daemons saw (this one knows its own).
        """
        found: dict[tuple[str, str], tuple[datetime, int]] = {}
        ids = list(probe_ids)
        for start in range(0, len(ids), 500):
            found.update(await self._sightings_for(ids[start : start + 500], other_nodes))
        return found

    async def _sightings_for(
        self, probe_ids: list[str], other_nodes: bool
    ) -> dict[tuple[str, str], tuple[datetime, int]]:
        query = (
            select(
                sightings.c.probe_id,
                sightings.c.destination,
                func.min(sightings.c.seen_at).label("first"),
                func.sum(sightings.c.count).label("copies"),
            )
            .where(sightings.c.probe_id.in_(probe_ids))
            .group_by(sightings.c.probe_id, sightings.c.destination)
        )
        if other_nodes:
            query = query.where(sightings.c.node.is_distinct_from(self.node))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return {(r.probe_id, r.destination): (_aware(r.first), int(r.copies)) for r in rows}

    async def unresolved(
        self,
        *,
        since: datetime,
        deadline_before: datetime | None = None,
        other_nodes: bool = False,
    ) -> list[StoredProbe]:
        """Probes claimed since ``since`` that may still lack a result for some destination.

        ``deadline_before`` and ``other_nodes`` narrow it to other daemons' overdue probes,
        the periodic look for a dead peer's: on one node that reads nothing at all.
        """
        query = (
            select(probes, results.c.destination)
            .outerjoin(results, and_(results.c.probe_id == probes.c.probe_id))
            .where(probes.c.claimed_at >= since)
            .order_by(probes.c.claimed_at)
        )
        if deadline_before is not None:
            query = query.where(probes.c.deadline_at < deadline_before)
        if other_nodes:
            query = query.where(probes.c.node.is_distinct_from(self.node))
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


def _aware(value: Any) -> datetime:
    """A datetime from an aggregate: SQLite returns min(seen_at) as naive UTC text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sighting_row(s: Sighting) -> dict[str, Any]:
    return {
        "probe_id": s.probe_id,
        "destination": s.destination,
        "seen_at": s.seen_at,
        "arrived_at": s.arrived_at,
        "count": s.count,
        "node": s.node,
    }


def _result_row(r: Result) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every field, and was a tenth of a batch's CPU.
    return {
        "probe_id": r.probe_id, "flow": r.flow, "destination": r.destination,
        "outcome": str(r.outcome), "latency_s": r.latency, "latency_clock": r.latency_clock,
        "duplicates": r.duplicates, "reason": r.reason, "slot_at": r.slot,
        "resolved_at": r.resolved_at, "mismatch": r.mismatch, "maintenance": r.maintenance,
        "span_s": r.span, "adhoc": r.adhoc,
    }  # fmt: skip


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
    engine = create_engine(url)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        await engine.dispose()
        raise StoreError(f"unsupported store {engine.dialect.name!r}: use sqlite or postgresql")
    try:
        if engine.dialect.name == "sqlite" and migrate_sqlite:
            await migrate.upgrade(engine)
        current, head = await migrate.revision_state(engine)
    except (SQLAlchemyError, OSError) as exc:
        pg = engine.dialect.name == "postgresql"
        restart = spool is not None and pg and await asyncio.to_thread(os.path.isdir, spool)
        if offline_start and local_claims and restart and isinstance(exc, UNREACHABLE):
            assert spool is not None
            log.error("store_offline_at_start", store=safe_url(url), error=type(exc).__name__)
            store = Store(
                engine,
                flush_interval=flush_interval,
                batch_size=batch_size,
                spool=Spool(spool, node=node),
                node=node or None,
                local_claims=local_claims,
            )
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
    return Store(
        engine,
        flush_interval=flush_interval,
        batch_size=batch_size,
        spool=Spool(spool, node=node) if spool is not None else None,
        node=node or None,
        local_claims=local_claims,
    )


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
