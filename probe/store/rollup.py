"""Hourly rollups and incidents, kept as results are written, and rebuilt from raw rows.

Both are derived from results with the same two functions, `accumulate` and `Incidents`,
whether incrementally (each store batch) or by `rebuild`, so a rebuild gives identical
numbers. Only results that were newly inserted count, so a replayed result changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import Outcome
from probe.store.sketch import Sketch
from probe.store.tables import incidents, results, rollups

OUTCOMES = tuple(o.value for o in Outcome)
Key = tuple[str, str, datetime]


@dataclass(frozen=True, slots=True)
class Row:
    """The part of a result that rollups and incidents need."""

    flow: str
    destination: str
    slot: datetime
    outcome: str
    latency: float | None
    maintenance: bool


@dataclass(slots=True)
class Hour:
    """One rollup row in the making."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    maintenance: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    latency_max: float | None = None

    def add(self, row: Row) -> None:
        if row.maintenance:
            self.maintenance += 1
            return
        self.counts[row.outcome] += 1
        if row.latency is not None and row.outcome in ("delivered", "late"):
            self.sketch.add(row.latency)
            self.latency_max = max(row.latency, self.latency_max or 0.0)

    def merge_into(self, stored: Any) -> dict[str, Any]:
        """Column values of ``stored`` (a row, or None) plus this hour."""
        sketch = Sketch.from_json(stored.latency) if stored is not None else Sketch()
        sketch.merge(self.sketch)
        values: dict[str, Any] = {
            name: (getattr(stored, name) if stored is not None else 0) + self.counts[name]
            for name in OUTCOMES
        }
        values["maintenance"] = (stored.maintenance if stored is not None else 0) + self.maintenance
        values["latency_count"] = sketch.count
        maxima = [m for m in (self.latency_max, stored.latency_max if stored else None) if m]
        values["latency_max"] = max(maxima) if maxima else None
        values["latency"] = sketch.to_json()
        return values


def hour_of(slot: datetime) -> datetime:
    return slot.replace(minute=0, second=0, microsecond=0)


def accumulate(rows: Iterable[Row], into: dict[Key, Hour] | None = None) -> dict[Key, Hour]:
    hours = {} if into is None else into
    last_slot, last_hour = None, None
    for row in rows:
        if row.slot != last_slot:  # rows come in slot order: one hour_of per slot
            last_slot, last_hour = row.slot, hour_of(row.slot)
        assert last_hour is not None
        key = (row.flow, row.destination, last_hour)
        hour = hours.get(key)
        if hour is None:
            hour = hours[key] = Hour()
        hour.add(row)
    return hours


async def apply(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Add newly written results to the rollups and incidents, in the caller's transaction."""
    for key, hour in accumulate(rows).items():
        await _merge_hour(conn, key, hour)
    await Incidents(conn).feed(rows)


async def _merge_hour(conn: AsyncConnection, key: Key, hour: Hour) -> None:
    flow, destination, start = key
    where = and_(
        rollups.c.flow == flow, rollups.c.destination == destination, rollups.c.hour == start
    )
    stored = (await conn.execute(select(rollups).where(where).with_for_update())).first()
    values = hour.merge_into(stored)
    if stored is None:
        await conn.execute(
            insert(rollups).values(flow=flow, destination=destination, hour=start, **values)
        )
    else:
        await conn.execute(update(rollups).where(where).values(**values))


class Incidents:
    """The incident state machine: consecutive bad results form one incident.

    Maintenance results neither open nor close an incident. ``cause`` is the outcome of the
    first bad result.
    """

    def __init__(self, conn: AsyncConnection | None) -> None:
        self.conn = conn
        self.open: dict[tuple[str, str], dict[str, Any]] = {}
        self.done: list[dict[str, Any]] = []
        # Keys already looked up: the database copy is stale once this batch changed it.
        self.loaded: set[tuple[str, str]] = set()

    async def feed(self, rows: Sequence[Row]) -> None:
        for row in sorted((r for r in rows if not r.maintenance), key=lambda r: r.slot):
            key = (row.flow, row.destination)
            current = await self._current(key)
            if row.outcome != "delivered":
                self._bad(key, current, row)
            elif current is not None and row.slot > current["last_bad_at"]:
                current["end_at"] = row.slot
                self.done.append(self.open.pop(key))
        if self.conn is not None:
            await self._save()

    def _bad(self, key: tuple[str, str], current: dict[str, Any] | None, row: Row) -> None:
        if current is None:
            self.open[key] = {
                "id": None, "flow": row.flow, "destination": row.destination,
                "start_at": row.slot, "last_bad_at": row.slot, "end_at": None,
                "cause": row.outcome, "bad_results": 1,
            }  # fmt: skip
            return
        current["bad_results"] += 1
        current["last_bad_at"] = max(current["last_bad_at"], row.slot)
        current["start_at"] = min(current["start_at"], row.slot)

    async def _current(self, key: tuple[str, str]) -> dict[str, Any] | None:
        if key in self.open:
            return self.open[key]
        if self.conn is None or key in self.loaded:
            return None
        self.loaded.add(key)
        query = (
            select(incidents)
            .where(incidents.c.flow == key[0], incidents.c.destination == key[1])
            .where(incidents.c.end_at.is_(None))
            .with_for_update()
        )
        found = (await self.conn.execute(query)).first()
        if found is None:
            return None
        self.open[key] = dict(found._mapping)
        return self.open[key]

    async def _save(self) -> None:
        assert self.conn is not None
        for incident in [*self.done, *self.open.values()]:
            values = {k: v for k, v in incident.items() if k != "id"}
            if incident["id"] is None:
                await self.conn.execute(insert(incidents).values(**values))
            else:
                statement = update(incidents).where(incidents.c.id == incident["id"])
                await self.conn.execute(statement.values(**values))


async def rebuild(conn: AsyncConnection, *, batch: int = 50_000) -> int:
    """Recompute every rollup and incident from the raw results; returns the results read."""
    await conn.execute(delete(rollups))
    await conn.execute(delete(incidents))
    hours: dict[Key, Hour] = {}
    machine = Incidents(None)
    query = select(
        results.c.flow, results.c.destination, results.c.slot_at, results.c.outcome,
        results.c.latency_s, results.c.maintenance,
    ).order_by(results.c.slot_at)  # fmt: skip
    read = 0
    stream = await conn.stream(query.execution_options(yield_per=batch))
    async for part in stream.partitions(batch):
        rows = [Row(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in part]
        accumulate(rows, hours)
        await machine.feed(rows)
        read += len(rows)
    values = [
        {"flow": f, "destination": d, "hour": h, **hour.merge_into(None)}
        for (f, d, h), hour in hours.items()
    ]
    for start in range(0, len(values), batch):
        await conn.execute(insert(rollups), values[start : start + batch])
    found = [*machine.done, *machine.open.values()]
    for incident in found:
        incident.pop("id", None)
    if found:
        await conn.execute(insert(incidents), found)
    return read
