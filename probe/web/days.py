"""The 90-day bar of the status page: one cell per local day, from the hourly rollups.

    >>> bar = await days_bar(conn, now=now, tz=ZoneInfo("Europe/Copenhagen"))
    >>> cells = bar.cells(("gs-adt", "labka"), today=status.hours)
    >>> len(cells), cells[-1].day == now.astimezone(tz).date()
    (90, True)

The complete days before today come from `probe.store.queries.daily_totals`: one query for
every flow and destination, grouped by local day in the database (any zone, any DST
change). They change only when a late result lands or the rollups are rebuilt, so
`DaysCache` reads them again only every `PAST_TTL` or when the local date turns. Today's
cell is summed from the 24-hour bar (`probe.web.status.Hour`), which reaches back past local
midnight, so the bar is as fresh as the snapshot without another query.

A day with nothing counted is *not measured* (grey, "no data"), never 0 %; a day whose
every result lay in maintenance is a maintenance day.
"""

from __future__ import annotations

import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from probe.model import Outcome
from probe.store import queries
from probe.store.totals import Totals
from probe.web.status import FAILED, Hour, State, cell_state

DAYS: Final = 90
PAST_TTL: Final = 300.0  # seconds; past days change only through late results or a rebuild
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Day:
    """One local day of a flow and destination: results counted outside maintenance,
    delivered, failed outright, and left out for maintenance."""

    day: date
    counted: int = 0
    delivered: int = 0
    failed: int = 0
    maintenance: int = 0

    @property
    def availability(self) -> float | None:
        return self.delivered / self.counted if self.counted else None

    def state(self, objective: float) -> State:
        """The cell colour, by the rule of the hourly cells (`probe.web.status.cell_state`)."""
        return cell_state(self, objective)


@dataclass(frozen=True, slots=True)
class DaysBar:
    """The complete days before ``today`` (local) per flow and destination."""

    today: date
    midnight: datetime  # UTC instant of today's local midnight
    past: Mapping[Pair, Mapping[date, Day]]

    def cells(self, pair: Pair, *, hours: Sequence[Hour]) -> tuple[Day, ...]:
        """`DAYS` cells, oldest first, today's summed from ``hours`` (the 24-hour bar)."""
        found = self.past.get(pair, {})
        first = self.today - timedelta(days=DAYS - 1)
        cells = [found.get(d) or Day(d) for d in _dates(first, self.today)]
        cells.append(_today(self.today, self.midnight, hours))
        return tuple(cells)


async def days_bar(conn: AsyncConnection, *, now: datetime, tz: ZoneInfo) -> DaysBar:
    """The past days of every flow and destination with rollups (one query)."""
    today = now.astimezone(tz).date()
    first = today - timedelta(days=DAYS - 1)
    bounds = [(d, _midnight(d + timedelta(days=1), tz)) for d in _dates(first, today)]
    midnight = _midnight(today, tz)
    totals = await queries.daily_totals(conn, bounds, start=_midnight(first, tz), end=midnight)
    past = {pair: {d: _day(d, t) for d, t in by_day.items()} for pair, by_day in totals.items()}
    return DaysBar(today=today, midnight=midnight, past=past)


@dataclass(slots=True)
class DaysCache:
    """`days_bar`, read again after `PAST_TTL` seconds or when the local date turns."""

    ttl: float = PAST_TTL
    _cached: tuple[float, DaysBar] | None = field(default=None)

    async def get(self, engine: AsyncEngine, *, now: datetime, tz: ZoneInfo) -> DaysBar:
        cached = self._cached
        fresh = cached is not None and clock.monotonic() - cached[0] < self.ttl
        if cached is not None and fresh and cached[1].today == now.astimezone(tz).date():
            return cached[1]
        async with engine.connect() as conn:
            bar = await days_bar(conn, now=now, tz=tz)
        self._cached = (clock.monotonic(), bar)
        return bar


def _dates(first: date, stop: date) -> list[date]:
    """Every date from ``first`` up to, not including, ``stop``."""
    return [first + timedelta(days=i) for i in range((stop - first).days)]


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def _day(day: date, totals: Totals) -> Day:
    counts = totals.counts
    return Day(
        day=day,
        counted=sum(counts.values()),
        delivered=counts.get(Outcome.DELIVERED.value, 0),
        failed=sum(counts.get(o.value, 0) for o in FAILED),
        maintenance=totals.maintenance,
    )


def _today(today: date, midnight: datetime, hours: Sequence[Hour]) -> Day:
    """Today so far: the hours of the 24-hour bar from local midnight on (as
    `probe.store.queries.daily_totals` assigns an hour to the day it starts in)."""
    since = [h for h in hours if h.start >= midnight]
    return Day(
        day=today,
        counted=sum(h.counted for h in since),
        delivered=sum(h.delivered for h in since),
        failed=sum(h.failed for h in since),
        maintenance=sum(h.maintenance for h in since),
    )
