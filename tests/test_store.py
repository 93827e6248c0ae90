"""The store on a real SQLite file and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from probe.errors import StoreError
from probe.model import Outcome, Result, Sighting, new_probe_id
from probe.store import ProbeRow, SentRow, Store, open_store
from probe.store.tables import probes, results, sightings

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _row(flow: str, slot: datetime) -> ProbeRow:
    return ProbeRow(
        probe_id=new_probe_id(),
        flow=flow,
        slot_at=slot,
        claimed_at=NOW,
        deadline_at=NOW + timedelta(minutes=5),
    )


async def _count(store: Store, table: object) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_one_claim_per_flow_and_slot_across_two_stores(store_url: str) -> None:
    """Two daemons on one database: every (flow, slot) is won exactly once."""
    a = await open_store(store_url)
    b = await open_store(store_url)
    a.start()
    b.start()
    try:
        slots = [NOW + timedelta(seconds=i) for i in range(20)]
        claims = [s.claim(_row(f"flow-{i % 2}", slot)) for slot in slots for i in range(2)
                  for s in (a, b)]  # fmt: skip
        won = await asyncio.gather(*claims)
        assert sum(won) == 40  # 20 slots x 2 flows
        assert await _count(a, probes) == 40
    finally:
        await a.close()
        await b.close()


async def test_batched_writes_land_and_replays_are_idempotent(store_url: str) -> None:
    store = await open_store(store_url, flush_interval=0.05, batch_size=7)
    store.start()
    try:
        rows = [_row("gs", NOW + timedelta(seconds=i)) for i in range(30)]
        assert all(await asyncio.gather(*(store.claim(r) for r in rows)))
        for row in rows:
            store.record_sent(SentRow(row.probe_id, NOW, None, "HTTP 202"))
            store.add_sighting(Sighting(row.probe_id, "labka", NOW, 0.0, 1, None))
            result = Result(
                row.probe_id, "gs", "labka", Outcome.DELIVERED, 0.25, "monotonic", 0, None,
                row.slot_at, NOW,
            )  # fmt: skip
            store.add_result(result)
            store.add_result(result)  # a replay must not duplicate or fail the batch
    finally:
        await store.close()
    store = await open_store(store_url)
    try:
        assert await _count(store, results) == 30
        assert await _count(store, sightings) == 30
        async with store.engine.connect() as conn:
            unsent = await conn.execute(select(probes).where(probes.c.sent_at.is_(None)))
            assert unsent.fetchall() == []
            latencies = (await conn.execute(select(results.c.latency_s))).scalars().all()
            assert set(latencies) == {0.25}
        assert await store.unresolved(since=NOW - timedelta(days=1)) != []
        resolved = await store.unresolved(since=NOW - timedelta(days=1))
        assert all(p.resolved == {"labka"} for p in resolved)
        assert all(p.slot_at.tzinfo is not None for p in resolved)
    finally:
        await store.close()


async def test_unmigrated_postgres_is_refused_with_a_hint(postgres_url: str) -> None:
    with pytest.raises(StoreError, match=r"at schema none.*probe db upgrade"):
        await open_store(postgres_url)


async def test_unreachable_database_is_a_store_error() -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nothing"
    with pytest.raises(StoreError) as caught:
        await open_store(url)
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


async def test_sqlite_is_migrated_on_open(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    try:
        assert await _count(store, probes) == 0
        await store.ping()
    finally:
        await store.close()


async def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    store.start()
    try:
        row = ProbeRow(new_probe_id(), "gs", datetime(2026, 1, 1), NOW, NOW)  # noqa: DTZ001
        with pytest.raises(StoreError):
            await store.claim(row)
    finally:
        await store.close()


async def test_a_refused_row_does_not_block_the_batch(store_url: str) -> None:
    """A row the database refuses is logged and counted; the rest of its batch lands."""
    errors: list[int] = []
    store = await open_store(store_url, flush_interval=0.05)
    store.on_write_error = lambda: errors.append(1)
    store.start()
    rows = [_row("gs", NOW + timedelta(seconds=i)) for i in range(3)]
    try:
        assert all(await asyncio.gather(*(store.claim(r) for r in rows)))
        for i, row in enumerate(rows):
            flow = None if i == 1 else "gs"  # NOT NULL: both backends refuse this row
            result = Result(
                row.probe_id, flow, "labka", Outcome.LOST, None, None, 0, None,  # type: ignore[arg-type]
                row.slot_at, NOW,
            )  # fmt: skip
            store.add_result(result)
    finally:
        await store.close()
    store = await open_store(store_url)
    try:
        assert await _count(store, results) == 2
    finally:
        await store.close()
    assert len(errors) == 2  # the batch, then the one row
