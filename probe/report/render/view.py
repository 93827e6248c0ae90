"""The monthly report's JSON contract, read once into typed values for the renderers.

The renderers never index the raw dict themselves: this module is the one place that knows
field names, and that fills in fields older reports lack (``daily``, ``maintenance``,
``no_data``, and the measurement fields: ``coverage``, ``partial`` and the rest). A row is
*without data* when it says so or when its availability is null, so no renderer can mistake
an empty month for a perfect one. Measurement a report does not state is None (coverage,
slots, seconds) or False (partial), never a guess: an old report is not flagged partial.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

OUTCOMES: Final = ("delivered", "late", "lost", "send_error", "observe_error")


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in seconds; `max` is absent from the daily figures."""

    p50: float
    p95: float
    p99: float
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Span:
    """An incident (`label` is its cause) or a maintenance window (`label` is its name)."""

    start: str
    end: str
    label: str
    duration_seconds: float | None = None
    ended_by: str | None = None
    """How an incident ended: ``recovered``, ``not_measured`` (measurement stopped), or None."""
    open: bool = False
    """The incident was still going on when the report was generated."""


@dataclass(frozen=True, slots=True)
class Day:
    """One calendar day of a row; `availability` is None on a day without probes."""

    date: date
    probes: int
    availability: float | None
    latency: Latency | None
    coverage: float | None = None
    not_measured_seconds: float | None = None

    @property
    def not_measured(self) -> bool:
        """Nothing was measured that day: coverage 0, or no probes at all (older reports)."""
        return self.coverage == 0 or self.probes == 0

    @property
    def partly_measured(self) -> bool:
        """Some, but not all, of the day's scheduled probes were measured."""
        return self.coverage is not None and 0 < self.coverage < 1 and self.probes > 0


@dataclass(frozen=True, slots=True)
class Slo:
    """The objective and how the month went against it; None where there was no data."""

    objective: float | None
    latency_seconds: float | None
    met: bool | None
    error_budget_used: float | None


@dataclass(frozen=True, slots=True)
class Row:
    """One flow and destination over the month. `destination` is "" for a check."""

    flow: str
    destination: str
    probes: int
    outcomes: Mapping[str, int]
    excluded_maintenance: int
    availability: float | None
    time_availability: float | None
    slo: Slo
    latency: Latency | None
    incidents: tuple[Span, ...]
    mttr_seconds: float | None
    mtbf_seconds: float | None
    previous_availability: float | None
    maintenance: tuple[Span, ...]
    no_data: bool
    daily: tuple[Day, ...]
    coverage: float | None = None
    """Measured slots over the month's expected slots, capped at 1; None when unknown."""
    expected_slots: int | None = None
    measured_slots: int | None = None
    measured_seconds: float | None = None
    not_measured_seconds: float | None = None
    not_measured_probes: int | None = None
    """Results the prober itself failed (probe-side faults), counted as not measured."""
    partial: bool = False
    """Monitoring covered only part of the month (it began late, or the month was running)."""
    first_measured: str | None = None

    @property
    def measurement_known(self) -> bool:
        """The report states how much was measured (reports before coverage do not)."""
        known = (self.coverage, self.expected_slots, self.not_measured_seconds)
        return any(value is not None for value in known)


@dataclass(frozen=True, slots=True)
class Report:
    """The whole month: its rows plus when and where it was measured."""

    month: str
    timezone: str
    generated_at: str | None
    period_start: str | None
    period_end: str | None
    period_hours: float | None
    rows: tuple[Row, ...]
    partial: bool = False
    """The month had not ended when the report was generated, or a row is partial."""
    measured_until: str | None = None

    def days(self) -> list[date]:
        """Every calendar day of the month, so a chart shows missing days as gaps."""
        year, month = (int(part) for part in self.month.split("-"))
        count = calendar.monthrange(year, month)[1]
        return [date(year, month, number) for number in range(1, count + 1)]


def read_report(report: Mapping[str, Any]) -> Report:
    """The typed view of a report dict that follows the JSON contract."""
    period: Mapping[str, Any] = report.get("period") or {}
    return Report(
        month=str(report["month"]),
        timezone=str(report.get("timezone", "")),
        generated_at=report.get("generated_at"),
        period_start=period.get("start"),
        period_end=period.get("end"),
        period_hours=period.get("hours"),
        rows=tuple(_read_row(row) for row in report.get("rows", ())),
        partial=report.get("partial") is True,
        measured_until=_text(period.get("measured_until")),
    )


def _read_row(row: Mapping[str, Any]) -> Row:
    slo: Mapping[str, Any] = row.get("slo") or {}
    previous: Mapping[str, Any] = row.get("previous_month") or {}
    availability = _number(row.get("availability"))
    return Row(
        flow=str(row["flow"]),
        destination=str(row.get("destination") or ""),
        probes=int(row.get("probes") or 0),
        outcomes={name: int((row.get("outcomes") or {}).get(name) or 0) for name in OUTCOMES},
        excluded_maintenance=int(row.get("excluded_maintenance") or 0),
        availability=availability,
        time_availability=_number(row.get("time_availability")),
        slo=Slo(
            objective=_number(slo.get("objective")),
            latency_seconds=_number(slo.get("latency_seconds")),
            met=slo["met"] if isinstance(slo.get("met"), bool) else None,
            error_budget_used=_number(slo.get("error_budget_used")),
        ),
        latency=_latency(row.get("latency_seconds")),
        incidents=tuple(_read_incident(item) for item in row.get("incidents") or ()),
        mttr_seconds=_number(row.get("mttr_seconds")),
        mtbf_seconds=_number(row.get("mtbf_seconds")),
        previous_availability=_number(previous.get("availability")),
        maintenance=tuple(
            Span(start=str(item["start"]), end=str(item["end"]), label=str(item.get("name", "")))
            for item in row.get("maintenance") or ()
        ),
        # Trust the flag, but also treat a null availability as no data: never as 100 %.
        no_data=bool(row.get("no_data")) or availability is None,
        daily=tuple(_read_day(item) for item in row.get("daily") or ()),
        coverage=_number(row.get("coverage")),
        expected_slots=_count(row.get("expected_slots")),
        measured_slots=_count(row.get("measured_slots")),
        measured_seconds=_number(row.get("measured_seconds")),
        not_measured_seconds=_number(row.get("not_measured_seconds")),
        not_measured_probes=_count(row.get("not_measured_probes")),
        partial=row.get("partial") is True,
        first_measured=_text(row.get("first_measured")),
    )


def _read_incident(item: Mapping[str, Any]) -> Span:
    ended_by = _text(item.get("ended_by"))
    # A null "ended_by" means still open; reports before it said so with "open".
    still_open = ("ended_by" in item and ended_by is None) or item.get("open") is True
    return Span(
        start=str(item["start"]),
        end=str(item["end"]),
        label=str(item.get("cause", "")),
        duration_seconds=_number(item.get("duration_seconds")),
        ended_by=ended_by,
        open=still_open,
    )


def _read_day(item: Mapping[str, Any]) -> Day:
    return Day(
        date=date.fromisoformat(str(item["date"])),
        probes=int(item.get("probes") or 0),
        availability=_number(item.get("availability")),
        latency=_latency(item.get("latency_seconds")),
        coverage=_number(item.get("coverage")),
        not_measured_seconds=_number(item.get("not_measured_seconds")),
    )


def _latency(value: Mapping[str, Any] | None) -> Latency | None:
    if not value:
        return None
    return Latency(
        p50=float(value["p50"]),
        p95=float(value["p95"]),
        p99=float(value["p99"]),
        max=_number(value.get("max")),
    )


def _number(value: object) -> float | None:
    """A JSON number as float; None stays None (no data is not zero)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"expected a number, got {value!r}")


def _count(value: object) -> int | None:
    """A JSON count as int; None (absent from an older report) stays None."""
    number = _number(value)
    return None if number is None else int(number)


def _text(value: object) -> str | None:
    """A JSON string, or None for null or absent."""
    return None if value is None else str(value)


def daily_by_date(days: Sequence[Day]) -> dict[date, Day]:
    """The daily figures keyed by date, for charts that walk every day of the month."""
    return {item.date: item for item in days}
