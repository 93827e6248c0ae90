"""The config file's shape (pydantic models) and its resolution into flow specs.

The YAML side (line numbers, ``${ENV}``, ``*_file`` secrets) lives in `probe.config.loader`;
this module only knows the structure, and the ``maintenance:`` windows are in
`probe.config.maintenance`. Every model rejects unknown keys, and every key has a
description: docs/config-reference.md is generated from them
(``python scripts/gen_config_reference.py``).

Values are layered: a destination's ``slo`` overrides its flow's, which overrides
``defaults.slo``; the same holds for ``interval``, ``timeout``, ``poll`` and
``max_in_flight``. `resolve_flows` applies the layers once, so the runner reads plain values.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probe.config.maintenance import MaintenanceWindow
from probe.config.people import Display, Notify, Severity, check_display_keys
from probe.durations import Duration, Interval, LongDuration
from probe.transports.http.spec import HttpDestination, HttpSource
from probe.transports.mllp.spec import MllpDestination, MllpSource
from probe.transports.registry import transports
from probe.transports.spec import NAME_PATTERN, SLO, Model, check_listen
from probe.transports.sql.spec import SqlDestination, SqlSource

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {"flow", "destination", "outcome", "le", "job", "instance"}
T = TypeVar("T")
MAX_IN_FLIGHT = 10_000  # per flow; far beyond what a schedule and a deadline need
MAX_BATCH_SIZE = 100_000  # rows in one write
# The drivers `probe.store.open_store` can open: asyncio ones, SQLite or PostgreSQL. A bare
# ``postgresql://`` is left out: its driver depends on the SQLAlchemy version.
STORE_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
_STORE_USE = "use sqlite+aiosqlite:///FILE or postgresql+psycopg://user@host/db"


if TYPE_CHECKING:  # the built-in transports; at run time, every one the registry has
    Source = Annotated[HttpSource | MllpSource | SqlSource, Field(discriminator="type")]
    Destination = Annotated[
        HttpDestination | MllpDestination | SqlDestination, Field(discriminator="type")
    ]
else:
    Source = transports().source_union()
    Destination = transports().destination_union()


class Defaults(Model):
    """``defaults:``, the values of every flow and destination that sets none of its own."""

    interval: Interval = Field(
        default=60.0, description="The time between slots, for a flow with no `cron`."
    )
    timeout: Duration = Field(
        default=300.0,
        description="The deadline after the send: a probe not seen by then is `lost`.",
    )
    send_timeout: Duration = Field(
        default=30.0,
        description="The longest a send (an HTTP reply, an MLLP ACK) may take, within the "
        "deadline. After it the result is `send_error` with reason `timeout`.",
    )
    poll: Interval = Field(
        default=1.0, description="How often an HTTP or SQL destination is polled."
    )
    max_in_flight: int = Field(
        default=10,
        ge=1,
        le=MAX_IN_FLIGHT,
        description="The most unresolved probes per flow. A slot that fires at the limit is "
        "skipped and counted in `probe_slots_skipped_total`.",
    )
    slo: SLO = Field(
        default=SLO(latency=30.0, objective=0.995),
        description="The service level objective: seen within `latency` is `delivered`, later "
        "is `late`; `objective` is the target share of good results.",
    )


class Flow(Model):
    """One flow: a source the probe is injected into, and the destinations it should reach."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique among the flows; the `flow` label. Lowercase letters, digits, "
        "`.`, `_` and `-`, at most 63 characters.",
    )
    description: str = Field(default="", description="Free text for people.")
    severity: Severity = Field(
        default="critical",
        description="`critical`, `warning` or `info`: which `notify.channels` hear of it.",
    )
    interval: Interval | None = Field(
        default=None,
        description="The time between slots (default: `defaults.interval`). Slots are "
        "aligned to the Unix epoch, so two daemons agree on every slot.",
    )
    cron: str | None = Field(
        default=None,
        description="A crontab line, such as `*/5 * * * *`, in `timezone`. Give either this "
        "or `interval`, not both.",
    )
    timeout: Duration | None = Field(
        default=None, description="The deadline (default: `defaults.timeout`)."
    )
    send_timeout: Duration | None = Field(
        default=None,
        description="The longest a send may take (default: `defaults.send_timeout`).",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=MAX_IN_FLIGHT,
        description="The most unresolved probes (default: `defaults.max_in_flight`).",
    )
    slo: SLO = Field(
        default=SLO(),
        description="Either key may be left to `defaults.slo`. For a check, it applies to "
        "the reply time.",
    )
    source: Source = Field(description="Where the probe is injected; its keys depend on `type`.")
    destinations: list[Destination] = Field(
        default=[],
        description="Where its arrival is watched; each one's keys depend on its `type`, and "
        "names are unique within the flow. With none, the flow is a check: the source's "
        "reply is the result.",
    )

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


class Retention(Model):
    """``retention: {raw: 90d}``."""

    raw: LongDuration = Field(
        default=90 * 86400.0,
        description="How long raw probes, sightings and results are kept; the daemon prunes "
        "older rows every hour (also `probe db prune`). Hourly rollups and incidents are "
        "never pruned, so reports on past months keep working.",
    )


class Store(Model):
    """``store:``, the SQL database of probes and results, and its local spool."""

    url: str = Field(
        default="sqlite+aiosqlite:///probe.db",
        description="A SQLAlchemy URL: `sqlite+aiosqlite:///FILE` (a relative path is "
        "relative to the working folder) or `postgresql+psycopg://user@host:5432/db`. Other "
        "drivers are config errors.",
    )
    retention: Retention = Field(default=Retention(), description="How long rows are kept.")
    flush_interval: Interval = Field(
        default=0.2,
        description="The longest a sighting or result waits before a batched write; also how "
        "often the spool is fsynced.",
    )
    batch_size: int = Field(
        default=2000,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="The most rows in one write; a full batch is written at once.",
    )
    spool_dir: str | None = Field(
        default=None,
        description="The local spool every write passes through, also while the database is "
        "away. It belongs to one store: keep it on a persistent local disk. By default next "
        "to a SQLite file (`probe.db.spool/`), or `./probe-spool/<host>-<port>-<db>-<hash>/` "
        "for PostgreSQL.",
    )
    shared_sightings: bool | None = Field(
        default=None,
        description="Whether a daemon waiting at an MLLP destination also looks in the store "
        "(every 0.5 s) for what other daemons' listeners recorded (active-active). By "
        "default on for PostgreSQL, off for SQLite.",
    )
    local_claims: bool = Field(
        default=True,
        description="While the database is away, claim slots locally and spool them: probing "
        "goes on, and two daemons sharing a store may both probe a slot. `false`: such a "
        'slot is skipped and counted (`probe_slots_skipped_total{reason="store"}`), so '
        "each slot is probed once.",
    )

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
    """``server:``, the HTTP server of the status page, the API and the metrics."""

    listen: str = Field(
        default="127.0.0.1:9464",
        description="`HOST:PORT` to listen on; port 0 takes a free one, `[::1]:9464` is IPv6. "
        "Keep it on loopback or a management network.",
    )
    api_token: str | None = Field(
        default=None,
        description="The bearer token of the mutating API calls (`POST "
        "/api/v1/flows/{flow}/run`, `POST /-/reload`); without it they are disabled. A "
        "secret: give it as `api_token_file` or `${ENV}`.",
    )
    public_url: str | None = Field(
        default=None,
        description="The status page's address as people reach it, such as "
        "`https://drift.example.org/probe/`: the link in notifications and feeds.",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        return check_listen(listen)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class Config(Model):
    """The whole config file."""

    timezone: str = Field(
        default="UTC",
        description="The IANA time zone of cron schedules, maintenance windows and reports, "
        "such as `Europe/Copenhagen`.",
    )
    store: Store = Field(default=Store(), description="Where probes and results are kept.")
    server: Server = Field(default=Server(), description="The HTTP server.")
    shutdown_grace: Duration = Field(
        default=30.0,
        description="On SIGTERM, how long to wait for the probes in flight. Above `timeout`, "
        "every probe resolves before the exit.",
    )
    defaults: Defaults = Field(
        default=Defaults(),
        description="Values for flows and destinations that do not set their own.",
    )
    labels: dict[str, str] = Field(
        default={},
        description="Static labels added to every metric, such as `{region: hovedstaden}`. "
        "`flow`, `destination`, `outcome`, `le`, `job` and `instance` are reserved.",
    )
    maintenance: list[MaintenanceWindow] = Field(
        default=[],
        description="Planned downtime: results in a window are kept out of availability and "
        "incidents.",
    )
    flows: list[Flow] = Field(default=[], description="The flows; their names are unique.")
    display: dict[str, Display] = Field(
        default={},
        description="Names people read, by `flow` or `flow/destination`, in Danish and "
        "English, such as `gs-adt/labka: {da: Labka (laboratorie), en: Labka (lab)}`.",
    )
    notify: Notify = Field(
        default=Notify(), description="Messages on state change, sent by the daemon."
    )

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

    @model_validator(mode="after")
    def _display_names_known(self) -> Config:
        check_display_keys(self.display, self.flows)
        return self

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
