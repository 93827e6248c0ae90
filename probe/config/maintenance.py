"""The ``maintenance:`` block: planned downtime windows, weekly, monthly or once.

    maintenance:
      - {name: tuesday-patch, flows: ["gs-*"], weekly: {day: tuesday, start: "06:00", duration: 1h}}
      - {name: month-end, monthly: {day: -1, start: "22:00", duration: 2h}}
      - {name: move, once: {start: "2026-12-01T22:00", end: "2026-12-02T02:00"}}

These are the models only; `probe.config.windows` says when a window is active.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator, model_validator

from probe.durations import Duration, LongDuration
from probe.transports.spec import Model

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"
# A one-off maintenance window's years, as the API's months: start + 3660d stays a datetime.
YEARS = (1970, 2999)
_START = (
    "The local time the window starts, `HH:MM` in `timezone`: 06:00 stays 06:00 across "
    "daylight saving changes."
)
_DURATION = "How long the window lasts, in real elapsed time."


class Weekly(Model):
    """``{day: tuesday, start: "06:00", duration: 1h}``."""

    day: str = Field(description="The day of the week, `monday` to `sunday`.")
    start: str = Field(pattern=_CLOCK, description=_START)
    duration: Duration = Field(description=_DURATION)

    @field_validator("day")
    @classmethod
    def _day(cls, day: str) -> str:
        if day.lower() not in _WEEKDAYS:
            raise ValueError(f"unknown day {day!r} (expected monday..sunday)")
        return day.lower()


class Monthly(Model):
    """``{day: 1, start: "02:00", duration: 2h}``; ``day: -1`` is the month's last day."""

    day: int = Field(
        ge=-31,
        le=31,
        description="The day of the month, 1 to 31, or -1 to -31 counted from its end (-1 is "
        "the last day). A day past the month's end means its last day.",
    )
    start: str = Field(pattern=_CLOCK, description=_START)
    duration: Duration = Field(description=_DURATION)

    @field_validator("day")
    @classmethod
    def _not_zero(cls, day: int) -> int:
        if day == 0:
            raise ValueError("day must be 1..31, or -1..-31 counted from the month's end")
        return day


class Once(Model):
    """``{start: "2026-12-01T22:00", end: "2026-12-02T02:00"}`` (or ``duration``)."""

    start: str = Field(
        description="When the window starts: ISO 8601, such as `2026-12-01T22:00`, in the "
        "years 1970 to 2999. Without an offset it is local time in `timezone`."
    )
    end: str | None = Field(
        default=None, description="When it ends, after `start`. Give `end` or `duration`."
    )
    duration: LongDuration | None = Field(
        default=None, description="How long it lasts, up to 3660d. Give `end` or `duration`."
    )

    @field_validator("start", "end")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            year = datetime.fromisoformat(value).year
        except ValueError:
            raise ValueError(
                f"invalid time {value!r}: use ISO 8601, e.g. 2026-12-01T22:00"
            ) from None
        if not YEARS[0] <= year <= YEARS[1]:
            raise ValueError(f"invalid time {value!r}: the year must be {YEARS[0]} to {YEARS[1]}")
        return value

    @model_validator(mode="after")
    def _end_or_duration(self) -> Once:
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of end or duration")
        if self.end is not None and datetime.fromisoformat(self.end).replace(
            tzinfo=None
        ) <= datetime.fromisoformat(self.start).replace(tzinfo=None):
            raise ValueError("end must be after start")
        return self


class MaintenanceWindow(Model):
    """One window: its name, the flows it covers, and exactly one of weekly, monthly, once."""

    name: str = Field(description="A label for people; the report lists it.")
    flows: list[str] = Field(
        default=["*"],
        description='Glob patterns on the flow names it covers, such as `["gs-*"]`.',
    )
    weekly: Weekly | None = Field(default=None, description="A window every week.")
    monthly: Monthly | None = Field(default=None, description="A window every month.")
    once: Once | None = Field(
        default=None, description="A single window, with `end` or `duration`."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> MaintenanceWindow:
        given = [k for k in ("weekly", "monthly", "once") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of weekly, monthly or once")
        return self
