"""How long does the monthly report take on a month of real-size data, and what do rollups buy?

Fills a fresh SQLite file and a fresh PostgreSQL database (both migrated with
`probe.store.migrate.upgrade`) with one month of results, 2026-10 in Europe/Copenhagen, for
``--flows`` flows x 2 destinations at one probe per minute per flow, then per database:

1. bulk-loads ``results`` (PostgreSQL: psycopg ``COPY`` on a sync connection, then
   ``VACUUM ANALYZE``; SQLite: ``sqlite3`` executemany, one transaction per 1,440 slots,
   ``journal_mode=WAL, synchronous=OFF`` during the load, then a WAL checkpoint);
2. builds ``rollups_hourly`` and ``incidents`` with ``probe.store.rollup.rebuild`` in one
   ``engine.begin()`` transaction, timed (``--rollups bench`` instead accumulates the same
   ``rollup.accumulate`` / ``rollup.Incidents`` state while generating the rows and inserts it,
   for when rebuild is too slow);
3. times ``probe.report.stats.build_report(engine, config, "2026-10", now=...)`` 3 times
   (median), target <= 5 s, with a breakdown of its parts on the last run;
4. times a naive report straight from raw ``results``: per flow and destination, counts by
   outcome and p50/p95/p99/max latency of delivered+late results.
   PostgreSQL: one query, ``percentile_cont(ARRAY[0.5,0.95,0.99]) WITHIN GROUP (ORDER BY
   latency_s)`` grouped by flow, destination. SQLite has no percentile aggregate: one
   ``GROUP BY flow, destination, outcome`` query for counts and max, plus one query that
   streams every latency ordered by (flow, destination, latency_s) and computes the same
   linear-interpolation percentiles as ``percentile_cont`` in Python per group.
   Both go through the same async engine as the report. The naive numbers are checked against
   the report's (counts equal, max equal, percentiles within the sketch's 1%).

If the report misses its target (or with ``--profile``), one more run is profiled with
cProfile and the top functions are printed, and the report is timed again (median of 3) with
`stats._rollups` swapped, in this process only, for `candidate_rollups`: the same numbers
computed by grouping hourly rows per local day in SQL and parsing each day's sketches once.
The bench checks that this gives an identical report; it shows what a fix would give and is
not production code.

Data: ``probe_id`` is ``PR`` + 18 hex digits of (slot index x flows + flow index): one probe
per flow and slot as in production, so the two destinations of a probe share it and
(probe_id, destination) is unique. About 99.5% of results are delivered with latencies from a
per-flow lognormal (median 0.5-4 s, sigma 0.6); scattered late (0.15%, 30-290 s), lost
(0.1%), observe_error (0.02%) per destination and send_error (0.1%, both destinations) per
probe; plus incident runs: half of the flow/destination pairs get one destination outage of
10-120 minutes (lost or observe_error), a fifth of the flows one source outage of 5-60
minutes (send_error). Every isolated bad result is an incident of its own by the store's
definition, so there are tens of thousands of incidents. No maintenance.

Run:  python bench/report_bench.py [--flows 200] [--days 31] [--only sqlite|postgresql]
      [--rollups rebuild|bench] [--profile] [--keep]

``--days`` counts local calendar days from 1 October; 31 is the whole month (745 hours, as the
clocks go back on 25 October: 44,700 slots, 17.88 million results at 200 flows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import case, func, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.config.models import Config
from probe.report import stats
from probe.report.stats import Month, Totals, build_report
from probe.store import rollup
from probe.store.migrate import upgrade
from probe.store.repository import create_engine
from probe.store.sketch import Sketch
from probe.store.tables import incidents, rollups

MONTH = "2026-10"
TZ = "Europe/Copenhagen"
DESTINATIONS = ("dest-a", "dest-b")
TARGET_S = 5.0
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = (
    "probe_id", "destination", "flow", "slot_at", "outcome", "latency_s", "latency_clock",
    "duplicates", "reason", "resolved_at", "mismatch", "maintenance",
)  # fmt: skip
INSERT_SQLITE = (
    "INSERT INTO results (probe_id, destination, flow, slot_at, outcome, latency_s, "
    "latency_clock, duplicates, reason, resolved_at, mismatch, maintenance) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
COPY_PG = (
    "COPY results (probe_id, destination, flow, slot_at, outcome, latency_s, latency_clock, "
    "duplicates, reason, resolved_at, mismatch, maintenance) FROM STDIN"
)
# The naive report. Rows whose slot lies in the month and that are not in maintenance.
NAIVE_SQLITE_COUNTS = """
SELECT flow, destination, outcome, count(*), max(latency_s) FROM results
WHERE slot_at >= :start AND slot_at < :end AND NOT maintenance
GROUP BY flow, destination, outcome
"""
NAIVE_SQLITE_LATENCIES = """
SELECT flow, destination, latency_s FROM results
WHERE slot_at >= :start AND slot_at < :end AND NOT maintenance
  AND outcome IN ('delivered', 'late') AND latency_s IS NOT NULL
ORDER BY flow, destination, latency_s
"""
NAIVE_PG = """
SELECT flow, destination,
  count(*) FILTER (WHERE outcome = 'delivered'),
  count(*) FILTER (WHERE outcome = 'late'),
  count(*) FILTER (WHERE outcome = 'lost'),
  count(*) FILTER (WHERE outcome = 'send_error'),
  count(*) FILTER (WHERE outcome = 'observe_error'),
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_s)
    FILTER (WHERE outcome IN ('delivered', 'late')),
  max(latency_s) FILTER (WHERE outcome IN ('delivered', 'late'))
FROM results
WHERE slot_at >= :start AND slot_at < :end AND NOT maintenance
GROUP BY flow, destination
"""
SLO_LATENCY = 30.0
P_SEND_ERROR, P_LATE, P_LOST, P_OBSERVE = 0.001, 0.0015, 0.001, 0.0002


# --- data ------------------------------------------------------------------------------------


@dataclass
class Generator:
    """Deterministic results, one day of slots at a time, as tuples in `COLUMNS` order.

    Timestamps are naive-UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``, which is what SQLAlchemy
    writes for SQLite and what PostgreSQL reads as timestamptz with the session in UTC.
    """

    flows: int
    slots: list[datetime]
    seed: int = 2026
    rng: random.Random = field(init=False)
    names: list[str] = field(init=False)
    medians: list[tuple[float, float]] = field(init=False)
    dest_outages: dict[tuple[int, int], tuple[int, int, str]] = field(init=False)
    source_outages: dict[int, tuple[int, int]] = field(init=False)
    _text: dict[int, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        rng = self.rng = random.Random(self.seed)
        self.names = [f"flow-{i:03d}" for i in range(self.flows)]
        self.medians = [
            (math.log(rng.uniform(0.5, 4.0)), math.log(rng.uniform(0.5, 4.0)))
            for _ in range(self.flows)
        ]
        n = len(self.slots)
        self.dest_outages = {}
        self.source_outages = {}
        for f in range(self.flows):
            for d in range(len(DESTINATIONS)):
                if rng.random() < 0.5:
                    length = rng.randint(10, 120)
                    start = rng.randrange(max(1, n - length))
                    kind = rng.choice(("lost", "observe_error"))
                    self.dest_outages[(f, d)] = (start, start + length, kind)
            if rng.random() < 0.2:
                length = rng.randint(5, 60)
                start = rng.randrange(max(1, n - length))
                self.source_outages[f] = (start, start + length)

    def ts(self, epoch: int) -> str:
        found = self._text.get(epoch)
        if found is None:
            found = self._text[epoch] = datetime.fromtimestamp(epoch, UTC).strftime(
                "%Y-%m-%d %H:%M:%S.000000"
            )
        return found

    def days(self) -> Iterator[list[tuple[Any, ...]]]:
        """Lists of rows, 1,440 slots (or what is left) at a time."""
        for first in range(0, len(self.slots), 1440):
            yield self._rows(first, min(first + 1440, len(self.slots)))

    def _rows(self, first: int, last: int) -> list[tuple[Any, ...]]:
        rng = self.rng
        rand, lognorm, uniform = rng.random, rng.lognormvariate, rng.uniform
        flows, names, medians, ts = self.flows, self.names, self.medians, self.ts
        dest_outages, source_outages = self.dest_outages, self.source_outages
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for s in range(first, last):
            epoch = int(self.slots[s].timestamp())
            slot_text = ts(epoch)
            send_failed_at = ts(epoch + 30)
            timed_out_at = ts(epoch + 300)
            for f in range(flows):
                probe_id = f"PR{s * flows + f:018X}"
                flow = names[f]
                outage = source_outages.get(f)
                if rand() < P_SEND_ERROR or (outage and outage[0] <= s < outage[1]):
                    for dest in DESTINATIONS:
                        append((probe_id, dest, flow, slot_text, "send_error", None, None, 0,
                                "connect", send_failed_at, None, False))  # fmt: skip
                    continue
                for d, dest in enumerate(DESTINATIONS):
                    down = dest_outages.get((f, d))
                    r = rand()
                    if down and down[0] <= s < down[1]:
                        reason = "timeout" if down[2] == "observe_error" else None
                        append((probe_id, dest, flow, slot_text, down[2], None, None, 0,
                                reason, timed_out_at, None, False))  # fmt: skip
                    elif r < P_LATE:
                        latency = round(uniform(SLO_LATENCY, 290.0), 3)
                        append((probe_id, dest, flow, slot_text, "late", latency, "monotonic",
                                0, None, ts(epoch + int(latency) + 1), None, False))  # fmt: skip
                    elif r < P_LATE + P_LOST:
                        append((probe_id, dest, flow, slot_text, "lost", None, None, 0,
                                None, timed_out_at, None, False))  # fmt: skip
                    elif r < P_LATE + P_LOST + P_OBSERVE:
                        append((probe_id, dest, flow, slot_text, "observe_error", None, None,
                                0, "connect", timed_out_at, None, False))  # fmt: skip
                    else:
                        latency = round(lognorm(medians[f][d], 0.6), 3)
                        outcome = "delivered" if latency <= SLO_LATENCY else "late"
                        dups = 1 if r > 0.999 else 0
                        append((probe_id, dest, flow, slot_text, outcome, latency, "monotonic",
                                dups, None, ts(epoch + int(latency) + 1), None, False))  # fmt: skip
        return rows


def month_slots(month: Month, days: int) -> list[datetime]:
    local_start = month.start.astimezone(month.tz)
    local_end = (local_start.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=month.tz)
    end = min(month.end, local_end.astimezone(UTC))
    return [
        month.start + timedelta(minutes=i)
        for i in range(int((end - month.start).total_seconds()) // 60)
    ]


def make_config(flows: int) -> Config:
    return Config.model_validate(
        {
            "timezone": TZ,
            "flows": [
                {
                    "name": f"flow-{i:03d}",
                    "source": {"type": "http", "method": "POST", "url": f"http://127.0.0.1:9/{i}"},
                    "destinations": [
                        {"name": dest, "type": "http", "url": f"http://127.0.0.1:9/{dest}/{i}"}
                        for dest in DESTINATIONS
                    ],
                }
                for i in range(flows)
            ],
        }
    )


# --- databases -------------------------------------------------------------------------------


@dataclass
class Db:
    name: str  # sqlite | postgresql
    url: str  # SQLAlchemy async URL
    path: Path | None = None  # SQLite file
    pg_name: str | None = None  # scratch PostgreSQL database
    loader: Any = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def open_loader(self) -> None:
        if self.name == "sqlite":
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-1000000")  # 1 GB for the index b-trees
            self.loader = conn
        else:
            conn = psycopg.connect(self.url.replace("+psycopg", ""))
            conn.execute("SET TIME ZONE 'UTC'")
            self.loader = conn

    def load(self, rows: list[tuple[Any, ...]]) -> None:
        if self.name == "sqlite":
            conn = self.loader
            conn.execute("BEGIN")
            conn.executemany(INSERT_SQLITE, rows)
            conn.execute("COMMIT")
        else:
            conn = self.loader
            with conn.cursor() as cur, cur.copy(COPY_PG) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()

    def finish_load(self) -> None:
        conn = self.loader
        if self.name == "sqlite":
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        else:
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE) results")
            conn.close()


async def create_db(kind: str, work: Path) -> Db:
    if kind == "sqlite":
        path = work / "report_bench.db"
        db = Db("sqlite", f"sqlite+aiosqlite:///{path}", path=path)
    else:
        name = f"report_bench_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.execute(f"CREATE DATABASE {name}")
        db = Db("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", pg_name=name)
    engine = create_engine(db.url)
    await upgrade(engine)
    await engine.dispose()
    return db


def drop_db(db: Db) -> None:
    if db.path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db.path}{suffix}").unlink(missing_ok=True)
    if db.pg_name is not None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db.pg_name} WITH (FORCE)")


def db_size(db: Db) -> str:
    if db.path is not None:
        return f"{db.path.stat().st_size / 2**30:.2f} GiB file"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        size = admin.execute("SELECT pg_database_size(%s)", (db.pg_name,)).fetchone()
    assert size is not None
    return f"{size[0] / 2**30:.2f} GiB database"


# --- rollups built by the bench (fallback) ---------------------------------------------------


class BenchRollups:
    """The same `rollup.accumulate` and `rollup.Incidents` state rebuild keeps, fed while
    the rows are generated (they come in slot order) instead of read back."""

    def __init__(self) -> None:
        self.hours: dict[rollup.Key, rollup.Hour] = {}
        self.machine = rollup.Incidents(None)
        self._dt: dict[str, datetime] = {}

    async def feed(self, rows: list[tuple[Any, ...]]) -> None:
        dt = self._dt
        parsed = []
        for r in rows:
            slot = dt.get(r[3])
            if slot is None:
                slot = dt[r[3]] = datetime.fromisoformat(r[3]).replace(tzinfo=UTC)
            parsed.append(rollup.Row(r[2], r[1], slot, r[4], r[5], r[11]))
        rollup.accumulate(parsed, self.hours)
        await self.machine.feed(parsed)

    async def store(self, engine: AsyncEngine) -> None:
        values = [
            {"flow": f, "destination": d, "hour": h, **hour.merge_into(None)}
            for (f, d, h), hour in self.hours.items()
        ]
        found = [*self.machine.done, *self.machine.open.values()]
        for incident in found:
            incident.pop("id", None)
        async with engine.begin() as conn:
            await conn.execute(rollups.delete())
            await conn.execute(incidents.delete())
            for start in range(0, len(values), 50_000):
                await conn.execute(insert(rollups), values[start : start + 50_000])
            if found:
                await conn.execute(insert(incidents), found)


# --- naive report from raw rows --------------------------------------------------------------


def percentiles_cont(values: list[float], qs: tuple[float, ...]) -> list[float]:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    n = len(values)
    out = []
    for q in qs:
        rank = q * (n - 1)
        low = math.floor(rank)
        high = min(low + 1, n - 1)
        out.append(values[low] + (values[high] - values[low]) * (rank - low))
    return out


async def naive_report(engine: AsyncEngine, month: Month) -> dict[tuple[str, str], dict[str, Any]]:
    bounds: dict[str, Any] = {"start": month.start, "end": month.end}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # naive UTC text, as SQLAlchemy stores it, so the range compares as text
            bounds = {
                k: v.replace(tzinfo=None).isoformat(" ", "microseconds") for k, v in bounds.items()
            }
            counts = await conn.execute(text(NAIVE_SQLITE_COUNTS), bounds)
            for flow, dest, outcome, count, top in counts:
                entry = found.setdefault((flow, dest), {"outcomes": {}, "max": None})
                entry["outcomes"][outcome] = count
                if outcome in ("delivered", "late") and top is not None:
                    entry["max"] = max(top, entry["max"] or 0.0)
            stream = await conn.stream(text(NAIVE_SQLITE_LATENCIES), bounds)
            current: tuple[str, str] | None = None
            values: list[float] = []
            async for part in stream.partitions(100_000):
                for key, group in groupby(part, key=lambda r: (r[0], r[1])):
                    if key != current:
                        if current is not None:
                            found[current]["p"] = percentiles_cont(values, (0.5, 0.95, 0.99))
                        current, values = key, []
                    values.extend(r[2] for r in group)
            if current is not None:
                found[current]["p"] = percentiles_cont(values, (0.5, 0.95, 0.99))
        else:
            rows = await conn.execute(text(NAIVE_PG), bounds)
            for row in rows:
                outcomes = dict(zip(rollup.OUTCOMES, row[2:7], strict=True))
                found[(row[0], row[1])] = {
                    "outcomes": {k: v for k, v in outcomes.items() if v},
                    "p": row[7],
                    "max": row[8],
                }
    return found


def compare(report: dict[str, Any], naive: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Counts and max must match exactly; percentiles within the sketch's error."""
    rows = {(r["flow"], r["destination"]): r for r in report["rows"]}
    count_diffs = max_diffs = 0
    worst = 0.0
    for key, entry in naive.items():
        row = rows.get(key)
        if row is None:
            count_diffs += 1
            continue
        if {k: v for k, v in row["outcomes"].items() if v} != entry["outcomes"]:
            count_diffs += 1
        latency = row["latency_seconds"] or {}
        if latency.get("max") != entry["max"]:
            max_diffs += 1
        for name, exact in zip(("p50", "p95", "p99"), entry.get("p") or (), strict=False):
            worst = max(worst, abs(latency[name] - exact) / exact)
    missing = len([k for k, r in rows.items() if r["probes"] and k not in naive])
    return (
        f"{len(naive)} groups; count mismatches {count_diffs + missing}, max mismatches "
        f"{max_diffs}, worst percentile difference {worst:.2%}"
    )


# --- timing ----------------------------------------------------------------------------------


async def timed_report(engine: AsyncEngine, config: Config, now: datetime) -> float:
    started = time.perf_counter()
    await build_report(engine, config, MONTH, now=now)
    return time.perf_counter() - started


async def report_breakdown(engine: AsyncEngine, config: Config, month: Month) -> dict[str, float]:
    """Time the report's parts separately: reading rollups, merging them, incidents."""
    parts: dict[str, float] = {}
    t = time.perf_counter()
    async with engine.connect() as conn:
        query = select(rollups).where(rollups.c.hour >= month.start, rollups.c.hour < month.end)
        fetched = (await conn.execute(query)).all()
    parts["fetch rollup rows only"] = time.perf_counter() - t
    t = time.perf_counter()
    await stats._rollups(engine, month)
    parts["_rollups (fetch + merge)"] = time.perf_counter() - t
    t = time.perf_counter()
    await stats._rollups(engine, month.previous())
    parts["_rollups previous month"] = time.perf_counter() - t
    t = time.perf_counter()
    await stats._incidents(engine, month.start, month.end)
    parts["_incidents"] = time.perf_counter() - t
    parts["rollup rows"] = len(fetched)
    return parts


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def bench_db(db: Db, config: Config, month: Month, now: datetime, args: Any) -> None:
    n = db.numbers
    engine = create_engine(db.url)
    try:
        if args.rollups == "rebuild":
            print(f"[{db.name}] rollup.rebuild ...", flush=True)
            t = time.perf_counter()
            async with engine.begin() as conn:
                n["rebuild_read"] = await rollup.rebuild(conn)
            n["rollup_s"] = time.perf_counter() - t
        n["rollup_rows"] = await count(engine, rollups)
        n["incident_rows"] = await count(engine, incidents)
        print(
            f"[{db.name}] rollups {n['rollup_s']:.1f} s: {n['rollup_rows']:,} rollup rows, "
            f"{n['incident_rows']:,} incidents",
            flush=True,
        )
        times = []
        for i in range(3):
            times.append(await timed_report(engine, config, now))
            print(f"[{db.name}] build_report run {i + 1}: {times[-1]:.2f} s", flush=True)
        n["report_runs"] = times
        n["report_s"] = statistics.median(times)
        n["breakdown"] = await report_breakdown(engine, config, month)
        print(f"[{db.name}] breakdown: {n['breakdown']}", flush=True)
        report = await build_report(engine, config, MONTH, now=now)
        n["report_rows"] = len(report["rows"])
        n["report_incidents"] = sum(len(r["incidents"]) for r in report["rows"])
        print(f"[{db.name}] naive report from raw rows ...", flush=True)
        t = time.perf_counter()
        naive = await naive_report(engine, month)
        n["naive_s"] = time.perf_counter() - t
        n["check"] = compare(report, naive)
        print(f"[{db.name}] naive {n['naive_s']:.1f} s; check: {n['check']}", flush=True)
        if n["report_s"] > TARGET_S or args.profile:
            n["profile"] = await profile_report(engine, config, now)
            n["candidate_s"], n["candidate_same"] = await try_candidate(engine, config, now, report)
            print(
                f"[{db.name}] report with the candidate _rollups: {n['candidate_s']:.2f} s "
                f"(median of 3), identical report: {n['candidate_same']}",
                flush=True,
            )
    finally:
        await engine.dispose()


# --- a candidate for stats._rollups (not production code) -----------------------------------


def local_days(month: Month) -> list[tuple[date, datetime]]:
    """(local date, UTC start of the next local day) for every day of the month."""
    out = []
    day = month.start.astimezone(month.tz).date()
    while True:
        start = datetime.combine(day, dt_time(), tzinfo=month.tz).astimezone(UTC)
        if start >= month.end:
            return out
        following = day + timedelta(days=1)
        out.append((day, datetime.combine(following, dt_time(), tzinfo=month.tz).astimezone(UTC)))
        day = following


async def candidate_rollups(
    engine: AsyncEngine, month: Month
) -> tuple[dict[stats.Key, Totals], dict[stats.Key, dict[date, Totals]]]:
    """What `stats._rollups` returns, computed differently, to show what a fix would give.

    The database groups the hourly rows by flow, destination and local day (a CASE over the
    UTC instants of local midnights, so any zone works) and sums the counts; the day's
    sketches come back as one concatenated JSON text, parsed once, merged with string keys;
    the month is then the sum of its days (31 merges per pair instead of 745).
    """
    days = local_days(month)
    c = rollups.c
    day = case(*[(c.hour < end, i) for i, (_, end) in enumerate(days)], else_=len(days))
    day = day.label("day")
    concat = func.group_concat if engine.dialect.name == "sqlite" else func.string_agg
    query = (
        select(
            c.flow, c.destination, day,
            *[func.sum(getattr(c, name)) for name in rollup.OUTCOMES],
            func.sum(c.maintenance), func.max(c.latency_max),
            concat(c.latency, literal_column("','")).label("sketches"),
        )
        .where(c.hour >= month.start, c.hour < month.end)
        .group_by(c.flow, c.destination, day)
    )  # fmt: skip
    loads = json.loads
    totals: dict[stats.Key, Totals] = {}
    daily: dict[stats.Key, dict[date, Totals]] = {}
    async with engine.connect() as conn:
        for flow, dest, index, *sums, maintenance, top, sketches in await conn.execute(query):
            merged: dict[str, int] = {}
            get = merged.get
            for part in loads("[" + sketches + "]"):
                for bucket, n in part.items():
                    merged[bucket] = get(bucket, 0) + n
            counts = dict(zip(rollup.OUTCOMES, sums, strict=True))
            sketch = Sketch({int(k): v for k, v in merged.items()})
            key = (flow, dest)
            daily.setdefault(key, {})[days[index][0]] = Totals(counts, maintenance, sketch, top)
    for key, by_day in daily.items():
        total = totals[key] = Totals()
        for one in by_day.values():
            for name in rollup.OUTCOMES:
                total.counts[name] += one.counts[name]
            total.maintenance += one.maintenance
            total.sketch.merge(one.sketch)
            if one.latency_max is not None:
                total.latency_max = max(one.latency_max, total.latency_max or 0.0)
    return totals, daily


async def try_candidate(
    engine: AsyncEngine, config: Config, now: datetime, reference: dict[str, Any]
) -> tuple[float, bool]:
    """build_report with `stats._rollups` swapped for the candidate in this process only:
    the median of 3 runs, and whether the report is identical."""
    original = stats._rollups
    stats._rollups = candidate_rollups
    try:
        times = [await timed_report(engine, config, now) for _ in range(3)]
        same = await build_report(engine, config, MONTH, now=now) == reference
    finally:
        stats._rollups = original
    return statistics.median(times), same


async def profile_report(engine: AsyncEngine, config: Config, now: datetime) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    await build_report(engine, config, MONTH, now=now)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    return out.getvalue()


# --- main ------------------------------------------------------------------------------------


def table(dbs: list[Db], total: int) -> str:
    head = (
        "| database | results | load s (+ finish s) | size | rollup build s | rollup rows | "
        "incidents | report s (median of 3) | runs | target 5 s | naive s | naive/report |"
    )
    lines = [head, "|" + "---|" * 12]
    for db in dbs:
        n = db.numbers
        met = "met" if n["report_s"] <= TARGET_S else "missed"
        lines.append(
            f"| {db.name} | {total:,} | {n['load_s']:.0f} (+{n['finish_s']:.0f}) | {n['size']} | "
            f"{n['rollup_s']:.0f} ({n['rollup_how']}) | {n['rollup_rows']:,} | "
            f"{n['incident_rows']:,} | {n['report_s']:.2f} | "
            f"{' / '.join(f'{t:.2f}' for t in n['report_runs'])} | {met} | "
            f"{n['naive_s']:.1f} | {n['naive_s'] / n['report_s']:.1f}x |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--rollups", choices=("rebuild", "bench"), default="rebuild")
    parser.add_argument("--profile", action="store_true", help="profile the report even if fast")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args()

    tz = ZoneInfo(TZ)
    month = Month.parse(MONTH, tz)
    now = month.end + timedelta(days=1, hours=7)
    slots = month_slots(month, args.days)
    config = make_config(args.flows)
    total = len(slots) * args.flows * len(DESTINATIONS)
    print(
        f"{MONTH} {TZ}: {len(slots):,} slots x {args.flows} flows x {len(DESTINATIONS)} "
        f"destinations = {total:,} results",
        flush=True,
    )
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    work = Path(tempfile.mkdtemp(prefix="report_bench_", dir="/tmp"))
    dbs = [await create_db(kind, work) for kind in kinds]
    try:
        for db in dbs:
            db.open_loader()
            db.numbers.update(load_s=0.0, rollup_how=args.rollups)
        generator = Generator(args.flows, slots)
        own = BenchRollups() if args.rollups == "bench" else None
        gen_s = feed_s = 0.0
        for day, rows in enumerate(_timed(generator.days())):
            gen_s += rows[1]
            for db in dbs:
                t = time.perf_counter()
                db.load(rows[0])
                db.numbers["load_s"] += time.perf_counter() - t
            if own is not None:
                t = time.perf_counter()
                await own.feed(rows[0])
                feed_s += time.perf_counter() - t
            print(
                f"chunk {day + 1}: {len(rows[0]):,} rows; generate {gen_s:.0f} s; "
                + "; ".join(f"{db.name} load {db.numbers['load_s']:.0f} s" for db in dbs),
                flush=True,
            )
        for db in dbs:
            t = time.perf_counter()
            db.finish_load()
            db.numbers["finish_s"] = time.perf_counter() - t
            db.numbers["size"] = db_size(db)
        print(f"generated in {gen_s:.0f} s", flush=True)
        if own is not None:
            for db in dbs:
                engine = create_engine(db.url)
                t = time.perf_counter()
                await own.store(engine)
                db.numbers["rollup_s"] = feed_s + time.perf_counter() - t
                await engine.dispose()
        for db in dbs:
            await bench_db(db, config, month, now, args)
        print()
        print(table(dbs, total))
        for db in dbs:
            print(f"\n[{db.name}] breakdown of one report: {db.numbers['breakdown']}")
            print(f"[{db.name}] check: {db.numbers['check']}")
            if "profile" in db.numbers:
                print(f"[{db.name}] cProfile of one build_report:\n{db.numbers['profile']}")
                print(
                    f"[{db.name}] build_report with the candidate _rollups: "
                    f"{db.numbers['candidate_s']:.2f} s (median of 3), "
                    f"identical report: {db.numbers['candidate_same']}"
                )
    finally:
        if args.keep:
            print(f"kept: {[db.path or db.pg_name for db in dbs]}")
        else:
            for db in dbs:
                drop_db(db)
            with contextlib.suppress(OSError):
                os.rmdir(work)


def _timed(it: Iterator[list[tuple[Any, ...]]]) -> Iterator[tuple[list[tuple[Any, ...]], float]]:
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        yield item, time.perf_counter() - t


if __name__ == "__main__":
    asyncio.run(main())
