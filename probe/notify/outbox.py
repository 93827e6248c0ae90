"""The outbox: messages kept in the store until they are sent.

    >>> await queue(conn, [Queued("drift-teams", Event.DOWN, "gs-adt/labka:down:...",
    ...                           message, flow="gs-adt", destination="labka")], now=now)
    1
    >>> rows = await pending(conn)                   # unsent, oldest first
    >>> await claim(conn, rows[0], until=now + LEASE)
    True

A message is queued in the transaction that decided it, so it is never lost and never
queued for a change that was rolled back. ``(channel, dedupe)`` is unique: queueing the
same message again (a second daemon, a retried tick) inserts nothing.

Each channel's messages go out in the order they were queued: only the oldest unsent one
of a channel is tried, and the next waits until it is sent. A send is claimed first: its
``due_at`` is moved on by `LEASE` with a conditional UPDATE, so of two daemons only one
sends it; if that daemon dies mid-send, the other sends it once the lease has run out (at
least once, then). A failed try moves ``due_at`` on by `backoff`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.config.people import Event
from probe.notify.text import Message
from probe.store import bulk
from probe.store.tables import outbox

FIRST_RETRY = 5.0  # seconds after the first failed try
MAX_RETRY = 600.0  # the longest wait between two tries
LEASE = timedelta(seconds=60)  # a claimed send's hold: longer than a send may take
KEEP_SENT = timedelta(days=30)  # sent rows are pruned after this
PENDING_LIMIT = 100  # unsent rows read per channel and look


@dataclass(frozen=True, slots=True)
class Queued:
    """A message to queue for one channel; ``dedupe`` makes it unique in the channel."""

    channel: str
    event: Event
    dedupe: str
    message: Message
    flow: str | None = None
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """An unsent outbox row."""

    id: int
    channel: str
    event: str
    title: str
    body: str
    due_at: datetime
    attempts: int


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try: 5 s, doubling up to 10 min.

    >>> [backoff(n) for n in (1, 2, 3, 8, 9, 50)]
    [5.0, 10.0, 20.0, 600.0, 600.0, 600.0]
    """
    return min(FIRST_RETRY * 2.0 ** min(max(attempts - 1, 0), 30), MAX_RETRY)


async def queue(conn: AsyncConnection, messages: Sequence[Queued], *, now: datetime) -> int:
    """Insert ``messages`` in the caller's transaction, in their order; how many were new."""
    rows = [
        {
            "channel": m.channel, "event": m.event.value, "dedupe": m.dedupe[:255],
            "flow": m.flow, "destination": m.destination, "title": m.message.title,
            "body": m.message.body, "created_at": now, "due_at": now, "attempts": 0,
        }
        for m in messages
    ]  # fmt: skip
    # One row per statement: a multi-row insert may assign ids out of the list's order
    # (PostgreSQL's unnest), and the id is the order a channel's messages go out in.
    inserted = 0
    for row in rows:
        found = await bulk.insert_rows(conn, outbox, [row], returning=("id",), skip_conflicts=True)
        inserted += len(found)
    return inserted


async def pending(conn: AsyncConnection, *, limit: int = PENDING_LIMIT) -> list[Pending]:
    """Unsent rows, up to ``limit`` per channel, oldest first (due or not: a channel's
    oldest holds up the rest). Per channel, so one with a long queue starves no other."""
    c = outbox.c
    unsent = c.sent_at.is_(None)
    channels = await conn.execute(select(c.channel).where(unsent).distinct())
    found: list[Pending] = []
    for name in sorted(row.channel for row in channels):
        query = (
            select(c.id, c.channel, c.event, c.title, c.body, c.due_at, c.attempts)
            .where(unsent, c.channel == name)
            .order_by(c.id)
            .limit(limit)
        )
        found += [Pending(*row) for row in await conn.execute(query)]
    return found


async def claim(conn: AsyncConnection, row: Pending, *, until: datetime) -> bool:
    """Take ``row`` for a send: True if no other daemon took it (or sent it) meanwhile."""
    c = outbox.c
    statement = (
        update(outbox)
        .where(c.id == row.id, c.due_at == row.due_at, c.sent_at.is_(None))
        .values(due_at=until)
    )
    return bool((await conn.execute(statement)).rowcount == 1)


async def mark_sent(conn: AsyncConnection, row_id: int, *, now: datetime) -> None:
    """The row was sent."""
    c = outbox.c
    await conn.execute(
        update(outbox)
        .where(c.id == row_id)
        .values(sent_at=now, attempts=c.attempts + 1, last_error=None)
    )


async def mark_failed(conn: AsyncConnection, row: Pending, *, error: str, due: datetime) -> None:
    """A try failed: count it, keep ``error`` (no secrets in it) and try again at ``due``."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.id == row.id, outbox.c.sent_at.is_(None))
        .values(attempts=row.attempts + 1, last_error=error[:500], due_at=due)
    )


async def drop_channels(conn: AsyncConnection, channels: Iterable[str]) -> dict[str, int]:
    """Delete the unsent rows of ``channels`` (removed from the config); how many each."""
    gone = list(channels)
    c = outbox.c
    unsent = c.sent_at.is_(None) & c.channel.in_(gone)
    counts = {
        row.channel: int(row.n)
        for row in await conn.execute(
            select(c.channel, func.count().label("n")).where(unsent).group_by(c.channel)
        )
    }
    if counts:
        await conn.execute(delete(outbox).where(unsent))
    return counts


async def prune_sent(conn: AsyncConnection, *, now: datetime, keep: timedelta = KEEP_SENT) -> int:
    """Delete rows sent longer than ``keep`` ago; how many."""
    statement = delete(outbox).where(outbox.c.sent_at < now - keep)
    return int((await conn.execute(statement)).rowcount)
