"""The monthly report's one shape: the JSON contract of docs/report-json.md as pydantic models.

>>> report = MonthlyReport.model_validate(json.loads(text))  # doctest: +SKIP
>>> report.rows[0].without_data  # doctest: +SKIP
False

`probe.report.stats` builds a `MonthlyReport`; ``model_dump(mode="json")`` is the contract
(keys in the order the fields are declared here, values as built); the renderers in
`probe.report.render` read the models; ``/api/v1/openapi.json`` carries their
serialization JSON Schema (`probe.web.openapi`).

Reading is lenient where older reports were shorter, and only there. Keys that reports before
schema 0005 lack (the "Older reports" of the contract), ``notices``, which reports before
written incidents lack, and ``period``, ``daily``, ``maintenance`` and ``no_data``, which the
first reports lacked, read as unknown (None), empty or False: never as a guess. Keys a
newer report adds are ignored ("a key is only ever added"). What the daemon writes has every
key, and the schema says so: every field is required in the serialization schema, and
`_added_later` drops the null that only reading an older report needs.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# The months a report can be made for: no probe ran before 1970, and the bound keeps every
# month boundary within what datetime can hold in any time zone.
MONTH_PATTERN: Final = "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"

Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""ISO 8601 with the UTC offset of the configured time zone. Kept as the text written, so
a report reads back exactly as it was made."""
Ratio = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Seconds = float
EndedBy = Literal["recovered", "not_measured"]


class Shape(BaseModel):
    """A frozen object of the contract: closed as served, lenient to a newer report's keys."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        json_schema_extra={"additionalProperties": False},
        json_schema_serialization_defaults_required=True,
    )


def _served_never_null(schema: dict[str, Any]) -> None:
    """Drop the null branch and the default: they are only for reading an older report."""
    schema.pop("default", None)
    branches = schema.pop("anyOf")
    assert isinstance(branches, list)
    (kept,) = [branch for branch in branches if branch != {"type": "null"}]
    assert isinstance(kept, dict)
    schema.update(kept)


def _added_later() -> Any:
    """A key the daemon always writes that an older report lacks: None when reading one."""
    return Field(None, json_schema_extra=_served_never_null)


class Window(Shape):
    """One occurrence of a maintenance window."""

    name: str
    start: Time
    end: Time


class Outcomes(Shape):
    """Measured results outside maintenance, by outcome: all five, always."""

    delivered: Count
    late: Count
    lost: Count
    send_error: Count
    observe_error: Count


OUTCOMES: Final = tuple(Outcomes.model_fields)
"""The outcomes in the contract's order (``dict(row.outcomes)`` keeps it)."""


class Slo(Shape):
    """The objectives, and how the month went against them (null without data)."""

    objective: Ratio
    latency_seconds: Seconds = Field(description="Seen later than this is late.")
    met: bool | None
    error_budget_used: float | None = Field(description="(1 - availability) / (1 - objective)")


class Percentiles(Shape):
    """Latency percentiles of delivered and late results, within 1 %."""

    p50: Seconds
    p95: Seconds
    p99: Seconds


class Latency(Percentiles):
    """The month's percentiles, and its exact maximum."""

    max: Seconds | None


class Incident(Shape):
    """A run of consecutive bad results in slot order, clipped to the month."""

    start: Time
    end: Time
    duration_seconds: Seconds
    cause: str = Field(description="The outcome of the first bad result.")
    ended_by: EndedBy | None = Field(None, description="null while open.")
    open: bool = False

    @property
    def ongoing(self) -> bool:
        """Not ended: the contract's null ``ended_by``, or ``open`` in a report before it."""
        return ("ended_by" in self.model_fields_set and self.ended_by is None) or self.open


class PreviousMonth(Shape):
    availability: Ratio | None


class Day(Shape):
    """One local day of a row; `availability` is null on a day without probes."""

    date: dt.date
    probes: Count
    availability: Ratio | None
    latency_seconds: Percentiles | None
    coverage: Ratio | None = None
    not_measured_seconds: Seconds | None = _added_later()

    @property
    def not_measured(self) -> bool:
        """Nothing was measured that day: coverage 0, or no probes at all (older reports)."""
        return self.coverage == 0 or self.probes == 0

    @property
    def partly_measured(self) -> bool:
        """Some, but not all, of the day's scheduled probes were measured."""
        return self.coverage is not None and 0 < self.coverage < 1 and self.probes > 0


class ReportRow(Shape):
    """One flow and destination over the month (docs/report-json.md, "A row")."""

    flow: str
    destination: str = Field(description='"" for a check.')
    probes: Count
    outcomes: Outcomes
    excluded_maintenance: Count
    availability: Ratio | None
    time_availability: Annotated[float, Field(le=1)] | None
    slo: Slo
    latency_seconds: Latency | None
    incidents: tuple[Incident, ...]
    mttr_seconds: Seconds | None
    mtbf_seconds: Seconds | None
    previous_month: PreviousMonth
    maintenance: tuple[Window, ...] = ()
    no_data: bool = False
    daily: tuple[Day, ...] = ()
    expected_slots: Count | None = None
    measured_slots: Count | None = _added_later()
    coverage: Ratio | None = None
    measured_seconds: Seconds | None = _added_later()
    not_measured_seconds: Seconds | None = _added_later()
    not_measured_probes: Count | None = _added_later()
    first_measured: Time | None = None
    partial: bool = False

    @property
    def without_data(self) -> bool:
        """Nothing to count: the flag, or a null availability. Never shown as 100 %."""
        return self.no_data or self.availability is None

    @property
    def measurement_known(self) -> bool:
        """The report states how much was measured (reports before coverage do not)."""
        known = (self.coverage, self.expected_slots, self.not_measured_seconds)
        return any(value is not None for value in known)

    def daily_by_date(self) -> dict[dt.date, Day]:
        """The daily figures keyed by date, for charts that walk every day of the month."""
        return {item.date: item for item in self.daily}


NoticeKind = Literal["incident", "announcement"]


class WrittenUpdate(Shape):
    """One entry of a written incident's or announcement's timeline, oldest first."""

    at: Time
    state: str = Field(description="The state this update put it in.")
    body: str = Field(description="What was written, in Markdown; may be empty.")
    body_text: str = Field(description="`body` as plain text, without markup.")


class Explained(Shape):
    """An automatic incident that a written notice explains: one of the row's incidents."""

    flow: str
    destination: str = Field(description='"" for a check.')
    start: Time = Field(description="The incident's `start`, exactly as in its row.")


class WrittenNotice(Shape):
    """A written incident or announcement whose life overlaps the month (docs/report-json.md,
    "A written incident")."""

    id: Count
    kind: NoticeKind
    title: str
    state: str = Field(description="Its state when the report was made.")
    flows: tuple[str, ...] = Field(description="Globs of the flow names; empty: every flow.")
    created_at: Time
    starts_at: Time | None
    ends_at: Time | None
    resolved_at: Time | None = Field(description="When it was resolved or ended; null: not yet.")
    updates: tuple[WrittenUpdate, ...]
    explains: tuple[Explained, ...] = Field(
        description="The automatic incidents of the same flow whose time overlaps its life."
    )


class Period(Shape):
    """The month's bounds and length, and up to when it was measured."""

    start: Time
    end: Time
    hours: float
    measured_until: Time | None = _added_later()


class MonthlyReport(Shape):
    """The whole month: `probe report --format json` and ``/api/v1/reports/monthly/{month}``."""

    month: str = Field(pattern=MONTH_PATTERN)
    timezone: str
    generated_at: Time
    period: Period | None = _added_later()
    partial: bool = False
    rows: tuple[ReportRow, ...]
    notices: tuple[WrittenNotice, ...] | None = _added_later()

    def explaining(self, row: ReportRow, incident: Incident) -> list[WrittenNotice]:
        """The written notices that explain one of ``row``'s incidents (none in a report
        made before notices were)."""
        wanted = Explained(flow=row.flow, destination=row.destination, start=incident.start)
        return [notice for notice in self.notices or () if wanted in notice.explains]

    def days(self) -> list[dt.date]:
        """Every calendar day of the month, so a chart shows missing days as gaps."""
        year, month = (int(part) for part in self.month.split("-"))
        count = calendar.monthrange(year, month)[1]
        return [dt.date(year, month, number) for number in range(1, count + 1)]
