"""The read side of the store: every SELECT, as a function that returns values.

Each takes an open connection, so a caller that reads several things (a status snapshot)
reads them on one, and one inside a write transaction (the rollups, the writer) reads in
it. Rows become values through `probe.store.rows`:

    >>> async with engine.connect() as conn:
    ...     page = await results_page(conn, "gs-adt", start=start, end=end, limit=100)
    >>> page.results[0].outcome, page.more
    (<Outcome.DELIVERED: 'delivered'>, False)

Grouped by who reads: the status (`probe.web.status`), the API's results, the monthly report
(`probe.report.stats`), the rollups (`probe.store.rollup`) and the writer and its recovery
(`probe.store.repository`). Incidents' own reads, locked within their derivation, stay with
the derivation (`probe.store.incidents`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, case, false, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import PROBE_FAULTS, Outcome, Result
from probe.store.rows import DERIVED_COLUMNS, OUTCOMES, Derived, derived_from, result_of
from probe.store.sketch import Sketch
from probe.store.tables import incidents, probes, results, rollups, sightings, spool_marks
from probe.store.totals import Totals

Pair = tuple[str, str]  # (flow, destination); a check's destination is ""
HourKey = tuple[str, str, datetime]  # (flow, destination, UTC hour)
Ratio = tuple[int, int]  # (delivered, counted)
_CHUNK = 300  # keys per statement: well under any backend's limit on bound parameters
_IDS = 500  # probe ids per statement


def _aware(value: Any) -> datetime:
    """A datetime from an aggregate: SQLite returns min(...) as naive UTC text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _measured(query: Any) -> Any:
    """Only what measured the integration: no ad hoc result, no probe-side fault."""
    return query.where(results.c.adhoc.is_(False)).where(
        or_(results.c.reason.is_(None), results.c.reason.not_in(sorted(PROBE_FAULTS)))
    )


# --- the status ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourCounts:
    """One rollup hour of a flow and destination: results by outcome, and in maintenance."""

    hour: datetime
    counts: dict[str, int]
    maintenance: int


async def open_incident_starts(conn: AsyncConnection) -> dict[Pair, datetime]:
    """The start of each flow and destination's open incident."""
    query = select(incidents.c.flow, incidents.c.destination, incidents.c.start_at).where(
        incidents.c.end_at.is_(None)
    )
    return {(r.flow, r.destination): r.start_at for r in await conn.execute(query)}


async def newest_results(
    conn: AsyncConnection, pair: Pair, *, counted: int
) -> tuple[list[Result], Result | None]:
    """The newest ``counted`` measured results outside maintenance, and the newest measured
    one of all, by slot: a lost probe resolves after later slots, and must not look newer."""
    query = _measured(
        select(results)
        .where(results.c.flow == pair[0], results.c.destination == pair[1])
        .order_by(results.c.slot_at.desc(), results.c.probe_id.desc())
    )
    newest = (await conn.execute(query.limit(1))).first()
    rows = await conn.execute(query.where(results.c.maintenance == false()).limit(counted))
    last = result_of(newest._mapping) if newest is not None else None
    return [result_of(r._mapping) for r in rows], last


async def measured_ratio(
    conn: AsyncConnection, pair: Pair, *, since: datetime, until: datetime
) -> Ratio:
    """(delivered, counted) of the measured results outside maintenance with a slot in
    [since, until]."""
    query = _measured(
        select(results.c.outcome, func.count())
        .where(results.c.flow == pair[0], results.c.destination == pair[1])
        .where(results.c.slot_at >= since, results.c.slot_at <= until)
        .where(results.c.maintenance == false())
        .group_by(results.c.outcome)
    )
    counts = {outcome: int(n) for outcome, n in await conn.execute(query)}
    return counts.get(Outcome.DELIVERED.value, 0), sum(counts.values())


async def rollup_ratios(conn: AsyncConnection, *, since: datetime) -> dict[Pair, Ratio]:
    """(delivered, counted) per flow and destination over the rollup hours from ``since``."""
    counted = sum((rollups.c[name] for name in OUTCOMES[1:]), rollups.c[OUTCOMES[0]])
    query = (
        select(rollups.c.flow, rollups.c.destination, func.sum(rollups.c.delivered))
        .add_columns(func.sum(counted))
        .where(rollups.c.hour >= since)
        .group_by(rollups.c.flow, rollups.c.destination)
    )
    rows = await conn.execute(query)
    return {(f, d): (int(delivered or 0), int(total or 0)) for f, d, delivered, total in rows}


async def rollup_hours(conn: AsyncConnection, *, first: datetime) -> dict[HourKey, HourCounts]:
    """Every rollup hour from the hour ``first`` on."""
    out = {}
    for row in await conn.execute(select(rollups).where(rollups.c.hour >= first)):
        counts = {name: int(getattr(row, name)) for name in OUTCOMES}
        out[(row.flow, row.destination, row.hour)] = HourCounts(
            row.hour, counts, int(row.maintenance)
        )
    return out


# --- the API's results --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results, and whether more follow it."""

    results: list[Result]
    more: bool


async def results_page(
    conn: AsyncConnection,
    flow: str,
    *,
    start: datetime,
    end: datetime,
    limit: int,
    destination: str | None = None,
    after: tuple[datetime, str, str] | None = None,
) -> Page:
    """The results of ``flow`` with a slot in [start, end), sorted by (slot, probe id,
    destination), from after the position ``after`` on: at most ``limit`` of them."""
    c = results.c
    query = (
        select(results)
        .where(c.flow == flow, c.slot_at >= start, c.slot_at < end)
        .order_by(c.slot_at, c.probe_id, c.destination)
        .limit(limit + 1)
    )
    if destination is not None:
        query = query.where(c.destination == destination)
    if after is not None:
        slot, probe_id, dest = after
        later = or_(c.probe_id > probe_id, and_(c.probe_id == probe_id, c.destination > dest))
        query = query.where(or_(c.slot_at > slot, and_(c.slot_at == slot, later)))
    rows = list(await conn.execute(query))
    return Page([result_of(r._mapping) for r in rows[:limit]], len(rows) > limit)


# --- the monthly report -------------------------------------------------------------------


async def daily_totals(
    conn: AsyncConnection,
    days: Sequence[tuple[date, datetime]],
    *,
    start: datetime,
    end: datetime,
) -> dict[Pair, dict[date, Totals]]:
    """Per flow and destination, the totals of each of ``days`` (local date, UTC start of
    the next day) with rollup hours in [start, end).

    The database groups the hourly rows by local day (a CASE over the UTC instants of local
    midnights, so any zone and DST works) and joins each day's sketches into one JSON text,
    parsed once. Parsing and merging 745 hourly sketches per pair in Python took three times
    the whole report's budget (bench/RESULTS.md).
    """
    c = rollups.c
    day = case(*[(c.hour < stop, i) for i, (_, stop) in enumerate(days)], else_=len(days) - 1)
    concat = func.group_concat if conn.dialect.name == "sqlite" else func.string_agg
    query = (
        select(
            c.flow, c.destination, day.label("day"),
            *[func.sum(getattr(c, name)) for name in OUTCOMES],
            func.sum(c.maintenance), func.max(c.latency_max),
            concat(c.latency, literal_column("','")).label("sketches"),
            func.sum(c.not_measured), func.sum(c.measured_s), func.sum(c.counted_s),
            func.sum(c.down_s),
            func.min(case((c.measured_s > 0, c.hour), (c.latency_count > 0, c.hour))),
        )
        .where(c.hour >= start, c.hour < end)
        .group_by(c.flow, c.destination, day)
    )  # fmt: skip
    daily: dict[Pair, dict[date, Totals]] = defaultdict(dict)
    for record in await conn.execute(query):
        flow, dest, index = record[0], record[1], record[2]
        daily[(flow, dest)][days[index][0]] = _day_totals(record, end=days[index][1])
    return dict(daily)


def _day_totals(record: Any, *, end: datetime) -> Totals:
    """The `Totals` of one row of `daily_totals`' query, for the day that ends at ``end``."""
    sums = record[3 : 3 + len(OUTCOMES)]
    maintenance, top, sketches, not_measured, measured_s, counted_s, down_s, first = record[
        3 + len(OUTCOMES) :
    ]
    merged: dict[str, int] = {}
    get = merged.get
    for part in json.loads("[" + sketches + "]"):
        for bucket, n in part.items():
            merged[bucket] = get(bucket, 0) + n
    counts = dict(zip(OUTCOMES, (int(v) for v in sums), strict=True))
    sketch = Sketch({int(k): v for k, v in merged.items()})
    if first is None and sum(counts.values()) + int(maintenance) > 0:
        first = end  # measured, but spans unknown (results before 0005)
    return Totals(
        counts, int(maintenance), sketch, top,
        int(not_measured or 0), float(measured_s or 0), float(counted_s or 0),
        float(down_s or 0), None if first is None else _aware(first),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """An incident as derived (`probe.store.incidents`); ``end_at`` None while open."""

    flow: str
    destination: str
    start_at: datetime
    end_at: datetime | None
    cause: str
    ended_by: str | None


async def incidents_between(
    conn: AsyncConnection, start: datetime, until: datetime
) -> dict[Pair, list[StoredIncident]]:
    """Per flow and destination, the incidents that overlap [start, until), oldest first."""
    query = (
        select(incidents)
        .where(incidents.c.start_at < until)
        .where(or_(incidents.c.end_at.is_(None), incidents.c.end_at > start))
        .order_by(incidents.c.start_at)
    )
    found: dict[Pair, list[StoredIncident]] = defaultdict(list)
    for r in await conn.execute(query):
        found[(r.flow, r.destination)].append(
            StoredIncident(r.flow, r.destination, r.start_at, r.end_at, r.cause, r.ended_by)
        )
    return dict(found)


# --- the rollups --------------------------------------------------------------------------


async def locked_hours(conn: AsyncConnection, keys: Sequence[HourKey]) -> dict[HourKey, Any]:
    """The stored rollup rows of ``keys``, locked for the caller's transaction: flows and
    hours in IN lists, the keys picked in Python."""
    wanted = set(keys)
    found: dict[HourKey, Any] = {}
    hours = sorted({key[2] for key in keys})
    flows = sorted({key[0] for key in keys})
    for start in range(0, len(flows), _CHUNK):
        query = (
            select(rollups)
            .where(rollups.c.flow.in_(flows[start : start + _CHUNK]), rollups.c.hour.in_(hours))
            .with_for_update()
        )
        for row in await conn.execute(query):
            key = (row.flow, row.destination, row.hour)
            if key in wanted:
                found[key] = row
    return found


async def derived_results(conn: AsyncConnection, *, batch: int) -> AsyncIterator[list[Derived]]:
    """Every result but the ad hoc ones, in slot order, ``batch`` at a time (streamed)."""
    query = select(*DERIVED_COLUMNS).where(results.c.adhoc.is_(False)).order_by(results.c.slot_at)
    stream = await conn.stream(query.execution_options(yield_per=batch))
    try:
        async for part in stream.partitions(batch):
            yield [derived_from(r) for r in part]
    finally:  # cut off mid-read, the server-side cursor is closed all the same
        await stream.close()


# --- the writer and its recovery ----------------------------------------------------------


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


async def spool_position(conn: AsyncConnection, spool: str) -> int:
    """How far into the spool file named ``spool`` the database has committed (0: not)."""
    query = select(spool_marks.c.position).where(spool_marks.c.spool == spool)
    return (await conn.execute(query)).scalar_one_or_none() or 0


async def stored_probe_ids(conn: AsyncConnection, probe_ids: Sequence[str]) -> set[str]:
    """Those of ``probe_ids`` that are stored."""
    query = select(probes.c.probe_id).where(probes.c.probe_id.in_(probe_ids))
    return {r.probe_id for r in await conn.execute(query)}


async def first_sightings(
    conn: AsyncConnection, probe_ids: Sequence[str], *, not_node: str | None, other_nodes: bool
) -> dict[Pair, tuple[datetime, int]]:
    """The first stored sighting and the copies, per (probe id, destination); with
    ``other_nodes``, only those of nodes other than ``not_node``."""
    found: dict[Pair, tuple[datetime, int]] = {}
    ids = list(probe_ids)
    for start in range(0, len(ids), _IDS):
        query = (
            select(
                sightings.c.probe_id,
                sightings.c.destination,
                func.min(sightings.c.seen_at).label("first"),
                func.sum(sightings.c.count).label("copies"),
            )
            .where(sightings.c.probe_id.in_(ids[start : start + _IDS]))
            .group_by(sightings.c.probe_id, sightings.c.destination)
        )
        if other_nodes:
            query = query.where(sightings.c.node.is_distinct_from(not_node))
        for r in await conn.execute(query):
            found[(r.probe_id, r.destination)] = (_aware(r.first), int(r.copies))
    return found


async def unresolved_probes(
    conn: AsyncConnection,
    *,
    since: datetime,
    deadline_before: datetime | None = None,
    not_node: str | None = None,
    other_nodes: bool = False,
) -> list[StoredProbe]:
    """Probes claimed since ``since``, oldest first, with the destinations they have results
    for; with ``deadline_before``, only those overdue then; with ``other_nodes``, only those
    of nodes other than ``not_node``."""
    query = (
        select(probes, results.c.destination)
        .outerjoin(results, results.c.probe_id == probes.c.probe_id)
        .where(probes.c.claimed_at >= since)
        .order_by(probes.c.claimed_at)
    )
    if deadline_before is not None:
        query = query.where(probes.c.deadline_at < deadline_before)
    if other_nodes:
        query = query.where(probes.c.node.is_distinct_from(not_node))
    found: dict[str, tuple[Any, set[str]]] = {}
    for row in await conn.execute(query):
        entry = found.setdefault(row.probe_id, (row, set()))
        if row.destination is not None:
            entry[1].add(row.destination)
    return [_stored_probe(row, frozenset(done)) for row, done in found.values()]


def _stored_probe(row: Any, resolved: frozenset[str]) -> StoredProbe:
    return StoredProbe(
        row.probe_id, row.flow, row.slot_at, row.claimed_at, row.deadline_at,
        row.sent_at, row.send_reason, row.node, resolved,
    )  # fmt: skip
