"""Hourly rollups, kept as results are written, and rebuilt from raw rows.

Rollups are sums, so the order in which results arrive does not matter: each store batch
adds its newly inserted results with `accumulate`, and `rebuild` adds all of them with the
same function, so a rebuild gives identical numbers. A replayed result changes nothing.
Incidents depend on slot order, and are derived behind a watermark (`probe.store.incidents`).

Each measured result stands for its slot's span (the flow's interval) of measured time,
split across the hours it covers; a probe-side fault is counted as not measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import Outcome, measured, utcnow
from probe.store import bulk, incidents, queries
from probe.store.queries import HourKey as Key
from probe.store.rows import OUTCOMES
from probe.store.rows import Derived as Row
from probe.store.sketch import Sketch
from probe.store.tables import rollups

__all__ = ["OUTCOMES", "Hour", "Key", "Row", "accumulate", "apply", "hour_of", "rebuild"]


@dataclass(slots=True)
class Hour:
    """One rollup row in the making."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    maintenance: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    latency_max: float | None = None
    not_measured: int = 0
    measured_s: float = 0.0
    counted_s: float = 0.0
    down_s: float = 0.0

    def add(self, row: Row) -> None:
        if not measured(row.reason):
            self.not_measured += 1
            return
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
        for name in ("not_measured", "measured_s", "counted_s", "down_s"):
            before = getattr(stored, name) if stored is not None else 0
            values[name] = before + getattr(self, name)
        values["latency_count"] = sketch.count
        maxima = [m for m in (self.latency_max, stored.latency_max if stored else None) if m]
        values["latency_max"] = max(maxima) if maxima else None
        values["latency"] = sketch.to_json()
        return values


def hour_of(slot: datetime) -> datetime:
    return slot.replace(minute=0, second=0, microsecond=0)


_HOUR = timedelta(hours=1)


def accumulate(rows: Iterable[Row], into: dict[Key, Hour] | None = None) -> dict[Key, Hour]:
    """Add ``rows`` to their hours: counts to the hour of the slot, measured time to every
    hour the slot's span covers."""
    hours = {} if into is None else into
    last_slot, last_hour = None, None
    for row in rows:
        if row.slot != last_slot:  # rows come mostly in slot order: one hour_of per slot
            last_slot, last_hour = row.slot, hour_of(row.slot)
        assert last_hour is not None
        hour = _hour(hours, (row.flow, row.destination, last_hour))
        hour.add(row)
        if row.span and measured(row.reason):
            _spread(hours, row, last_hour)
    return hours


def _hour(hours: dict[Key, Hour], key: Key) -> Hour:
    hour = hours.get(key)
    if hour is None:
        hour = hours[key] = Hour()
    return hour


def _spread(hours: dict[Key, Hour], row: Row, first: datetime) -> None:
    """The slot's measured time, split at hour boundaries."""
    assert row.span
    start, end = row.slot, row.slot + timedelta(seconds=row.span)
    bad = not row.maintenance and row.outcome != Outcome.DELIVERED.value
    hour_start = first
    while start < end:
        hour_end = hour_start + _HOUR
        seconds = (min(end, hour_end) - start).total_seconds()
        hour = _hour(hours, (row.flow, row.destination, hour_start))
        hour.measured_s += seconds
        if not row.maintenance:
            hour.counted_s += seconds
            if bad:
                hour.down_s += seconds
        start = hour_start = hour_end


async def apply(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """Add newly written results to the rollups, and move the incident watermarks of their
    flows and destinations, in the caller's transaction.

    The rollups cost a few statements whatever the batch's size: one SELECT ... FOR UPDATE
    of the stored hours it touches, and one INSERT and one UPDATE of many rows
    (`probe.store.bulk`); a statement per key cost 1 s a batch.
    """
    if not rows:
        return
    hours = accumulate(rows)
    stored = await queries.locked_hours(conn, list(hours))
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
            stored.update(await queries.locked_hours(conn, raced))
    changed = [key for key in hours if key in stored]
    params = [_key_values(key) | hours[key].merge_into(stored[key]) for key in changed]
    await bulk.update_rows(conn, rollups, params, key=_KEY_COLUMNS)
    await incidents.advance(conn, rows, now=utcnow())


_KEY_COLUMNS = ("flow", "destination", "hour")


def _key_values(key: Key) -> dict[str, Any]:
    return {"flow": key[0], "destination": key[1], "hour": key[2]}


async def rebuild(conn: AsyncConnection, *, batch: int = 50_000) -> int:
    """Recompute every rollup and incident from the raw results; returns the results read."""
    await conn.execute(delete(rollups))
    hours: dict[Key, Hour] = {}
    read = 0
    async for rows in queries.derived_results(conn, batch=batch):
        accumulate(rows, hours)
        read += len(rows)
    values = [
        {"flow": f, "destination": d, "hour": h, **hour.merge_into(None)}
        for (f, d, h), hour in hours.items()
    ]
    for start in range(0, len(values), batch):
        await conn.execute(insert(rollups), values[start : start + batch])
    await incidents.rebuild(conn, now=utcnow())
    return read
