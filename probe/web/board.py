"""Everything the status page shows, read once per request: the states, the written
notices, planned maintenance and the 90-day bars.

    >>> source = BoardSource(api)
    >>> board = await source.load()          # the page and its history page
    >>> found, notices = await source.live() # the event stream: no 90-day bars

The snapshot is the API's, cached for `probe.web.api.SNAPSHOT_TTL`; the notices are cached
for `NOTICES_TTL`, and the 90-day bars by `probe.web.days.DaysCache`. So however many
browsers hold the page or its event stream open, the store is read about once every two
seconds. The config (display names, time zone, maintenance) is read from the API's context
at each call, as a reload replaces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

from probe.config.models import Config
from probe.errors import StoreError
from probe.model import utcnow
from probe.store.notices import Notice, active_notices, upcoming_notices
from probe.web.api import Api
from probe.web.days import DaysBar, DaysCache
from probe.web.status import Snapshot

NOTICES_TTL: Final = 2.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Planned:
    """A maintenance window from the config, in progress or coming within a week, with
    the flows it covers: shown as an announcement."""

    name: str
    start: datetime
    end: datetime
    flows: tuple[str, ...]
    active: bool


@dataclass(frozen=True, slots=True)
class Board:
    """What one page shows, as of ``snapshot.generated_at``."""

    config: Config
    snapshot: Snapshot
    notices: tuple[Notice, ...]  # active written incidents and announcements, newest first
    upcoming: tuple[Notice, ...]  # written announcements that start later, soonest first
    days: DaysBar

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)

    @property
    def planned(self) -> tuple[Planned, ...]:
        """Each configured window in progress or next for some flow, soonest first."""
        found: dict[tuple[str, datetime, datetime], list[str]] = {}
        for flow in self.snapshot.flows:
            for window in (flow.maintenance, flow.next_maintenance):
                if window is not None:
                    found.setdefault((window.name, window.start, window.end), []).append(flow.name)
        now = self.snapshot.generated_at
        return tuple(
            Planned(name, start, end, tuple(flows), start <= now < end)
            for (name, start, end), flows in sorted(found.items(), key=lambda i: i[0][1])
        )

    def incidents_for(self, flow: str) -> list[Notice]:
        """The active written incidents that name ``flow``."""
        return [n for n in self.notices if n.kind == "incident" and n.affects(flow)]


@dataclass(slots=True)
class BoardSource:
    """Loads `Board`s for the pages and the event stream over one `Api`."""

    api: Api
    _notices: tuple[float, tuple[Notice, ...], tuple[Notice, ...]] | None = None
    _days: DaysCache = field(default_factory=DaysCache)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _days_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def config(self) -> Config:
        return self.api.context.config

    async def live(self) -> tuple[Snapshot, tuple[Notice, ...]]:
        """The states and the active notices: what the event stream sends."""
        found = await self.api.snapshot()
        active, _ = await self._read_notices()
        return found, active

    async def load(self) -> Board:
        """The whole page's data (`StoreError` when the store cannot be read)."""
        found = await self.api.snapshot()
        active, upcoming = await self._read_notices()
        tz = ZoneInfo(self.config.timezone)
        async with self._days_lock:  # many page loads at once: one read of the bars
            days = await self._read(
                lambda: self._days.get(self.api.context.engine, now=found.generated_at, tz=tz)
            )
        return Board(self.config, found, active, upcoming, days)

    async def _read_notices(self) -> tuple[tuple[Notice, ...], tuple[Notice, ...]]:
        async with self._lock:
            cached = self._notices
            if cached is not None and time.monotonic() - cached[0] < NOTICES_TTL:
                return cached[1], cached[2]
            now = utcnow()
            active, upcoming = await self._read(lambda: self._query_notices(now))
            self._notices = (time.monotonic(), tuple(active), tuple(upcoming))
            return self._notices[1], self._notices[2]

    async def _query_notices(self, now: datetime) -> tuple[list[Notice], list[Notice]]:
        async with self.api.context.engine.connect() as conn:
            return await active_notices(conn, now=now), await upcoming_notices(conn, now=now)

    @staticmethod
    async def _read(read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, with a store failure as a `StoreError`."""
        try:
            return await read()
        except SQLAlchemyError as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc
