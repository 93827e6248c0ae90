"""The store: slot claims written at once, everything else written in batches.

Claims are group-committed: every claim that arrives while a claim transaction runs goes
into the next one, so a thousand probes per second cost a few transactions, not a thousand,
and no claim waits for a timer. Sightings, send receipts and results are appended to the
spool (`probe.store.spool`) and queued (`probe.store.backlog`), and written together
(`probe.store.batch`) every ``flush_interval`` or ``batch_size`` items. A failed batch stays
queued and is retried with backoff; `probe_store_write_errors_total` counts the failures.

While the database is unreachable, probing goes on: a claim that cannot reach it is
taken locally (spooled, and inserted when the database is back), and the queue grows in
memory up to `probe.store.backlog.MEMORY_LIMIT` items, past which items stay in the spool
file only and are read back from it. Every batch commits the spool position it reached in
the same transaction, so neither a replay after a crash (`probe.store.replay`) nor a retry
writes anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from probe.errors import StoreError
from probe.model import Result, Sighting
from probe.store import batch as batches
from probe.store import migrate, queries
from probe.store.backlog import Backlog
from probe.store.connection import UNREACHABLE
from probe.store.queries import StoredProbe
from probe.store.replay import replay
from probe.store.rows import ProbeRow, SentRow
from probe.store.spool import Spool, Spooled

log = structlog.get_logger("probe.store")

# Starts a named long-lived task: `asyncio.create_task`, or a supervisor's `spawn`.
Spawn = Callable[[str, Callable[[], Coroutine[Any, Any, None]]], "asyncio.Task[None]"]
Claims = list[tuple[ProbeRow, "asyncio.Future[bool]"]]


class Store:
    """Async access to the probe store. Create with `probe.store.open_store`."""

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
        self.offline = False  # the last attempt to reach the database failed
        self.schema_unchecked = False  # opened offline: check the schema before writing
        self.offline_claims = 0  # slots claimed locally while the database was away
        self._backlog = Backlog(spool, batch_size=batch_size)
        self._claims: Claims = []
        self._claim_wake = asyncio.Event()
        self._orphans: list[Path] = []
        self._conflicts: set[str] = set()  # local claims another daemon had taken first
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        # No timeout on SQLite writes: a local file cannot hang like a network database
        # (its busy_timeout bounds lock waits), and a statement cancelled mid-execution
        # leaves its connection holding the write lock until the garbage collector finds
        # the cursor, which blocked every later write.
        self._write_limit = write_timeout if engine.dialect.name == "postgresql" else None

    @property
    def backlog(self) -> int:
        """Items waiting to be written."""
        return self._backlog.size + len(self._claims)

    @property
    def on_drop(self) -> Callable[[str], None]:
        """Told the reason of each item dropped or spool record skipped (counted in `dropped`)."""
        return self._backlog.on_drop

    @on_drop.setter
    def on_drop(self, call: Callable[[str], None]) -> None:
        self._backlog.on_drop = call

    @property
    def on_spool_error(self) -> Callable[[], None]:
        """Called for each append or fsync the spool's disk refused."""
        return self._backlog.on_spool_error

    @on_spool_error.setter
    def on_spool_error(self, call: Callable[[], None]) -> None:
        self._backlog.on_spool_error = call

    @property
    def dropped(self) -> int:
        """Items neither the spool nor memory could keep, and records that could not be read."""
        return self._backlog.dropped

    @property
    def spool_errors(self) -> int:
        """Appends and fsyncs the spool's disk refused; those items stayed in memory."""
        return self._backlog.spool_errors

    def start(self, spawn: Spawn | None = None) -> None:
        """Open the spool and start the claim and write loops, through ``spawn`` (a
        `probe.engine.supervise.Supervisor`'s, which restarts a loop that fails) if given."""
        if self.spool is not None and self.spool.path is None:
            self._orphans = self.spool.open()
            for _ in range(self.spool.torn):
                self._backlog.count_skipped("spool_torn")
        start = spawn or (lambda name, run: asyncio.create_task(run(), name=name))
        self._tasks = [
            start("store-claims", self._claim_loop),
            start("store-writes", self._write_loop),
        ]

    async def recover(self) -> int:
        """Replay the spool files of processes that died, from their committed mark."""
        if not self._orphans:
            return 0
        assert self.spool is not None
        replayed = await replay(
            self._orphans,
            spool=self.spool,
            engine=self.engine,
            write=self._write_with_retry,
            batch_size=self.batch_size,
            skipped=self._backlog.count_skipped,
        )
        self._orphans = []
        return replayed

    async def claim(self, row: ProbeRow) -> bool:
        """Store the probe if its (flow, slot) is free. False: another daemon has the slot.

        With a spool, a claim that cannot reach the database is taken locally (True).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((row, future))
        self._claim_wake.set()
        return await future

    def record_sent(self, row: SentRow) -> None:
        self._backlog.put(row)

    def add_sighting(self, sighting: Sighting) -> None:
        if sighting.node is None:
            sighting = replace(sighting, node=self.node)
        self._backlog.put(sighting)

    def add_result(self, result: Result) -> None:
        self._backlog.put(result)

    async def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc

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

    async def close(self, *, flush_timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``flush_timeout``), then close the engine.

        What could not be written stays in the spool file for the next start.
        """
        self._closing = True
        self._backlog.wake.set()
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

    async def sightings_for(
        self, probe_ids: Sequence[str], *, other_nodes: bool = False
    ) -> dict[tuple[str, str], tuple[datetime, int]]:
        """The first stored sighting and the copies, per (probe id, destination).

        ``other_nodes``: only what other daemons saw (this one knows its own).
        """
        async with self.engine.connect() as conn:
            return await queries.first_sightings(
                conn, probe_ids, not_node=self.node, other_nodes=other_nodes
            )

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
        async with self.engine.connect() as conn:
            return await queries.unresolved_probes(
                conn, since=since, deadline_before=deadline_before, not_node=self.node,
                other_nodes=other_nodes,
            )  # fmt: skip

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

    async def _claim_batch(self, batch: Claims) -> None:
        local = self.spool is not None and self.local_claims
        if self.offline and local:
            self._claim_locally(batch)
            return
        try:
            async with asyncio.timeout(self.claim_timeout), self.engine.begin() as conn:
                won = await batches.insert_claims(conn, [row for row, _ in batch])
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

    def _claim_locally(self, batch: Claims) -> None:
        """The database is away: take the slots here; the claims are inserted later."""
        for row, future in batch:
            if future.done():
                continue
            self._backlog.put(row)
            self.offline_claims += 1
            future.set_result(True)

    def _went_offline(self, exc: BaseException) -> None:
        if not self.offline:
            self.offline = True
            log.error("store_offline", error=f"{type(exc).__name__}: {str(exc)[:200]}")

    async def _write_loop(self) -> None:
        backlog = self._backlog
        while True:
            if len(backlog.queue) < self.batch_size:  # a full batch goes at once
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await backlog.wake.wait()
            backlog.wake.clear()
            await backlog.sync()
            backlog.refill()
            if backlog.queue:
                batch = backlog.head()  # the head of the queue, which no drop may touch
                try:
                    await self._write_with_retry(batch)
                finally:
                    backlog.release()
                backlog.written(batch)
            elif self._closing:
                return

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

    async def _write(self, batch: Sequence[Spooled]) -> None:
        async with self.engine.begin() as conn:
            await batches.write_batch(conn, batch, conflicts=self._conflicts)
