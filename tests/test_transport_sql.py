"""The SQL transport against a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, bindparam, event, text

from probe.errors import CheckFailed, ConfigError, ConnectError, TransportError
from probe.model import ProbeMessage, new_probe_id
from probe.store import create_engine
from probe.transports import Resources, make_source
from probe.transports.sql.spec import SqlDestination, SqlSource
from probe.transports.sql.transport import SqlPollObserver, SqlProbeSource, read_time
from tests.helpers import closed_port, fetch_rows, running, wait_for, write_config

NOW = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
INSERT = "INSERT INTO gs_outbox (probe_id, sent_at, flow) VALUES (:probe_id, :sent_at, :flow)"
SELECT = "SELECT probe_id, received_at FROM epm3_inbox WHERE probe_id = :probe_id"
PASSWORD = "hemmeligt-kodeord"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh hospital database with an outbox and an inbox table: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hospital.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await run_sql(url, "CREATE TABLE gs_outbox (probe_id text, sent_at timestamptz, flow text)")
    await run_sql(
        url, "CREATE TABLE epm3_inbox (probe_id text, received_at timestamptz, message text)"
    )
    return url


@pytest.fixture
async def resources() -> AsyncIterator[Resources]:
    shared = Resources()
    yield shared
    await shared.aclose()
    # aiosqlite stops the worker thread of a connection that failed to open without waiting
    # for it; the thread then reports to the loop, which must still be running.
    for _ in range(100):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            break
        await asyncio.sleep(0.02)


async def run_sql(url: str, sql: str, **params: Any) -> list[Any]:
    """Run one statement on its own engine; datetimes are bound the way the transport binds them."""
    stamp = DateTime(timezone=True)
    stamps = [bindparam(k, type_=stamp) for k, v in params.items() if isinstance(v, datetime)]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql).bindparams(*stamps), params)
            return list(result.fetchall()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def arrive(url: str, probe_id: str, at: datetime = NOW) -> None:
    sql = "INSERT INTO epm3_inbox VALUES (:probe_id, :at, 'ADT^A08')"
    await run_sql(url, sql, probe_id=probe_id, at=at)


def message(probe_id: str | None = None, sent_at: datetime = NOW) -> ProbeMessage:
    probe_id = new_probe_id() if probe_id is None else probe_id
    return ProbeMessage(probe_id=probe_id, flow="gs-adt", slot=sent_at, sent_at=sent_at)


def source(url: str, resources: Resources, statement: str = INSERT) -> SqlProbeSource:
    return SqlProbeSource(SqlSource(type="sql", url=url, statement=statement), resources)


def observer(url: str, resources: Resources, query: str = SELECT, **config: Any) -> SqlPollObserver:
    dest = SqlDestination(name="epm3", type="sql", url=url, query=query, **config)
    return SqlPollObserver(dest, resources, poll=0.05)


def soon(seconds: float = 0.3) -> float:
    return time.monotonic() + seconds


async def test_source_inserts_a_row_with_the_bound_values(
    db_url: str, resources: Resources
) -> None:
    probe = message()
    config = SqlSource(type="sql", url=db_url, statement=INSERT)
    receipt = await make_source(config, resources).send(probe)  # through the registry
    assert receipt.detail == "1 row(s)"
    [row] = await run_sql(db_url, "SELECT probe_id, sent_at, flow FROM gs_outbox")
    assert (row.probe_id, row.flow) == (probe.probe_id, "gs-adt")
    assert read_time(row.sent_at) == NOW  # SQLite: UTC text; PostgreSQL: timestamptz


async def test_sql_metacharacters_in_a_probe_id_are_bound_not_run(
    db_url: str, resources: Resources
) -> None:
    probe = message("x'); DROP TABLE gs_outbox;--")
    await source(db_url, resources).send(probe)
    query = "SELECT sent_at FROM gs_outbox WHERE probe_id = :probe_id"
    sighting = await observer(db_url, resources, query).expect(probe, soon())
    assert sighting is not None
    assert sighting.count == 1
    assert [r.probe_id for r in await run_sql(db_url, "SELECT probe_id FROM gs_outbox")] == [
        probe.probe_id
    ]


async def test_observer_finds_a_row_and_counts_a_second_as_a_duplicate(
    db_url: str, resources: Resources
) -> None:
    probe = message()
    watcher = observer(db_url, resources)
    await arrive(db_url, probe.probe_id)
    started = time.monotonic()
    sighting = await watcher.expect(probe, soon(5))
    assert sighting is not None
    assert started <= sighting.seen_mono <= time.monotonic()
    assert (sighting.probe_id, sighting.destination, sighting.count) == (probe.probe_id, "epm3", 1)
    assert sighting.arrived_at is None  # no time_column
    await arrive(db_url, probe.probe_id)
    sighting = await watcher.expect(probe, soon(5))
    assert sighting is not None
    assert sighting.count == 2


async def test_observer_reads_the_earliest_arrival_from_time_column(
    db_url: str, resources: Resources
) -> None:
    probe = message()
    await arrive(db_url, probe.probe_id, NOW + timedelta(seconds=3))
    await arrive(db_url, probe.probe_id, NOW + timedelta(seconds=1.5))
    watcher = observer(db_url, resources, time_column="received_at")
    sighting = await watcher.expect(probe, soon())
    assert sighting is not None
    assert sighting.count == 2
    assert sighting.arrived_at == NOW + timedelta(seconds=1.5)


async def test_a_missing_time_column_is_an_sql_error(db_url: str, resources: Resources) -> None:
    probe = message()
    await arrive(db_url, probe.probe_id)
    watcher = observer(db_url, resources, time_column="arrived")
    with pytest.raises(CheckFailed, match="no column 'arrived'") as caught:
        await watcher.expect(probe, soon(0))
    assert caught.value.reason == "sql_error"


async def test_since_is_a_timestamp_a_where_clause_can_compare(
    db_url: str, resources: Resources
) -> None:
    probe = message()
    await arrive(db_url, probe.probe_id, NOW - timedelta(hours=1))  # an old row: ignored
    query = SELECT + " AND received_at >= :since"
    watcher = observer(db_url, resources, query, time_column="received_at")
    assert await watcher.expect(probe, soon(0.2)) is None
    await arrive(db_url, probe.probe_id, NOW - timedelta(minutes=1))  # within the margin
    sighting = await watcher.expect(probe, soon())
    assert sighting is not None
    assert (sighting.count, sighting.arrived_at) == (1, NOW - timedelta(minutes=1))


async def test_observer_returns_none_at_the_deadline(db_url: str, resources: Resources) -> None:
    started = time.monotonic()
    assert await observer(db_url, resources).expect(message(), soon(0.4)) is None
    assert 0.4 <= time.monotonic() - started < 2


async def test_observer_looks_once_even_past_the_deadline(
    db_url: str, resources: Resources
) -> None:
    probe = message()
    await arrive(db_url, probe.probe_id)
    assert await observer(db_url, resources).expect(probe, time.monotonic() - 10) is not None


async def test_a_missing_table_is_an_sql_error(db_url: str, resources: Resources) -> None:
    insert = "INSERT INTO nowhere (probe_id) VALUES (:probe_id)"
    with pytest.raises(CheckFailed, match="nowhere") as sent:
        await source(db_url, resources, insert).send(message())
    query = "SELECT * FROM nowhere WHERE probe_id = :probe_id"
    with pytest.raises(CheckFailed, match="nowhere") as observed:
        await observer(db_url, resources, query).expect(message(), soon(0.2))
    assert sent.value.reason == observed.value.reason == "sql_error"
    assert "SELECT" not in str(observed.value).split(":", 3)[-1][:40]  # the driver's words first


async def test_observer_recovers_when_the_table_appears(db_url: str, resources: Resources) -> None:
    probe = message()
    query = "SELECT * FROM late_inbox WHERE probe_id = :probe_id"
    watcher = observer(db_url, resources, query)
    failed: list[object] = []
    event.listen(watcher.db.engine.sync_engine, "handle_error", failed.append)
    watching = asyncio.create_task(watcher.expect(probe, soon(10)))
    await wait_for(lambda: len(failed) >= 3, limit=5, every=0.01)  # several polls fail
    assert not watching.done()
    await run_sql(db_url, "CREATE TABLE late_inbox (probe_id text)")
    await run_sql(db_url, "INSERT INTO late_inbox VALUES (:probe_id)", probe_id=probe.probe_id)
    sighting = await asyncio.wait_for(watching, timeout=5)
    assert sighting is not None
    assert sighting.count == 1


async def test_a_statement_that_affects_no_rows_fails(db_url: str, resources: Resources) -> None:
    update = "UPDATE gs_outbox SET flow = :flow WHERE probe_id = :probe_id"
    with pytest.raises(CheckFailed) as caught:
        await source(db_url, resources, update).send(message())
    assert caught.value.reason == "no_rows"


async def test_a_cancelled_send_leaves_the_pool_usable(db_url: str, resources: Resources) -> None:
    """A runner timeout cuts a statement off; the next probes still get a working connection."""
    blocker = create_engine(db_url)
    try:
        async with blocker.begin() as conn:  # holds a lock the probe's INSERT must wait for
            await conn.execute(text("DELETE FROM gs_outbox"))
            if blocker.dialect.name == "postgresql":
                await conn.execute(text("LOCK TABLE gs_outbox IN EXCLUSIVE MODE"))
            sender = source(db_url, resources)
            invalidated: list[BaseException | None] = []

            def record(_dbapi: object, _record: object, error: BaseException | None) -> None:
                invalidated.append(error)

            event.listen(sender.db.engine.sync_engine, "invalidate", record)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await sender.send(message())
        # The cut-off connection was thrown away, not returned to the pool.
        assert [type(error) for error in invalidated] == [asyncio.CancelledError]
        for _ in range(3):
            assert (await asyncio.wait_for(sender.send(message()), 5)).detail == "1 row(s)"
    finally:
        await blocker.dispose()
    assert len(await run_sql(db_url, "SELECT * FROM gs_outbox")) == 3  # the cut-off one is not


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            f"postgresql+psycopg://probe:{PASSWORD}@127.0.0.1:{closed_port()}/hospital",
            id="postgresql-closed-port",
        ),
        pytest.param("sqlite+aiosqlite:////nonexistent/dir/hospital.db", id="sqlite-no-directory"),
    ],
)
async def test_an_unreachable_database_is_a_connect_error(url: str, resources: Resources) -> None:
    errors: list[TransportError] = []
    with pytest.raises(ConnectError) as sent:
        await source(url, resources).send(message())
    errors.append(sent.value)
    with pytest.raises(ConnectError) as observed:
        await observer(url, resources).expect(message(), soon(0.2))
    errors.append(observed.value)
    for error in errors:
        assert error.reason == "connect"
        assert str(error).startswith("cannot connect to ")
        assert PASSWORD not in str(error)
        assert PASSWORD not in repr(error)


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        pytest.param(
            "INSERT INTO t VALUES (:probe_id, :patient)",
            "source: unknown parameter :patient in the SQL"
            " (use :probe_id :sent_at :flow :destination)",
            id="unknown-name",
        ),
        pytest.param(
            "INSERT INTO t VALUES (:probe_id, :since)",
            "source: unknown parameter :since in the SQL"
            " (use :probe_id :sent_at :flow :destination)",
            id="since-is-for-destinations",
        ),
    ],
)
def test_unknown_parameters_are_config_errors(sql: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        source(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", Resources(), sql)
    assert caught.value.problems == [problem]


def test_an_unusable_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        source(f"nosuch://probe:{PASSWORD}@127.0.0.1/hospital", Resources())
    assert caught.value.problems == [
        "nosuch://probe:***@127.0.0.1/hospital: cannot use this database URL:"
        " Can't load plugin: sqlalchemy.dialects:nosuch"
    ]


async def test_only_the_parameters_a_statement_uses_are_bound(
    db_url: str, resources: Resources
) -> None:
    # PostgreSQL would reject an untyped, unused parameter less politely than SQLite.
    insert = "INSERT INTO gs_outbox (probe_id, flow) VALUES (:probe_id, 'fixed')"
    assert (await source(db_url, resources, insert).send(message())).detail == "1 row(s)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(NOW, NOW, id="aware"),
        pytest.param(NOW.replace(tzinfo=None), NOW, id="naive-is-utc"),
        pytest.param("2026-11-26 10:00:00.123456", NOW, id="sqlite-text"),
        pytest.param("2026-11-26T11:00:00.123456+01:00", NOW, id="iso-with-offset"),
        pytest.param(NOW.timestamp(), NOW, id="epoch-float"),
        pytest.param(Decimal(int(NOW.timestamp())), NOW.replace(microsecond=0), id="epoch-numeric"),
        pytest.param("yesterday", None, id="not-a-time"),
        pytest.param(None, None, id="null"),
    ],
)
def test_read_time(value: object, expected: datetime | None) -> None:
    assert read_time(value) == expected


async def test_a_daemon_probes_a_table_handover_end_to_end(tmp_path: Path) -> None:
    hospital = f"sqlite+aiosqlite:///{tmp_path / 'hospital.db'}"
    await run_sql(
        hospital,
        "CREATE TABLE handover (probe_id text, sent_at text, flow text,"
        " received_at text DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))",
    )
    store = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    config = {
        "store": {"url": store, "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "5s",
        "defaults": {"interval": "200ms", "timeout": "3s", "poll": "50ms"},
        "flows": [
            {
                "name": "gs-table",
                "source": {
                    "type": "sql",
                    "url": hospital,
                    "statement": "INSERT INTO handover (probe_id, sent_at, flow)"
                    " VALUES (:probe_id, :sent_at, :flow)",
                },
                "destinations": [
                    {
                        "name": "epm3",
                        "type": "sql",
                        "url": hospital,
                        "query": "SELECT received_at FROM handover"
                        " WHERE probe_id = :probe_id AND sent_at >= :since",
                        "time_column": "received_at",
                    }
                ],
            }
        ],
    }
    async with running(write_config(tmp_path, config)):

        async def three_results() -> bool:
            return len((await fetch_rows(store))[1]) >= 3

        await wait_for(three_results, limit=20)
    probes, results = await fetch_rows(store)
    assert len(results) >= 3
    assert {r.probe_id for r in results} == {p.probe_id for p in probes}
    assert {(r.flow, r.destination, r.outcome) for r in results} == {
        ("gs-table", "epm3", "delivered")
    }
    assert {r.latency_clock for r in results} == {"destination"}
    assert all(-0.01 < r.latency_s < 2 for r in results)
    handed_over = await run_sql(hospital, "SELECT probe_id FROM handover")
    assert {r.probe_id for r in handed_over} == {p.probe_id for p in probes}
