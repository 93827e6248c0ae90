"""The notifications as the daemon's two background tasks: the notifier and the sender.

    notify = Notifications(lambda: daemon.config, supervisor.spawn, metrics)
    tasks = notify.start(store.engine)   # none while no channel is configured
    notify.apply()                       # after a reload: its channels, from the next tick

- **notify** (every `TICK`): moves each pair's up/down state along its new results and
  queues the messages of what changed (`probe.notify.derive`), and the messages of
  maintenance windows that start or end (`probe.notify.maintenance`).
- **notify-send** (every `TICK`): sends what the outbox holds (`probe.notify.sender`), and
  once an hour deletes sent messages older than 30 days.

Both read the config anew at each tick, so a reload's channels, thresholds and texts
apply at once; a daemon that started with no channel starts both when a reload brings
the first. Neither holds up probing: they only read results the store has written, and
each send has its timeout. While the store is away a tick fails, is logged once
(``notify_store_unreachable``) and is tried again at the next; any other error ends the
task, for its supervisor to restart. On shutdown, a tick in progress may finish its
transaction (up to `FINISH` seconds) before the task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config.models import Config
from probe.logs import redactor
from probe.model import utcnow
from probe.notify import outbox
from probe.notify.derive import derive
from probe.notify.maintenance import edges
from probe.notify.queue import maintenance_messages
from probe.notify.sender import Sender, url_secrets

log = structlog.get_logger("probe.notify")

TICK = 1.0  # seconds between two looks of each task
FINISH = 5.0  # on shutdown, how long a tick in progress may take to finish
PRUNE_EVERY = 3600.0  # seconds between two prunes of sent messages
_TICK_LIMIT = 60.0  # PostgreSQL: a tick that hangs longer (packets dropped) is given up
OUTCOMES = ("sent", "failed", "dropped")  # of `probe_notifications_total`
_STORE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
T = TypeVar("T")

Spawn = Callable[[str, Callable[[], Coroutine[Any, Any, None]]], "asyncio.Task[None]"]


class Counts(Protocol):
    """Where sends are counted (`probe.metrics.registry.Metrics`)."""

    def notified(self, channel: str, outcome: str, count: int = 1) -> None: ...


class Notifications:
    """The notifier and the sender of one daemon."""

    def __init__(self, config: Callable[[], Config], spawn: Spawn, metrics: Counts) -> None:
        self.config = config
        self.spawn = spawn
        self.metrics = metrics
        self.engine: AsyncEngine | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._seen: set[str] = set()  # maintenance edges queued by this run
        self._failing: set[str] = set()  # tasks whose last tick found the store away
        self._pruned = float("-inf")
        self._sender: Sender | None = None

    def start(self, engine: AsyncEngine) -> list[asyncio.Task[None]]:
        """Start both tasks on ``engine`` if any channel is configured; the tasks started."""
        self.engine = engine
        return self.apply()

    def apply(self) -> list[asyncio.Task[None]]:
        """Take up the current config: mask its channel URLs in every log line, create the
        channels' series, and start the tasks if they are needed and not yet running."""
        channels = self.config().notify.channels
        urls = [part for channel in channels for part in url_secrets(channel.url)]
        redactor.update((*redactor.secrets, *urls))
        for channel in channels:
            for outcome in OUTCOMES:
                self.metrics.notified(channel.name, outcome, 0)
        if not channels or self.engine is None or self.tasks:
            return []
        self.tasks = [
            self.spawn("notify", lambda: self._forever("notify", self._derive_once)),
            self.spawn("notify-send", lambda: self._forever("notify-send", self._send_once)),
        ]
        return self.tasks

    async def _forever(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await _finishing(self._limited(step()))
            except _STORE_ERRORS as exc:
                if name not in self._failing:
                    log.warning("notify_store_unreachable", task=name, error=type(exc).__name__)
                self._failing.add(name)
            else:
                if name in self._failing:
                    log.info("notify_store_back", task=name)
                self._failing.discard(name)
            await asyncio.sleep(TICK)

    async def _limited(self, work: Awaitable[T]) -> T:
        # No limit on SQLite: a statement cancelled there keeps the write lock (see
        # `probe.store.repository`), and a local file does not hang like a network.
        assert self.engine is not None
        limit = _TICK_LIMIT if self.engine.dialect.name == "postgresql" else None
        async with asyncio.timeout(limit):
            return await work

    async def _derive_once(self) -> None:
        config, engine = self.config(), self.engine
        assert engine is not None
        if not config.notify.channels:
            return
        now = utcnow()
        queued = await derive(engine, config, now=now)
        # An edge stays an edge for an hour: queued once per run (rendered once, too), and
        # once in all by the outbox's key, whatever the restarts and daemons.
        fresh = [e for e in edges(config, now=now) if e.dedupe not in self._seen]
        if fresh:
            async with engine.begin() as conn:
                queued += await outbox.queue(conn, maintenance_messages(config, fresh), now=now)
            if len(self._seen) > 100_000:  # old windows' keys: past their hour
                self._seen.clear()
            self._seen.update(e.dedupe for e in fresh)
        if queued:
            log.info("notifications_queued", messages=queued)

    async def _send_once(self) -> None:
        assert self.engine is not None
        if self._sender is None:
            self._sender = Sender(self.engine, self.config, count=self.metrics.notified)
        await self._sender.run_once()
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            async with self.engine.begin() as conn:
                pruned = await outbox.prune_sent(conn, now=utcnow())
            self._pruned = time.monotonic()
            if pruned:
                log.info("notifications_pruned", messages=pruned)


async def _finishing(work: Awaitable[T]) -> T:
    """Await ``work``; when cancelled, give it up to `FINISH` seconds to end first, so a
    transaction or a send in progress is not cut off halfway."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, FINISH)
        raise
