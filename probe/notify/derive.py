"""One tick of the notifier: each pair's state moved along its new results, in slot order,
and the messages of what changed queued, in one transaction.

    >>> queued = await derive(engine, config, now=utcnow())   # the notifier, every second

Per flow and destination, the incident derivation's watermark (`probe.store.incidents`,
table ``watermarks``) says how far the results are final in slot order. The notifier
reads, per pair, the results with a slot in (``notify_state.slot_at``, watermark], ad hoc
ones left out, feeds them to the state machine (`probe.notify.state`), and writes the new
state and the queued messages in one transaction, with the pairs' ``notify_state`` rows
locked in key order: of two daemons on one PostgreSQL, the second waits, then finds the
state moved on and nothing to do; the outbox's unique key catches the rest.

- **First look.** A pair with no ``notify_state`` row yet starts up, at `FIRST_LOOK`
  (10 minutes) before now: results of the last minutes count (so a pair that is failing
  when notifications are switched on is reported), older history does not.
- **Catching up.** A pair whose notify watermark is more than `CATCH_UP` (6 hours) behind
  is read from then on only: a daemon that was stopped, or a store that was away, does not
  replay a day of old changes to people.
- A result that arrives behind the notify watermark (a spool replayed late, a probe
  resumed after a restart) moves the incidents back, not the notifications: a message
  that was sent stays sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from probe.config.models import Config
from probe.notify import outbox
from probe.notify.queue import state_messages
from probe.notify.state import PairState, feed, remind
from probe.store import bulk
from probe.store.rows import DERIVED_COLUMNS, derived_from
from probe.store.tables import notify_state, results, watermarks

FIRST_LOOK = timedelta(minutes=10)
CATCH_UP = timedelta(hours=6)
_CHUNK = 100  # pairs per transaction: each pair's read range is its own condition

Pair = tuple[str, str]


def configured_pairs(config: Config) -> set[Pair]:
    """Every (flow, destination) of the config; a check's destination is ""."""
    return {
        (flow.name, dest)
        for flow in config.flows
        for dest in [d.name for d in flow.destinations] or [""]
    }


async def derive(engine: AsyncEngine, config: Config, *, now: datetime) -> int:
    """Move every pair of ``config`` that has new results or a reminder due; how many
    messages were queued."""
    async with engine.connect() as conn:
        found = await _candidates(conn, config, now=now)
    pairs = configured_pairs(config)
    keys = sorted(key for key in found if key in pairs)
    queued = 0
    for start in range(0, len(keys), _CHUNK):
        async with engine.begin() as conn:
            queued += await advance(conn, keys[start : start + _CHUNK], config, now=now)
    return queued


async def _candidates(conn: AsyncConnection, config: Config, *, now: datetime) -> list[Pair]:
    """Pairs whose watermark is past their notify watermark, or seen for the first time,
    or down with a reminder due. Read without locks: `advance` reads again, locked."""
    w, n = watermarks.c, notify_state.c
    interval = config.notify.defaults.reminder_interval
    last = now - timedelta(seconds=interval)
    due = and_(n.down, or_(n.reminded_at.is_(None), n.reminded_at <= last)) if interval else false()
    query = (
        select(w.flow, w.destination)
        .select_from(
            watermarks.outerjoin(
                notify_state, and_(n.flow == w.flow, n.destination == w.destination)
            )
        )
        .where(w.slot_at.is_not(None))
        .where(or_(n.flow.is_(None), n.slot_at.is_(None), w.slot_at > n.slot_at, due))
    )
    return [(row.flow, row.destination) for row in await conn.execute(query)]


async def advance(
    conn: AsyncConnection, keys: Sequence[Pair], config: Config, *, now: datetime
) -> int:
    """Feed ``keys`` their new results and reminders and queue the messages, in the
    caller's transaction; how many messages were queued."""
    rules = config.notify.defaults
    states = await _lock(conn, keys, now=now)
    marks = await _watermarks(conn, keys)
    ranges: dict[Pair, tuple[datetime, datetime]] = {}
    for key, state in states.items():
        state.slot_at = low = max(state.slot_at or now - FIRST_LOOK, now - CATCH_UP)
        high = marks.get(key)
        if high is not None and high > low:
            ranges[key] = (low, high)
    messages = []
    for point in await _results(conn, ranges):
        key = (point.flow, point.destination)
        change = feed(states[key], point, rules, now=now)
        if change is not None:
            messages += state_messages(config, *key, change, now=now)
    for key, state in states.items():
        if key in ranges:  # read up to the watermark, whatever the last result's slot
            state.slot_at = ranges[key][1]
        change = remind(state, rules, now=now)
        if change is not None:
            messages += state_messages(config, *key, change, now=now)
    rows = [{"flow": f, "destination": d, **s.as_row()} for (f, d), s in states.items()]
    await bulk.update_rows(conn, notify_state, rows, key=("flow", "destination"))
    return await outbox.queue(conn, messages, now=now)


async def _lock(
    conn: AsyncConnection, keys: Sequence[Pair], *, now: datetime
) -> dict[Pair, PairState]:
    """The states of ``keys``, created where missing (at `FIRST_LOOK`) and locked, in key
    order, so two daemons' ticks cannot lock each other's rows crosswise."""
    keys = sorted(keys)
    states = await _select_locked(conn, keys)
    missing = [key for key in keys if key not in states]
    if missing:
        start = now - FIRST_LOOK
        values = [
            {"flow": f, "destination": d, "slot_at": start, "down": False, "bad_run": 0,
             "good_run": 0}
            for f, d in missing
        ]  # fmt: skip
        await bulk.insert_rows(conn, notify_state, values, skip_conflicts=True)
        states.update(await _select_locked(conn, missing))
    return states


async def _select_locked(conn: AsyncConnection, keys: Sequence[Pair]) -> dict[Pair, PairState]:
    n = notify_state.c
    query = (
        select(notify_state)
        .where(tuple_(n.flow, n.destination).in_(list(keys)))
        .order_by(n.flow, n.destination)
        .with_for_update()
    )
    rows = (await conn.execute(query)).mappings()
    return {(row["flow"], row["destination"]): PairState.from_row(row) for row in rows}


async def _watermarks(conn: AsyncConnection, keys: Sequence[Pair]) -> dict[Pair, datetime]:
    """The incident watermarks of ``keys`` (read, not locked: the writer holds those)."""
    w = watermarks.c
    query = select(w.flow, w.destination, w.slot_at).where(
        tuple_(w.flow, w.destination).in_(list(keys)), w.slot_at.is_not(None)
    )
    return {(r.flow, r.destination): r.slot_at for r in await conn.execute(query)}


async def _results(
    conn: AsyncConnection, ranges: dict[Pair, tuple[datetime, datetime]]
) -> Iterable[Any]:
    """The results of each pair in its range (low, high], ad hoc ones left out, in slot
    order."""
    if not ranges:
        return []
    c = results.c
    within = [
        and_(c.flow == f, c.destination == d, c.slot_at > low, c.slot_at <= high)
        for (f, d), (low, high) in ranges.items()
    ]
    query = (
        select(*DERIVED_COLUMNS)
        .where(or_(*within), c.adhoc.is_(False))
        .order_by(c.slot_at, c.flow, c.destination)
    )
    return [derived_from(row) for row in await conn.execute(query)]
