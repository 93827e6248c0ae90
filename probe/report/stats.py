"""The monthly report: every number in the JSON contract, from rollups and incidents.

Month boundaries are local midnight in the configured time zone, so October 2026 in
Copenhagen has 745 hours and March 2026 has 743. Definitions (also in docs/report.md):

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

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config.models import Config, FlowSpec, resolve_flows
from probe.config.slots import expected_slots
from probe.config.windows import occurrences, windows_for
from probe.report.models import (
    MONTH_PATTERN,
    Day,
    Incident,
    Latency,
    MonthlyReport,
    Outcomes,
    Percentiles,
    Period,
    PreviousMonth,
    ReportRow,
    Slo,
    Window,
)
from probe.report.written import describe, written_notices
from probe.store import queries
from probe.store.queries import StoredIncident
from probe.store.totals import Totals

Key = tuple[str, str]


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


async def monthly_report(
    engine: AsyncEngine, config: Config, month_label: str, *, now: datetime | None = None
) -> MonthlyReport:
    """The monthly report from the store behind ``engine`` (a `ValueError` for a bad month)."""
    tz = ZoneInfo(config.timezone)
    month = Month.parse(month_label, tz)
    now = now or datetime.now(UTC)
    until = min(month.end, max(now, month.start))
    totals, daily = await _rollups(engine, month)
    previous, _ = await _rollups(engine, month.previous())
    found = await _incidents(engine, month.start, until)
    notices = await written_notices(engine, month.start, until)
    specs = _slo_specs(config)
    flows = {flow.name: flow for flow in resolve_flows(config)}
    rows = []
    for key in sorted(set(specs) | set(totals)):
        objective, latency = specs.get(key, (config.defaults.slo.objective, None))
        rows.append(
            _row(
                key,
                totals.get(key, Totals()),
                daily.get(key, {}),
                found.get(key, []),
                previous.get(key),
                month=month,
                until=until,
                now=now,
                flow=flows.get(key[0]),
                slo=(objective or 0.995, latency or config.defaults.slo.latency or 30.0),
                windows=_maintenance(config, key[0], month),
            )
        )
    period = Period(
        start=month.local(month.start),
        end=month.local(month.end),
        hours=month.hours,
        measured_until=month.local(until),
    )
    return MonthlyReport(
        month=month.label,
        timezone=config.timezone,
        generated_at=month.local(now),
        period=period,
        partial=now < month.end or any(row.partial for row in rows),
        rows=tuple(rows),
        notices=describe(notices, rows, tz=tz, until=until),
    )


async def build_report(
    engine: AsyncEngine, config: Config, month_label: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """The monthly report as the JSON contract (a dict): `monthly_report`, dumped."""
    report = await monthly_report(engine, config, month_label, now=now)
    return report.model_dump(mode="json")


def _measurement(
    totals: Totals, flow: FlowSpec | None, month: Month, now: datetime
) -> dict[str, Any]:
    """A row's coverage, measured and not-measured time, and whether it is partial."""
    expected = expected_slots(flow, month.start, month.end, month.tz) if flow else None
    measured_s = min(totals.measured_s, month.seconds)
    started = totals.first_hour
    return {
        "expected_slots": expected,
        "measured_slots": totals.measured_slots,
        "coverage": min(1.0, totals.measured_slots / expected) if expected else None,
        "measured_seconds": measured_s,
        "not_measured_seconds": month.seconds - measured_s,
        "not_measured_probes": totals.not_measured,
        "first_measured": month.local(started) if started is not None else None,
        "partial": (started is not None and started > month.start) or now < month.end,
    }


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
    """Month and day totals per flow and destination; the month is the sum of its days."""
    async with engine.connect() as conn:
        daily = await queries.daily_totals(
            conn, local_days(month), start=month.start, end=month.end
        )
    totals: dict[Key, Totals] = {}
    for key, by_day in daily.items():
        total = totals[key] = Totals()
        for one in by_day.values():
            total.add(one)
    return totals, daily


async def _incidents(
    engine: AsyncEngine, start: datetime, until: datetime
) -> dict[Key, list[StoredIncident]]:
    async with engine.connect() as conn:
        return await queries.incidents_between(conn, start, until)


def _maintenance(config: Config, flow: str, month: Month) -> list[Window]:
    listed = []
    for window in windows_for(flow, config.maintenance):
        for start, end in occurrences(window, month.start, month.end, month.tz):
            if start < month.end and end > month.start:
                listed.append((start, end, window.name))
    return [
        Window(name=name, start=month.local(start), end=month.local(end))
        for start, end, name in sorted(listed, key=lambda w: w[0])
    ]


def _row(
    key: Key,
    totals: Totals,
    days: dict[date, Totals],
    found: list[StoredIncident],
    previous: Totals | None,
    *,
    month: Month,
    until: datetime,
    now: datetime,
    flow: FlowSpec | None,
    slo: tuple[float, float],
    windows: list[Window],
) -> ReportRow:
    objective, latency_slo = slo
    clipped = [i for i in (_clip(i, month, until) for i in found) if i.duration_seconds > 0]
    # Over measured time only, as the rollups add it up: each slot outside maintenance
    # stands for its span, and the bad ones' spans are the incidents' time.
    measured_seconds, down = totals.counted_s, totals.down_s
    availability = totals.availability
    no_data = totals.counted == 0 and totals.maintenance == 0
    budget = None if availability is None else (1 - availability) / (1 - objective)
    met = None if availability is None else availability >= objective
    return ReportRow(
        flow=key[0],
        destination=key[1],
        probes=totals.measured_slots,
        outcomes=Outcomes(**totals.counts),
        excluded_maintenance=totals.maintenance,
        availability=availability,
        time_availability=None if no_data or measured_seconds <= 0 else 1 - down / measured_seconds,
        slo=Slo(
            objective=objective, latency_seconds=latency_slo, met=met, error_budget_used=budget
        ),
        latency_seconds=_latency(totals),
        incidents=tuple(clipped),
        mttr_seconds=sum(i.duration_seconds for i in clipped) / len(clipped) if clipped else None,
        mtbf_seconds=(measured_seconds - down) / len(clipped) if clipped else None,
        previous_month=PreviousMonth(availability=previous.availability if previous else None),
        maintenance=tuple(windows),
        no_data=no_data,
        daily=_daily(days, flow, month),
        **_measurement(totals, flow, month, now),
    )


def _clip(incident: StoredIncident, month: Month, until: datetime) -> Incident:
    start = max(incident.start_at, month.start)
    end = min(incident.end_at or until, until)
    return Incident(
        start=month.local(start),
        end=month.local(end),
        duration_seconds=max(0.0, (end - start).total_seconds()),
        cause=incident.cause,
        ended_by=incident.ended_by,
        open=incident.end_at is None or incident.end_at > until,
    )


def _latency(totals: Totals) -> Latency | None:
    """Percentiles from the sketch, within 1 %; the maximum is exact."""
    sketch = totals.sketch
    if sketch.count == 0:
        return None
    return Latency(
        p50=sketch.quantile(0.50),
        p95=sketch.quantile(0.95),
        p99=sketch.quantile(0.99),
        max=totals.latency_max,
    )


def _daily(days: dict[date, Totals], flow: FlowSpec | None, month: Month) -> tuple[Day, ...]:
    """Every local day of the month, with its coverage and time not measured."""
    out = []
    begin = month.start
    for day, end in local_days(month):
        totals = days.get(day, Totals())
        want = expected_slots(flow, begin, end, month.tz) if flow else None
        length = (end - begin).total_seconds()
        latency = _latency(totals)
        out.append(
            Day(
                date=day,
                probes=totals.measured_slots,
                availability=totals.availability,
                latency_seconds=None
                if latency is None
                else Percentiles(p50=latency.p50, p95=latency.p95, p99=latency.p99),
                coverage=min(1.0, totals.measured_slots / want) if want else None,
                not_measured_seconds=length - min(totals.measured_s, length),
            )
        )
        begin = end
    return tuple(out)
