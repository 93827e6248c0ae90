"""SQL: a source that runs a statement per probe, and an observer that polls a query.

Some integrations hand data over through tables: a system writes a row that the engine
picks up, or the engine writes rows that a system reads. Every value goes in as a bound
parameter, never as text pasted into the SQL, so a probe id cannot change what a statement
does. The statements may use these names (a literal colon is written ``\\:``):

    :probe_id  :sent_at  :flow  :destination   (source and destination)
    :since                                     (destination: sent_at minus `SINCE_MARGIN`)

``:sent_at`` and ``:since`` are bound as timestamps: ``timestamptz`` on PostgreSQL, and
on SQLite UTC text like ``2026-11-26 10:00:00.000000``, which sorts with
``CURRENT_TIMESTAMP``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import DateTime, RowMapping, bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from probe.errors import (
    CheckFailed,
    ConfigError,
    ConnectError,
    TransportError,
    TransportTimeout,
)
from probe.model import ProbeMessage, Receipt, Sighting, utcnow
from probe.store import safe_url
from probe.transports.base import FINAL_LOOK, Destination, Resources, poll_until
from probe.transports.sql.spec import SqlDestination, SqlSource
from probe.transports.timestamps import parse_time

# Rows are often stamped by the destination's clock, or a little before the commit that
# shows them: the window reaches back far enough to cover ordinary clock skew.
SINCE_MARGIN = timedelta(minutes=5)
SOURCE_PARAMS = ("probe_id", "sent_at", "flow", "destination")
OBSERVER_PARAMS = (*SOURCE_PARAMS, "since")
_TIMESTAMPS = ("sent_at", "since")


class SqlEngine:
    """One connection pool per database URL, shared by every source and observer using it.

    `transaction` is the one place where database errors become our errors.
    """

    def __init__(self, url: str) -> None:
        self.target = safe_url(url)
        self._password = make_url(url).password
        try:
            # Not the store's create_engine: its SQLite pragmas (WAL) would permanently change
            # a database that belongs to the system we watch.
            self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as exc:  # no such dialect, or no async driver
            message = f"{self.target}: cannot use this database URL: {self._describe(exc)}"
            raise ConfigError([message]) from None

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction that commits when the block ends.

        Not getting a connection is a `ConnectError`; an error from a statement is
        `CheckFailed` with reason ``sql_error``, unless the connection died under it.
        """
        connected = False
        try:
            async with self.engine.connect() as connection:  # closing returns it to the pool
                connected = True
                # A statement cut off by a timeout (CancelledError) makes SQLAlchemy
                # invalidate the connection: it is thrown away, not handed to the next probe.
                async with connection.begin():
                    yield connection
        except (SQLAlchemyError, OSError) as exc:
            raise self._translate(exc, connected=connected) from exc

    def _translate(self, exc: Exception, *, connected: bool) -> TransportError:
        if isinstance(exc, PoolTimeout | TimeoutError):
            return TransportTimeout(f"no connection to {self.target} in time")
        lost = isinstance(exc, OSError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        if not connected or lost:
            return ConnectError(f"cannot connect to {self.target}: {self._describe(exc)}")
        return CheckFailed(f"{self.target}: {self._describe(exc)}", reason="sql_error")

    def _describe(self, exc: BaseException) -> str:
        """The driver's own words on one line, without the SQL, the parameters or a password."""
        cause = getattr(exc, "orig", None) or exc
        words = " ".join(str(cause).split()) or type(cause).__name__
        if self._password:
            words = words.replace(self._password, "***")
        return words[:240]


def sql_engine(resources: Resources, url: str) -> SqlEngine:
    """The shared `SqlEngine` for ``url``."""
    return resources.shared(("sql", url), lambda: SqlEngine(url))


def prepare(sql: str, *, allowed: Sequence[str], where: str) -> tuple[TextClause, frozenset[str]]:
    """The statement, ready to execute, and the parameter names it uses.

    Only the names a statement uses are passed to it: some drivers reject extra ones.
    """
    clause = text(sql)
    used = frozenset(clause.compile().params)
    unknown = sorted(used.difference(allowed))
    if unknown:
        names = " ".join(f":{name}" for name in allowed)
        raise ConfigError([f"{where}: unknown parameter :{unknown[0]} in the SQL (use {names})"])
    stamps = [
        bindparam(name, type_=DateTime(timezone=True)) for name in _TIMESTAMPS if name in used
    ]
    return clause.bindparams(*stamps), used


def parameters(
    probe: ProbeMessage, used: frozenset[str], *, destination: str = ""
) -> dict[str, object]:
    """The bound values for one probe, limited to the names in ``used``."""
    sent_at = probe.sent_at.astimezone(UTC)  # SQLite stores the UTC wall time, without zone
    values: dict[str, object] = {
        "probe_id": probe.probe_id,
        "sent_at": sent_at,
        "flow": probe.flow,
        "destination": destination,
        "since": sent_at - SINCE_MARGIN,
    }
    return {name: value for name, value in values.items() if name in used}


class SqlProbeSource:
    """``source: {type: sql, ...}``: runs ``statement`` once per probe, in a transaction.

    A statement that affects no rows (an UPDATE that matched nothing) fails with
    ``no_rows``.
    """

    def __init__(self, config: SqlSource, resources: Resources) -> None:
        self.config = config
        self.db = sql_engine(resources, config.url)
        self.statement, self.used = prepare(config.statement, allowed=SOURCE_PARAMS, where="source")

    async def send(self, probe: ProbeMessage) -> Receipt:
        """Run the statement for ``probe``; the receipt says how many rows it affected."""
        async with self.db.transaction() as connection:
            result = await connection.execute(self.statement, parameters(probe, self.used))
            rows = result.rowcount
        if rows == 0:
            raise CheckFailed(
                f"the statement affected no rows in {self.db.target}", reason="no_rows"
            )
        # Drivers report -1 when they cannot count, e.g. for some procedure calls.
        return Receipt(detail=f"{rows} row(s)" if rows >= 0 else "done")

    async def aclose(self) -> None:
        """The engine is shared and closed by its owner."""


class SqlPollObserver:
    """``destinations: [{type: sql, ...}]``: polls ``query``; each row it returns is one arrival."""

    def __init__(self, config: SqlDestination, resources: Resources, *, poll: float) -> None:
        self.config = config
        self.poll = poll
        self.db = sql_engine(resources, config.url)
        where = f"destination {config.name!r}"
        self.query, self.used = prepare(config.query, allowed=OBSERVER_PARAMS, where=where)

    @classmethod
    def for_destination(cls, spec: Destination, resources: Resources) -> SqlPollObserver:
        """The observer of a resolved ``destinations:`` entry (the registry's factory)."""
        assert isinstance(spec.config, SqlDestination)
        return cls(spec.config, resources, poll=spec.poll)

    @property
    def start_error(self) -> None:
        """Polling starts nothing, so nothing fails to start."""
        return None

    async def start(self) -> None:
        """Nothing to bind: polling needs no listener."""

    async def aclose(self) -> None:
        """The engine is shared and closed by its owner."""

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None:
        """Poll every ``poll`` until the query returns rows or ``deadline`` passes."""
        params = parameters(probe, self.used, destination=self.config.name)
        return await poll_until(
            lambda: self._poll_once(params, probe, deadline),
            every=self.poll,
            deadline=deadline,
        )

    async def _poll_once(
        self, params: dict[str, object], probe: ProbeMessage, deadline: float
    ) -> Sighting | None:
        timeout = max(deadline - time.monotonic(), FINAL_LOOK)
        try:
            async with asyncio.timeout(timeout), self.db.transaction() as connection:
                rows = (await connection.execute(self.query, params)).mappings().all()
                seen_mono, seen_at = time.monotonic(), utcnow()
        except TimeoutError:
            raise TransportTimeout(f"no answer from {self.db.target} in time") from None
        if not rows:
            return None
        return Sighting(
            probe_id=probe.probe_id,
            destination=self.config.name,
            seen_at=seen_at,
            seen_mono=seen_mono,
            count=len(rows),
            arrived_at=self._arrival(rows),
        )

    def _arrival(self, rows: Sequence[RowMapping]) -> datetime | None:
        """The earliest ``time_column`` value among the rows, if it is configured."""
        column = self.config.time_column
        if column is None:
            return None
        if column not in rows[0]:
            message = f"the query of {self.config.name!r} returns no column {column!r}"
            raise CheckFailed(message, reason="sql_error")
        times = [stamp for row in rows if (stamp := read_time(row[column])) is not None]
        return min(times, default=None)


def read_time(value: object) -> datetime | None:
    """A time column's value: a datetime (naive means UTC), ISO 8601 text or epoch seconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, Decimal):  # PostgreSQL numeric
        return parse_time(float(value))
    return parse_time(value)
