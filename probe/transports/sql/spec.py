"""The ``type: sql`` config models: a statement run per probe, and a query polled for it.

    SqlSource(type="sql", url="postgresql+psycopg://probe@db/gs",
              statement="INSERT INTO inbox (id) VALUES (:probe_id)")

Values are always bound parameters (`probe.transports.sql.transport`), never text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probe.durations import Interval
from probe.transports.spec import NAME_PATTERN, SLO, Model

_URL = (
    "Any SQLAlchemy async URL, such as `postgresql+psycopg://probe@db/gs` or "
    "`sqlite+aiosqlite:///gs.db`. Put the password in `url_file` or `${ENV}`."
)


def _check_sql_url(url: str) -> str:
    try:
        make_url(url)
    except ArgumentError:
        message = "invalid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)"
        raise ValueError(message) from None
    return url


def _check_probe_param(sql: str) -> str:
    if ":probe_id" not in sql:
        raise ValueError("the SQL must use the bound parameter :probe_id")
    return sql


class SqlSource(Model):
    """Runs ``statement`` (usually an INSERT) with bound ``:probe_id``, ``:sent_at``, ``:flow``."""

    type: Literal["sql"] = Field(description="`sql`.")
    url: str = Field(description=_URL)
    statement: str = Field(
        description="The SQL to run, usually an `INSERT`. It must use `:probe_id`; "
        "`:sent_at`, `:flow` and `:destination` are also bound. Values are always bound "
        "parameters, never formatted into the text."
    )

    @property
    def summary(self) -> str:
        """For people: ``sql postgresql+psycopg://host/db`` (no user, no password)."""
        url = make_url(self.url)
        return f"sql {url.drivername}://{url.host or ''}/{url.database or ''}"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_sql_url(url)

    @field_validator("statement")
    @classmethod
    def _statement(cls, sql: str) -> str:
        return _check_probe_param(sql)


class SqlDestination(Model):
    """Polls ``query`` with bound ``:probe_id`` and ``:since``; each row is one arrival."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique within the flow. It is the `destination` label.",
    )
    type: Literal["sql"] = Field(description="`sql`.")
    url: str = Field(description="As for the source: " + _URL)
    query: str = Field(
        description="Polled every `poll`. It must use `:probe_id`; `:since` (the send time "
        "minus 5 minutes) is bound too. Each row returned is one arrival, so two rows count "
        "as a duplicate."
    )
    poll: Interval | None = Field(
        default=None, description="The time between queries (default: `defaults.poll`)."
    )
    time_column: str | None = Field(
        default=None,  # the destination's own arrival time
        description="A column holding the destination's own arrival time: a timestamp, "
        "ISO 8601 text, or Unix seconds.",
    )
    slo: SLO = Field(default=SLO(), description="`{latency, objective}`, overriding the flow's.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_sql_url(url)

    @field_validator("query")
    @classmethod
    def _query(cls, sql: str) -> str:
        return _check_probe_param(sql)
