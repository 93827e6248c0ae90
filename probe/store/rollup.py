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

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import Outcome
from probe.store import bulk
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


# Keys per statement: well under any backend's limit on bound parameters.
_CHUNK = 300


async def apply(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Add newly written results to the rollups and incidents, in the caller's transaction.

    A batch costs a few statements whatever its size: one SELECT ... FOR UPDATE of the
    stored hours it touches, one INSERT and one UPDATE of many rows (`probe.store.bulk`),
    and one SELECT of the open incidents of its flows (a statement per key cost 1 s a
    batch).
    """
    if not rows:
        return
    hours = accumulate(rows)
    stored = await _stored_hours(conn, list(hours))
    fresh = [key for key in hours if key not in stored]
    if fresh:
        # Another daemon may insert the same hour meanwhile: those are merged below.
        values = [_key_values(key) | hours[key].merge_into(None) for key in fresh]
        returned = await bulk.insert_rows(
            conn, rollups, values, returning=_KEY_COLUMNS, skip_conflicts=True
        )
        done = {(r.flow, r.destination, r.hour) for r in returned}
        raced = [key for key in fresh if key not in done]
        if raced:
            stored.update(await _stored_hours(conn, raced))
    changed = [key for key in hours if key in stored]
    params = [_key_values(key) | hours[key].merge_into(stored[key]) for key in changed]
    await bulk.update_rows(conn, rollups, params, key=_KEY_COLUMNS)
    await Incidents(conn).feed(rows)


_KEY_COLUMNS = ("flow", "destination", "hour")


def _key_values(key: Key) -> dict[str, Any]:
    return {"flow": key[0], "destination": key[1], "hour": key[2]}


async def _stored_hours(conn: AsyncConnection, keys: list[Key]) -> dict[Key, Any]:
    """The stored rows of ``keys``, locked: flows and hours in IN lists, keys in Python."""
    wanted = set(keys)
    found: dict[Key, Any] = {}
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
        self._changed: set[int] = set()  # id() of stored incidents this batch changed

    async def feed(self, rows: Sequence[Row]) -> None:
        counted = sorted((r for r in rows if not r.maintenance), key=lambda r: r.slot)
        await self._load({(r.flow, r.destination) for r in counted})
        for row in counted:
            key = (row.flow, row.destination)
            current = self.open.get(key)
            if row.outcome != "delivered":
                self._bad(key, current, row)
            elif current is not None and row.slot > current["last_bad_at"]:
                current["end_at"] = row.slot
                self._changed.add(id(current))
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
        self._changed.add(id(current))

    async def _load(self, keys: set[tuple[str, str]]) -> None:
        """The open incidents of ``keys`` not looked up yet, locked, in one query per chunk.

        Once looked up, the database copy is stale: this batch may have changed it.
        """
        wanted = keys - self.loaded
        self.loaded |= wanted
        if self.conn is None or not wanted:
            return
        flows = sorted({flow for flow, _ in wanted})
        for start in range(0, len(flows), _CHUNK):
            query = (
                select(incidents)
                .where(incidents.c.flow.in_(flows[start : start + _CHUNK]))
                .where(incidents.c.end_at.is_(None))
                .with_for_update()
            )
            for found in await self.conn.execute(query):
                key = (found.flow, found.destination)
                if key in wanted and key not in self.open:
                    self.open[key] = dict(found._mapping)

    async def _save(self) -> None:
        """Insert the new incidents and update the changed ones, a statement each."""
        assert self.conn is not None
        every = [*self.done, *self.open.values()]
        new = [{k: v for k, v in i.items() if k != "id"} for i in every if i["id"] is None]
        changed = [i for i in every if i["id"] is not None and id(i) in self._changed]
        await bulk.insert_rows(self.conn, incidents, new)
        await bulk.update_rows(self.conn, incidents, changed, key=("id",))


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
