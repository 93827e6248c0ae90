"""The monthly report: every number in the JSON contract, from rollups and incidents.

Month boundaries are local midnight in the configured time zone, so October 2026 in
Copenhagen has 745 hours and March 2026 has 743. Definitions (also in the README):

- ``probes``: results for the flow and destination whose slot lies in the month;
- ``outcomes``: those outside maintenance, by outcome; ``excluded_maintenance`` the rest;
- ``availability`` = delivered / (probes - excluded_maintenance); no results: null;
- ``time_availability``: the share of the *measured* time outside maintenance that lies in
  no incident. Each measured slot stands for its span (the flow's interval); time in which
  nothing was measured is neither available nor unavailable;
- ``coverage`` = measured slots / the slots the schedule has in the month;
  ``not_measured_seconds``: the month's seconds that no measured slot stands for (before
  monitoring began, while the daemon was down, after now, probe-side faults);
- an incident is a run of consecutive bad results in slot order, from the first bad slot
  to the slot of the next good result or to where measurement stopped (clipped to the
  month);
- MTTR: the mean incident duration; MTBF: measured seconds outside maintenance and
  incidents, divided by the number of incidents;
- latency percentiles over delivered and late results, within 1% (`probe.store.sketch`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config.models import Config, FlowSpec, resolve_flows
from probe.config.windows import Interval, occurrences, windows_for
from probe.engine.schedule import expected_slots
from probe.store.rollup import OUTCOMES
from probe.store.sketch import Sketch
from probe.store.tables import incidents, rollups

Key = tuple[str, str]
# The months a report can be made for: no probe ran before 1970, and the bound keeps every
# month boundary within what datetime can hold in any time zone.
MONTH_PATTERN = "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"


@dataclass(slots=True)
class Totals:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    maintenance: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    latency_max: float | None = None
    not_measured: int = 0  # probe-side faults
    measured_s: float = 0.0  # seconds measured slots stand for, maintenance included
    counted_s: float = 0.0  # the same outside maintenance
    down_s: float = 0.0  # the part of counted_s in incidents
    first_hour: datetime | None = None  # the first hour with a measured result

    @property
    def counted(self) -> int:
        return sum(self.counts.values())

    @property
    def measured_slots(self) -> int:
        return self.counted + self.maintenance

    def add(self, other: Totals) -> None:
        for name in OUTCOMES:
            self.counts[name] += other.counts[name]
        self.maintenance += other.maintenance
        self.sketch.merge(other.sketch)
        if other.latency_max is not None:
            self.latency_max = max(other.latency_max, self.latency_max or 0.0)
        self.not_measured += other.not_measured
        self.measured_s += other.measured_s
        self.counted_s += other.counted_s
        self.down_s += other.down_s
        if other.first_hour is not None:
            self.first_hour = min(other.first_hour, self.first_hour or other.first_hour)

    @property
    def availability(self) -> float | None:
        return self.counts["delivered"] / self.counted if self.counted else None


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in a time zone, as UTC bounds."""

    label: str
    start: datetime
    end: datetime
    tz: ZoneInfo

    @classmethod
    def parse(cls, label: str, tz: ZoneInfo) -> Month:
        """``Month.parse("2026-10", tz)``; a `ValueError` for anything but YYYY-MM from
        1970-01 to 2999-12 (`MONTH_PATTERN`, which the OpenAPI document gives too)."""
        if re.fullmatch(MONTH_PATTERN, label) is None:
            raise ValueError(f"invalid month {label!r}: use YYYY-MM, from 1970-01 to 2999-12")
        year, month = (int(part) for part in label.split("-"))
        return cls._of(year, month, tz)

    @classmethod
    def _of(cls, year: int, month: int, tz: ZoneInfo) -> Month:
        first = datetime(year, month, 1, tzinfo=tz)
        following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        label = f"{year:04d}-{month:02d}"
        return cls(label, first.astimezone(UTC), following.astimezone(UTC), tz)

    def previous(self) -> Month:
        """The month before (1969-12 for 1970-01: it compares with nothing, but exists)."""
        local = self.start.astimezone(self.tz)
        year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
        return Month._of(year, month, self.tz)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def local(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).isoformat(timespec="seconds")


async def build_report(
    engine: AsyncEngine, config: Config, month_label: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """The monthly report as the JSON contract (a dict), from the store behind ``engine``."""
    tz = ZoneInfo(config.timezone)
    month = Month.parse(month_label, tz)
    now = now or datetime.now(UTC)
    until = min(month.end, max(now, month.start))
    totals, daily = await _rollups(engine, month)
    previous, _ = await _rollups(engine, month.previous())
    found = await _incidents(engine, month.start, until)
    specs = _slo_specs(config)
    flows = {flow.name: flow for flow in resolve_flows(config)}
    keys = sorted(set(specs) | set(totals))
    rows = []
    for key in keys:
        objective, latency = specs.get(key, (config.defaults.slo.objective, None))
        row = _row(
            key,
            totals.get(key, Totals()),
            daily.get(key, {}),
            found.get(key, []),
            previous.get(key),
            month=month,
            until=until,
            slo=(objective or 0.995, latency or config.defaults.slo.latency or 30.0),
            windows=_maintenance(config, key[0], month, until),
        )
        _coverage(row, totals.get(key, Totals()), daily.get(key, {}), flows.get(key[0]), month)
        row["partial"] = row["partial"] or now < month.end
        rows.append(row)
    return {
        "month": month.label,
        "timezone": config.timezone,
        "generated_at": month.local(now),
        "period": {
            "start": month.local(month.start),
            "end": month.local(month.end),
            "hours": month.hours,
            "measured_until": month.local(until),
        },
        "partial": now < month.end or any(row["partial"] for row in rows),
        "rows": rows,
    }


def _coverage(
    row: dict[str, Any],
    totals: Totals,
    days: dict[date, Totals],
    flow: FlowSpec | None,
    month: Month,
) -> None:
    """Add coverage, measured and not-measured time to ``row`` and its days."""
    expected = expected_slots(flow, month.start, month.end, month.tz) if flow else None
    measured_s = min(totals.measured_s, month.seconds)
    row["expected_slots"] = expected
    row["measured_slots"] = totals.measured_slots
    row["coverage"] = min(1.0, totals.measured_slots / expected) if expected else None
    row["measured_seconds"] = measured_s
    row["not_measured_seconds"] = month.seconds - measured_s
    row["not_measured_probes"] = totals.not_measured
    started = totals.first_hour
    row["first_measured"] = month.local(started) if started is not None else None
    row["partial"] = started is not None and started > month.start
    bounds = local_days(month)
    begin = month.start
    for item, (day, end) in zip(row["daily"], bounds, strict=True):
        one = days.get(day, Totals())
        want = expected_slots(flow, begin, end, month.tz) if flow else None
        length = (end - begin).total_seconds()
        item["coverage"] = min(1.0, one.measured_slots / want) if want else None
        item["not_measured_seconds"] = length - min(one.measured_s, length)
        begin = end


def _slo_specs(config: Config) -> dict[Key, tuple[float, float]]:
    specs = {}
    for flow in resolve_flows(config):
        for dest in flow.destinations:
            specs[(flow.name, dest.name)] = (dest.slo_objective, dest.slo_latency)
        if flow.is_check:
            specs[(flow.name, "")] = (flow.slo_objective, flow.slo_latency)
    return specs


def local_days(month: Month) -> list[tuple[date, datetime]]:
    """(local date, UTC start of the next local day) for every day of the month."""
    out = []
    day = month.start.astimezone(month.tz).date()
    while datetime.combine(day, time(), tzinfo=month.tz).astimezone(UTC) < month.end:
        following = day + timedelta(days=1)
        out.append((day, datetime.combine(following, time(), tzinfo=month.tz).astimezone(UTC)))
        day = following
    return out


async def _rollups(
    engine: AsyncEngine, month: Month
) -> tuple[dict[Key, Totals], dict[Key, dict[date, Totals]]]:
    """Month and day totals per flow and destination.

    The database groups the hourly rows by local day (a CASE over the UTC instants of local
    midnights, so any zone and DST works) and joins each day's sketches into one JSON text,
    parsed once; the month is the sum of its days. Parsing and merging 745 hourly sketches
    per pair in Python took three times the whole report's budget (bench/RESULTS.md).
    """
    days = local_days(month)
    c = rollups.c
    day = case(*[(c.hour < end, i) for i, (_, end) in enumerate(days)], else_=len(days) - 1)
    concat = func.group_concat if engine.dialect.name == "sqlite" else func.string_agg
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
        .where(c.hour >= month.start, c.hour < month.end)
        .group_by(c.flow, c.destination, day)
    )  # fmt: skip
    daily: dict[Key, dict[date, Totals]] = defaultdict(dict)
    async with engine.connect() as conn:
        for record in await conn.execute(query):
            flow, dest, index = record[0], record[1], record[2]
            sums = record[3 : 3 + len(OUTCOMES)]
            maintenance, top, sketches, *time = record[3 + len(OUTCOMES) :]
            merged: dict[str, int] = {}
            get = merged.get
            for part in json.loads("[" + sketches + "]"):
                for bucket, n in part.items():
                    merged[bucket] = get(bucket, 0) + n
            counts = dict(zip(OUTCOMES, (int(v) for v in sums), strict=True))
            sketch = Sketch({int(k): v for k, v in merged.items()})
            not_measured, measured_s, counted_s, down_s, first = time
            if first is None and sum(counts.values()) + int(maintenance) > 0:
                first = days[index][1]  # measured, but spans unknown (results before 0005)
            daily[(flow, dest)][days[index][0]] = Totals(
                counts, int(maintenance), sketch, top,
                int(not_measured or 0), float(measured_s or 0), float(counted_s or 0),
                float(down_s or 0), _hour(first),
            )  # fmt: skip
    totals: dict[Key, Totals] = {}
    for key, by_day in daily.items():
        total = totals[key] = Totals()
        for one in by_day.values():
            total.add(one)
    return totals, dict(daily)


def _hour(value: Any) -> datetime | None:
    """An hour from an aggregate: SQLite returns min(hour) as naive UTC text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _incidents(engine: AsyncEngine, start: datetime, until: datetime) -> dict[Key, list[Any]]:
    query = (
        select(incidents)
        .where(incidents.c.start_at < until)
        .where(or_(incidents.c.end_at.is_(None), incidents.c.end_at > start))
        .order_by(incidents.c.start_at)
    )
    found: dict[Key, list[Any]] = defaultdict(list)
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            found[(row.flow, row.destination)].append(row)
    return dict(found)


def _maintenance(config: Config, flow: str, month: Month, until: datetime) -> list[dict[str, Any]]:
    listed = []
    for window in windows_for(flow, config.maintenance):
        for start, end in occurrences(window, month.start, month.end, month.tz):
            if start < month.end and end > month.start:
                listed.append({"name": window.name, "start": start, "end": end})
    return sorted(listed, key=lambda w: w["start"])


def _overlap(start: datetime, end: datetime, spans: Sequence[Interval]) -> float:
    return sum(max(0.0, (min(end, e) - max(start, s)).total_seconds()) for s, e in spans)


def _row(
    key: Key,
    totals: Totals,
    days: dict[date, Totals],
    found: list[Any],
    previous: Totals | None,
    *,
    month: Month,
    until: datetime,
    slo: tuple[float, float],
    windows: list[dict[str, Any]],
) -> dict[str, Any]:
    objective, latency_slo = slo
    clipped = [_clip(i, month, until) for i in found]
    clipped = [i for i in clipped if i["duration_seconds"] > 0]
    # Over measured time only, as the rollups add it up: each slot outside maintenance
    # stands for its span, and the bad ones' spans are the incidents' time.
    measured_seconds, down = totals.counted_s, totals.down_s
    availability = totals.availability
    no_data = totals.counted == 0 and totals.maintenance == 0
    budget = None if availability is None else (1 - availability) / (1 - objective)
    sketch = totals.sketch
    return {
        "flow": key[0],
        "destination": key[1],
        "probes": totals.counted + totals.maintenance,
        "outcomes": dict(totals.counts),
        "excluded_maintenance": totals.maintenance,
        "availability": availability,
        "time_availability": None
        if no_data or measured_seconds <= 0
        else 1 - down / measured_seconds,
        "slo": {
            "objective": objective,
            "latency_seconds": latency_slo,
            "met": None if availability is None else availability >= objective,
            "error_budget_used": budget,
        },
        "latency_seconds": _percentiles(sketch, totals.latency_max),
        "incidents": [{k: v for k, v in i.items() if not k.startswith("_")} for i in clipped],
        "mttr_seconds": sum(i["duration_seconds"] for i in clipped) / len(clipped)
        if clipped
        else None,
        "mtbf_seconds": (measured_seconds - down) / len(clipped) if clipped else None,
        "previous_month": {"availability": previous.availability if previous else None},
        "maintenance": [
            {"name": w["name"], "start": month.local(w["start"]), "end": month.local(w["end"])}
            for w in windows
        ],
        "no_data": no_data,
        "daily": _daily(days, month),
    }


def _clip(incident: Any, month: Month, until: datetime) -> dict[str, Any]:
    start = max(incident.start_at, month.start)
    end = min(incident.end_at or until, until)
    return {
        "start": month.local(start),
        "end": month.local(end),
        "duration_seconds": max(0.0, (end - start).total_seconds()),
        "cause": incident.cause,
        "ended_by": incident.ended_by,
        "open": incident.end_at is None or incident.end_at > until,
        "_start": start,
        "_end": end,
    }


def _percentiles(sketch: Sketch, latency_max: float | None) -> dict[str, float | None] | None:
    if sketch.count == 0:
        return None
    return {
        "p50": sketch.quantile(0.50),
        "p95": sketch.quantile(0.95),
        "p99": sketch.quantile(0.99),
        "max": latency_max,
    }


def _daily(days: dict[date, Totals], month: Month) -> list[dict[str, Any]]:
    out = []
    day = month.start.astimezone(month.tz).date()
    last = (month.end - timedelta(seconds=1)).astimezone(month.tz).date()
    while day <= last:
        totals = days.get(day, Totals())
        percentiles = _percentiles(totals.sketch, totals.latency_max)
        out.append(
            {
                "date": day.isoformat(),
                "probes": totals.counted + totals.maintenance,
                "availability": totals.availability,
                "latency_seconds": None
                if percentiles is None
                else {k: v for k, v in percentiles.items() if k != "max"},
            }
        )
        day += timedelta(days=1)
    return out
