"""The store on a real SQLite file and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from probe.errors import StoreError
from probe.model import Outcome, Result, Sighting, new_probe_id
from probe.store import ProbeRow, SentRow, Store, bulk, create_engine, open_store, rollup
from probe.store.migrate import upgrade
from probe.store.tables import incidents, probes, results, rollups, sightings

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


# --- many-row statements: one unnest() statement on PostgreSQL, executemany on SQLite ------

CET = timezone(timedelta(hours=1))


def _result_values(probe_id: str, destination: str, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "probe_id": probe_id, "destination": destination, "flow": "gs",
        "slot_at": NOW.astimezone(CET), "outcome": "delivered", "latency_s": 0.1 + 0.2,
        "latency_clock": None, "duplicates": 0, "reason": None,
        "resolved_at": NOW + timedelta(microseconds=7), "mismatch": None, "maintenance": False,
        "span_s": 30.0, "adhoc": False,
    }  # fmt: skip
    return values | changes


async def test_insert_rows_skips_conflicts_and_returns_only_the_inserted(store_url: str) -> None:
    """Duplicates inside the rows and against stored rows are skipped on both databases,
    RETURNING names exactly the rows inserted, and every value comes back as it went in."""
    engine = create_engine(store_url)
    first = [
        _result_values("p1", "a", latency_s=None, reason="timeout", outcome="lost"),
        _result_values("p1", "b", maintenance=True, mismatch="PID-5"),
        _result_values("p1", "a", outcome="late"),  # the same key again: skipped
    ]
    again = [_result_values("p1", "b"), _result_values("p2", "a", duplicates=3)]
    key = ("probe_id", "destination")
    try:
        async with engine.begin() as conn:
            inserted = await bulk.insert_rows(
                conn, results, first, returning=key, skip_conflicts=True
            )
            assert sorted(tuple(r) for r in inserted) == [("p1", "a"), ("p1", "b")]
            inserted = await bulk.insert_rows(
                conn, results, again, returning=key, skip_conflicts=True
            )
            assert [tuple(r) for r in inserted] == [("p2", "a")]
            stored = (await conn.execute(select(results).order_by(*results.primary_key))).all()
    finally:
        await engine.dispose()
    assert [dict(r._mapping) for r in stored] == [first[0], first[1], again[1]]
    assert all(r.slot_at.utcoffset() == timedelta(0) for r in stored)


async def test_insert_rows_refuses_what_a_row_insert_refuses(store_url: str) -> None:
    """A naive datetime is refused on both databases; PostgreSQL refuses an over-long
    string, never cutting it to the column's length (the arrays are text[])."""
    engine = create_engine(store_url)
    bad = [_result_values("p1", "a", resolved_at=datetime(2026, 1, 1))]  # noqa: DTZ001
    if "postgresql" in store_url:
        bad.append(_result_values("p" * 21, "a"))
    try:
        for row in bad:
            with pytest.raises(SQLAlchemyError):
                async with engine.begin() as conn:
                    await bulk.insert_rows(conn, results, [row], skip_conflicts=True)
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(results))).scalar() == 0
    finally:
        await engine.dispose()


async def test_update_rows_sets_each_row_by_its_key(store_url: str) -> None:
    engine = create_engine(store_url)
    rows = [_result_values(f"p{i}", "a", reason="timeout") for i in range(3)]
    try:
        async with engine.begin() as conn:
            await bulk.insert_rows(conn, results, rows)
            changes = [  # latency_s: a column of nulls only
                {"probe_id": "p0", "destination": "a", "reason": None, "duplicates": 2,
                 "latency_s": None},
                {"probe_id": "p2", "destination": "a", "reason": "late", "duplicates": 0,
                 "latency_s": None},
                {"probe_id": "p9", "destination": "a", "reason": "none", "duplicates": 9,
                 "latency_s": None},
            ]  # fmt: skip
            await bulk.update_rows(conn, results, changes, key=("probe_id", "destination"))
            columns = (results.c.probe_id, results.c.reason, results.c.duplicates)
            query = select(*columns, results.c.latency_s).order_by(results.c.probe_id)
            found = (await conn.execute(query)).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in found] == [
        ("p0", None, 2, None), ("p1", "timeout", 0, 0.1 + 0.2), ("p2", "late", 0, None),
    ]  # fmt: skip


async def _write_mixed(url: str) -> None:
    """Results over several batches and hours, with replays, bad runs and maintenance."""
    store = await open_store(url, flush_interval=0.01, batch_size=97)
    store.start()
    outcomes = [Outcome.DELIVERED] * 6 + [Outcome.LOST, Outcome.LATE, Outcome.SEND_ERROR]
    written: list[Result] = []
    try:
        for i in range(600):
            slot = NOW + timedelta(minutes=i // 6)
            outcome = outcomes[(i * 7 + i // 50) % len(outcomes)]
            latency = 0.05 * (1 + i % 13) if outcome in (Outcome.DELIVERED, Outcome.LATE) else None
            result = Result(
                f"m{i:05d}", f"flow-{i % 3}", "ab"[i % 2], outcome, latency,
                "monotonic" if latency else None, 0, None, slot, slot, maintenance=i % 37 == 0,
            )  # fmt: skip
            store.add_result(result)
            written.append(result)
            if i % 5 == 0:
                store.add_result(written[i // 2])  # a replay, in this batch or a later one
            if i % 100 == 0:
                await asyncio.sleep(0.02)  # pacing, not waiting: batches of several sizes go
    finally:
        await store.close()


async def _derived(url: str) -> tuple[list[tuple[object, ...]], ...]:
    engine = create_engine(url)
    columns = [c for c in incidents.c if c.name != "id"]
    try:
        async with engine.connect() as conn:
            found = []
            for query in (
                select(results).order_by(*results.primary_key),
                select(rollups).order_by(*rollups.primary_key),
                select(*columns).order_by(*columns),
            ):
                found.append([tuple(r) for r in await conn.execute(query)])
            return tuple(found)
    finally:
        await engine.dispose()


async def test_both_databases_store_identical_results_rollups_and_incidents(
    postgres_url: str, tmp_path: Path
) -> None:
    """The PostgreSQL statements (unnest) and the SQLite ones (executemany) write the same
    rows, and incremental rollups and incidents equal a rebuild from the raw results."""
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'same.db'}", postgres_url]
    for url in urls:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        await _write_mixed(url)
    sqlite_rows, postgres_rows = [await _derived(url) for url in urls]
    assert len(sqlite_rows[0]) == 600
    assert sqlite_rows[2] != []  # some incidents, so they are compared too
    assert sqlite_rows == postgres_rows
    for url in urls:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await rollup.rebuild(conn)
        await engine.dispose()
        assert await _derived(url) == sqlite_rows


@pytest.mark.parametrize(("stored_by", "taken_back"), [("node-a", True), ("node-b", False)])
async def test_an_unacknowledged_claim_is_taken_back_by_its_own_node_only(
    store_url: str, stored_by: str, taken_back: bool
) -> None:
    """A claim batch committed while its acknowledgement was lost: the daemon then claimed
    the slot locally and sent that probe. Its own unsent stored claim gives way to the local
    one; another node's claim stands, and the local one is a conflict."""
    from probe.store.batch import insert_claims, write_batch
    from probe.store.spool import Spooled

    engine = create_engine(store_url)
    await upgrade(engine)
    try:
        stored = replace(_row("gs", NOW), node=stored_by)
        async with engine.begin() as conn:
            assert await insert_claims(conn, [stored]) == {stored.probe_id}
        local = replace(_row("gs", NOW), node="node-a")
        conflicts: set[str] = set()
        batch = [Spooled(local), Spooled(SentRow(local.probe_id, NOW, None, "HTTP 202"))]
        async with engine.begin() as conn:
            await write_batch(conn, batch, conflicts=conflicts)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(probes.c.probe_id, probes.c.sent_at))).all()
    finally:
        await engine.dispose()
    if taken_back:
        assert [(r.probe_id, r.sent_at) for r in rows] == [(local.probe_id, NOW)]
        assert conflicts == set()
    else:
        assert [(r.probe_id, r.sent_at) for r in rows] == [(stored.probe_id, None)]
        assert conflicts == {local.probe_id}
