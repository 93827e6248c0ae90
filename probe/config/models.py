"""The config file's shape (pydantic models) and its resolution into flow specs.

The YAML side (line numbers, ``${ENV}``, ``*_file`` secrets) lives in `probe.config.loader`;
this module only knows the structure. Every model rejects unknown keys.

Values are layered: a destination's ``slo`` overrides its flow's, which overrides
``defaults.slo``; the same holds for ``interval``, ``timeout``, ``poll`` and
``max_in_flight``. `resolve_flows` applies the layers once, so the runner reads plain values.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, TypeVar

from apscheduler.triggers.cron import CronTrigger
from pydantic import BeforeValidator, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probe.durations import MAX_DURATION, Duration, Interval, parse_duration
from probe.transports.specs import (
    NAME_PATTERN,
    SLO,
    HttpDestination,
    HttpSource,
    MllpDestination,
    MllpSource,
    Model,
    SqlDestination,
    SqlSource,
    check_listen,
)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {"flow", "destination", "outcome", "le", "job", "instance"}
T = TypeVar("T")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_IN_FLIGHT = 10_000  # per flow; far beyond what a schedule and a deadline need
MAX_BATCH_SIZE = 100_000  # rows in one write
MAX_LONG_DURATION = 10 * MAX_DURATION  # 3660d: ten years of raw results, or of maintenance
# A one-off maintenance window's years, as the API's months: start + 3660d stays a datetime.
YEARS = (1970, 2999)
# The drivers `probe.store.open_store` can open: asyncio ones, SQLite or PostgreSQL. A bare
# ``postgresql://`` is left out: its driver depends on the SQLAlchemy version.
STORE_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
_STORE_USE = "use sqlite+aiosqlite:///FILE or postgresql+psycopg://user@host/db"


LongDuration = Annotated[float, BeforeValidator(partial(parse_duration, maximum=MAX_LONG_DURATION))]
"""Like `Duration`, up to `MAX_LONG_DURATION` (3660d) rather than 366d."""

Source = Annotated[HttpSource | MllpSource | SqlSource, Field(discriminator="type")]
Destination = Annotated[
    HttpDestination | MllpDestination | SqlDestination, Field(discriminator="type")
]


class Defaults(Model):
    interval: Interval = 60.0
    timeout: Duration = 300.0
    send_timeout: Duration = 30.0
    poll: Interval = 1.0
    max_in_flight: int = Field(default=10, ge=1, le=MAX_IN_FLIGHT)
    slo: SLO = SLO(latency=30.0, objective=0.995)


class Flow(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    interval: Interval | None = None
    cron: str | None = None
    timeout: Duration | None = None
    send_timeout: Duration | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=MAX_IN_FLIGHT)
    slo: SLO = SLO()
    source: Source
    destinations: list[Destination] = []

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None) -> str | None:
        if cron is not None:
            CronTrigger.from_crontab(cron)  # raises ValueError with the offending field
        return cron

    @model_validator(mode="after")
    def _one_schedule(self) -> Flow:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either interval or cron, not both")
        names = [d.name for d in self.destinations]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"duplicate destination name {name!r}")
        return self


class Weekly(Model):
    day: str
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    duration: Duration

    @field_validator("day")
    @classmethod
    def _day(cls, day: str) -> str:
        if day.lower() not in _WEEKDAYS:
            raise ValueError(f"unknown day {day!r} (expected monday..sunday)")
        return day.lower()


class Monthly(Model):
    """``{day: 1, start: "02:00", duration: 2h}``; ``day: -1`` is the month's last day."""

    day: int = Field(ge=-31, le=31)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    duration: Duration

    @field_validator("day")
    @classmethod
    def _not_zero(cls, day: int) -> int:
        if day == 0:
            raise ValueError("day must be 1..31, or -1..-31 counted from the month's end")
        return day


class Once(Model):
    """``{start: "2026-12-01T22:00", end: "2026-12-02T02:00"}`` (or ``duration``)."""

    start: str  # ISO 8601; without an offset it is local time in the config's time zone
    end: str | None = None
    duration: LongDuration | None = None

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
    name: str
    flows: list[str] = ["*"]  # glob patterns on flow names
    weekly: Weekly | None = None
    monthly: Monthly | None = None
    once: Once | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MaintenanceWindow:
        given = [k for k in ("weekly", "monthly", "once") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of weekly, monthly or once")
        return self


class Retention(Model):
    raw: LongDuration = 90 * 86400.0


class Store(Model):
    url: str = "sqlite+aiosqlite:///probe.db"
    retention: Retention = Retention()
    flush_interval: Interval = 0.2
    batch_size: int = Field(default=2000, ge=1, le=MAX_BATCH_SIZE)
    # Where writes are spooled while the database is away; by default next to a SQLite
    # file (probe.db.spool), or ./probe-spool/<store> for PostgreSQL.
    spool_dir: str | None = None
    # Look in the store for sightings other daemons' MLLP listeners recorded
    # (active-active); by default on for PostgreSQL, the store daemons share.
    shared_sightings: bool | None = None
    # Claim a slot locally while the database is away (probing goes on, and a slot two
    # daemons claimed both ways is probed twice); false: skip it, counted, so each slot is
    # probed once (daemons sharing a store, when that matters more than coverage).
    local_claims: bool = True

    @field_validator("url")
    @classmethod
    def _driver(cls, url: str) -> str:
        # Checked here, not first by `probe run`: an unknown driver, a sync one or a bad port
        # only failed (with a traceback) when the store was opened.
        try:
            parsed = make_url(url)
            port = parsed.port
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            message = "invalid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)"
            raise ValueError(message) from None
        if parsed.drivername not in STORE_DRIVERS:
            raise ValueError(f"unsupported store driver {parsed.drivername!r}: {_STORE_USE}")
        if port is not None and not 0 < port <= 65535:
            raise ValueError("the port must be 1 to 65535")
        return url


class Server(Model):
    listen: str = "127.0.0.1:9464"
    # Bearer token for mutating API calls (POST /api/v1/flows/{flow}/run); none disables
    # them. A secret: give it as api_token_file or ${ENV}.
    api_token: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        return check_listen(listen)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class Config(Model):
    timezone: str = "UTC"
    store: Store = Store()
    server: Server = Server()
    shutdown_grace: Duration = 30.0
    defaults: Defaults = Defaults()
    labels: dict[str, str] = {}
    maintenance: list[MaintenanceWindow] = []
    flows: list[Flow] = []

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (expected an IANA name such as Europe/Copenhagen)"
            ) from None
        return name

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL_NAME.match(name) or name in _RESERVED_LABELS or name.startswith("__"):
                raise ValueError(f"invalid label name {name!r}")
        return labels


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """A destination with every layered value applied."""

    name: str
    config: HttpDestination | MllpDestination | SqlDestination
    poll: float
    slo_latency: float
    slo_objective: float


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow with every layered value applied: what the scheduler and runner read."""

    name: str
    description: str
    interval: float | None
    cron: str | None
    timeout: float
    send_timeout: float
    max_in_flight: int
    slo_latency: float
    slo_objective: float
    source: HttpSource | MllpSource | SqlSource
    destinations: tuple[DestinationSpec, ...]

    @property
    def is_check(self) -> bool:
        """A flow without destinations: the source's own reply is the result."""
        return not self.destinations


def resolve_flows(config: Config) -> list[FlowSpec]:
    """Apply ``defaults`` and flow-level values to every flow and destination."""
    d = config.defaults
    specs = []
    for flow in config.flows:
        latency = _first(flow.slo.latency, d.slo.latency, 30.0)
        objective = _first(flow.slo.objective, d.slo.objective, 0.995)
        interval = flow.interval if flow.interval is not None or flow.cron else d.interval
        dests = tuple(
            DestinationSpec(
                name=dest.name,
                config=dest,
                poll=_first(_poll(dest), d.poll),
                slo_latency=_first(dest.slo.latency, latency),
                slo_objective=_first(dest.slo.objective, objective),
            )
            for dest in flow.destinations
        )
        specs.append(
            FlowSpec(
                name=flow.name,
                description=flow.description,
                interval=interval,
                cron=flow.cron,
                timeout=_first(flow.timeout, d.timeout),
                send_timeout=_first(flow.send_timeout, d.send_timeout),
                max_in_flight=_first(flow.max_in_flight, d.max_in_flight),
                slo_latency=latency,
                slo_objective=objective,
                source=flow.source,
                destinations=dests,
            )
        )
    return specs


def _poll(dest: HttpDestination | MllpDestination | SqlDestination) -> float | None:
    # Not getattr(dest, "poll", None): a missing attribute goes through pydantic's
    # __getattr__, 2 us each: 40% of `resolve_flows`' time at 15,000 MLLP destinations.
    return None if isinstance(dest, MllpDestination) else dest.poll


def _first(*values: T | None) -> T:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value")  # unreachable: the last argument is always set
