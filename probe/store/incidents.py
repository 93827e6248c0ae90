"""Incidents, derived from results in slot order behind a watermark.

Results resolve out of slot order (a lost probe resolves at its deadline, after later
ones), so for each flow and destination the incident state machine reads stored results in
slot order, from its watermark (the newest slot fed) up to the oldest slot still waiting.
That probe holds the watermark until its deadline plus `GRACE`, then is passed (not measured).

A result that arrives behind the watermark (a replayed spool, a probe resumed after a
restart or adopted from a dead peer, a passed probe resolving after all) rewinds the pair:
its incidents from that slot on are derived again, by the same machine. `rebuild` is the
same rewind from the first result, so both paths feed the machine the same sequence.

    >>> machine = Machine("gs-adt", "labka")
    >>> for slot, outcome in ((0, "delivered"), (1, "lost"), (2, "delivered")):
    ...     machine.feed(Point(EPOCH + timedelta(seconds=slot), outcome, 1.0, False))
    >>> [(i["start_at"].second, i["end_at"].second, i["cause"]) for i in machine.closed]
    [(1, 2, 'lost')]

An incident is a run of consecutive bad results (anything but delivered) outside
maintenance. It ends at the slot of the next delivered result (``ended_by="recovered"``),
or where measurement stops: before a gap with no results (the daemon was down, a slot was
skipped) or at a probe-side fault (``ended_by="not_measured"``). Maintenance results
neither open nor end one. So incident time is always measured time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import measured
from probe.store import bulk
from probe.store.rows import DERIVED_COLUMNS, derived_from
from probe.store.tables import incidents, probes, results, watermarks

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Past its deadline plus this, a probe without a result no longer holds the watermark. The
# runner writes a lost result at the deadline, so this only covers a crash or a store delay.
GRACE = timedelta(seconds=30)
# Slots are aligned, but a slot plus a float interval can miss the next slot by a rounding.
_TOLERANCE = timedelta(milliseconds=5)
_CHUNK = 300  # pairs or ids per statement: well under every backend's parameter limit

Pair = tuple[str, str]


class Fed(Protocol):
    """What the machine reads of a result (a `Point`, or the store's `rows.Derived`)."""

    @property
    def slot(self) -> datetime: ...
    @property
    def outcome(self) -> str: ...
    @property
    def span(self) -> float | None: ...
    @property
    def maintenance(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Point:
    """A result as the machine sees it."""

    slot: datetime
    outcome: str
    span: float | None
    maintenance: bool
    reason: str | None = None


def _end(point: Fed) -> datetime | None:
    """Where the measurement of this slot ends (None: span unknown, or not measured)."""
    if not measured(point.reason):
        return point.slot
    return point.slot + timedelta(seconds=point.span) if point.span else None


@dataclass(slots=True)
class Machine:
    """The incident state of one flow and destination, fed results in slot order."""

    flow: str
    destination: str
    open: dict[str, Any] | None = None  # the open incident, as an `incidents` row
    watermark: datetime | None = None
    measured_until: datetime | None = None
    closed: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False  # the open incident loaded from the store was changed
    waiting: bool = False  # results after the watermark wait behind an unresolved slot

    def feed(self, point: Fed) -> None:
        gap = self.measured_until is not None and point.slot > self.measured_until + _TOLERANCE
        if self.open is not None and gap:
            assert self.measured_until is not None
            self._close(self.measured_until, "not_measured")
        if not measured(point.reason):
            if self.open is not None:
                self._close(point.slot, "not_measured")
        elif point.maintenance:
            pass
        elif point.outcome != "delivered":
            self._bad(point)
        elif self.open is not None:
            self._close(point.slot, "recovered")
        self.measured_until = _end(point)
        self.watermark = point.slot

    def _bad(self, point: Fed) -> None:
        if self.open is None:
            self.open = {
                "id": None, "flow": self.flow, "destination": self.destination,
                "start_at": point.slot, "last_bad_at": point.slot, "end_at": None,
                "cause": point.outcome, "bad_results": 1, "ended_by": None,
            }  # fmt: skip
            return
        self.open["last_bad_at"] = point.slot
        self.open["bad_results"] += 1
        self.changed = True

    def _close(self, end: datetime, ended_by: str) -> None:
        assert self.open is not None
        self.open["end_at"] = max(end, self.open["last_bad_at"])
        self.open["ended_by"] = ended_by
        self.closed.append(self.open)
        self.open = None


class FreshRow(Fed, Protocol):
    @property
    def flow(self) -> str: ...
    @property
    def destination(self) -> str: ...


async def advance(conn: AsyncConnection, fresh: Iterable[FreshRow], *, now: datetime) -> None:
    """Move the watermarks of the pairs that got new results, in the caller's transaction.

    ``fresh``: every result just inserted (`rows.Derived`). A pair whose new
    results lie behind its watermark is rewound to the oldest of them; one that has no
    watermark yet is read from its first result. A pair that had nothing waiting (no
    blocker when its watermark last moved) is fed ``fresh`` as it is, with no read back:
    the results after its watermark are exactly those.
    """
    points: dict[Pair, list[Fed]] = defaultdict(list)
    for row in fresh:
        points[(row.flow, row.destination)].append(row)
    earliest = {key: min(p.slot for p in found) for key, found in points.items()}
    await _advance(conn, earliest, points, now=now, stream=False)


async def _advance(
    conn: AsyncConnection,
    earliest: dict[Pair, datetime],
    points: dict[Pair, list[Fed]],
    *,
    now: datetime,
    stream: bool,
) -> None:
    if not earliest:
        return
    machines = await _lock(conn, list(earliest))
    # Behind its watermark, a result rewinds the pair. A pair with no watermark has fed
    # nothing yet: it is read from its first result (a rewind to the fresh slot would take
    # the results before it as fed, and some may be waiting behind an unresolved probe).
    rewind = {
        key: slot
        for key, slot in earliest.items()
        if (mark := machines[key].watermark) is not None and slot <= mark
    }
    await _rewind(conn, machines, rewind)
    await _load_open(conn, [m for k, m in machines.items() if k not in rewind])
    blocked = await _blockers(conn, machines, now=now)
    direct = {
        key: sorted(points[key], key=lambda p: p.slot)
        for key, machine in machines.items()
        if key in points and key not in rewind and machine.watermark is not None
        and not machine.waiting
    }  # fmt: skip
    for key, found in direct.items():
        stop = blocked.get(key)
        for point in found:
            if stop is not None and point.slot >= stop:
                break
            machines[key].feed(point)
    read = {key: m for key, m in machines.items() if key not in direct}
    await _feed(conn, read, blocked, stream=stream)
    await _save(conn, machines.values(), blocked)


async def rebuild(conn: AsyncConnection, *, now: datetime) -> None:
    """Derive every incident again from the raw results (rollups are rebuilt elsewhere)."""
    await conn.execute(delete(incidents))
    await conn.execute(delete(watermarks))
    query = select(results.c.flow, results.c.destination).distinct()
    pairs = [(r.flow, r.destination) for r in await conn.execute(query)]
    for start in range(0, len(pairs), _CHUNK):
        # Each pair from its first result, as a pair with no watermark is read.
        part = pairs[start : start + _CHUNK]
        await _advance(conn, dict.fromkeys(part, EPOCH), {}, now=now, stream=True)


async def _lock(conn: AsyncConnection, keys: list[Pair]) -> dict[Pair, Machine]:
    """The watermarks of ``keys``, created where missing and locked (another daemon waits).

    Always in key order, so two daemons' batches cannot lock each other's rows crosswise.
    """
    keys = sorted(keys)
    machines = await _select_locked(conn, keys)
    missing = [key for key in keys if key not in machines]
    if missing:  # a pair's first result: its watermark row, then locked like the rest
        values = [{"flow": f, "destination": d} for f, d in missing]
        await bulk.insert_rows(conn, watermarks, values, skip_conflicts=True)
        machines.update(await _select_locked(conn, missing))
    return machines


async def _select_locked(conn: AsyncConnection, keys: list[Pair]) -> dict[Pair, Machine]:
    wanted = set(keys)
    machines: dict[Pair, Machine] = {}
    for part in _chunks(sorted({flow for flow, _ in keys})):
        # By flow (the key's first column), sorted: a tuple IN of pairs cost a third of
        # the derivation on SQLite. Rows of other destinations are locked too; harmless.
        query = (
            select(watermarks)
            .where(watermarks.c.flow.in_(part))
            .order_by(watermarks.c.flow, watermarks.c.destination)
            .with_for_update()
        )
        for row in await conn.execute(query):
            if (row.flow, row.destination) in wanted:
                machines[(row.flow, row.destination)] = Machine(
                    row.flow, row.destination, watermark=row.slot_at,
                    measured_until=row.measured_until, waiting=row.blocked_at is not None,
                )  # fmt: skip
    return machines


async def _rewind(
    conn: AsyncConnection, machines: dict[Pair, Machine], rewind: dict[Pair, datetime]
) -> None:
    """Set each pair back to just before ``rewind[pair]``, deleting the incidents after it.

    An incident still open then, or ended at or after that slot, may change: it is deleted
    and the pair restarts at its first slot, where no incident is open.
    """
    for (flow, dest), slot in rewind.items():
        machine = machines[(flow, dest)]
        mine = and_(incidents.c.flow == flow, incidents.c.destination == dest)
        touched = or_(incidents.c.end_at.is_(None), incidents.c.end_at >= slot)
        starts = await conn.execute(select(incidents.c.start_at).where(mine, touched))
        restart = min([slot, *(r.start_at for r in starts)])
        await conn.execute(delete(incidents).where(mine, touched))
        before = (
            select(results.c.slot_at, results.c.span_s, results.c.reason)
            .where(results.c.flow == flow, results.c.destination == dest)
            .where(results.c.slot_at < restart, results.c.adhoc.is_(False))
            .order_by(results.c.slot_at.desc())
            .limit(1)
        )
        previous = (await conn.execute(before)).first()
        if previous is None:
            machine.watermark = machine.measured_until = None
        else:
            point = Point(previous.slot_at, "", previous.span_s, False, previous.reason)
            machine.watermark, machine.measured_until = point.slot, _end(point)
        machine.open = None


async def _load_open(conn: AsyncConnection, machines: list[Machine]) -> None:
    """Each machine's open incident, locked."""
    by_key = {(m.flow, m.destination): m for m in machines}
    for part in _chunks(sorted({flow for flow, _ in by_key})):
        query = (
            select(incidents)
            .where(incidents.c.flow.in_(part))
            .where(incidents.c.end_at.is_(None))
            .with_for_update()
        )
        for row in await conn.execute(query):
            machine = by_key.get((row.flow, row.destination))
            if machine is not None:
                machine.open = dict(row._mapping)


async def _blockers(
    conn: AsyncConnection, machines: dict[Pair, Machine], *, now: datetime
) -> dict[Pair, datetime]:
    """Per pair, the oldest slot after its watermark whose probe has no result for it yet
    and is not overdue. (One at or before the watermark rewinds the pair when it resolves.)"""
    keys = list(machines)
    flows = sorted({flow for flow, _ in keys})
    pending: list[tuple[str, str, datetime]] = []
    for part in _chunks(flows):
        query = select(probes.c.probe_id, probes.c.flow, probes.c.slot_at).where(
            probes.c.flow.in_(part), probes.c.deadline_at > now - GRACE
        )
        pending.extend((r.probe_id, r.flow, r.slot_at) for r in await conn.execute(query))
    done: set[tuple[str, str]] = set()
    c = results.c
    for part in _chunks([p for p, _, _ in pending]):
        query = select(c.probe_id, c.destination).where(c.probe_id.in_(part))
        done.update((r.probe_id, r.destination) for r in await conn.execute(query))
    dests: dict[str, list[str]] = defaultdict(list)
    for flow, dest in keys:
        dests[flow].append(dest)
    blocked: dict[Pair, datetime] = {}
    for probe_id, flow, slot in pending:
        for dest in dests[flow]:
            key = (flow, dest)
            if (probe_id, dest) in done or (key in blocked and slot >= blocked[key]):
                continue
            watermark = machines[key].watermark
            if watermark is None or slot > watermark:
                blocked[key] = slot
    return blocked


async def _feed(
    conn: AsyncConnection,
    machines: dict[Pair, Machine],
    blocked: dict[Pair, datetime],
    *,
    stream: bool,
) -> None:
    """Feed each machine its results after its watermark and before its blocker, in order.

    A batch reads only what follows the watermarks, a few rows, in one plain query: a
    server-side cursor left open by a cancelled write could keep SQLite's write lock."""
    by_watermark: dict[datetime | None, list[Pair]] = defaultdict(list)
    for key, machine in machines.items():
        by_watermark[machine.watermark].append(key)
    for watermark, keys in by_watermark.items():
        # A pair read from its first result may have a long history (a store upgraded
        # from before watermarks): read in partitions then.
        whole = stream or watermark is None
        for part in _chunks(keys):
            query = (
                select(*DERIVED_COLUMNS)
                .where(tuple_(results.c.flow, results.c.destination).in_(part))
                .where(results.c.adhoc.is_(False))
                .order_by(results.c.slot_at)
            )
            if watermark is not None:
                query = query.where(results.c.slot_at > watermark)
            async for rows in _rows(conn, query, stream=whole):
                for point in map(derived_from, rows):
                    key = (point.flow, point.destination)
                    stop = blocked.get(key)
                    if stop is None or point.slot < stop:
                        machines[key].feed(point)


async def _save(
    conn: AsyncConnection, machines: Iterable[Machine], blocked: dict[Pair, datetime]
) -> None:
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for m in machines:
        for incident in [*m.closed, *([m.open] if m.open is not None else [])]:
            if incident["id"] is None:
                new.append({k: v for k, v in incident.items() if k != "id"})
            elif incident is not m.open or m.changed:
                changed.append(incident)
        marks.append(
            {
                "flow": m.flow, "destination": m.destination, "slot_at": m.watermark,
                "measured_until": m.measured_until,
                "blocked_at": blocked.get((m.flow, m.destination)),
            }
        )  # fmt: skip
        m.closed = []
    await bulk.insert_rows(conn, incidents, new)
    await bulk.update_rows(conn, incidents, changed, key=("id",))
    await bulk.update_rows(conn, watermarks, marks, key=("flow", "destination"))


async def _rows(conn: AsyncConnection, query: Any, *, stream: bool) -> AsyncIterator[Sequence[Any]]:
    if not stream:
        yield (await conn.execute(query)).all()
        return
    result = await conn.stream(query.execution_options(yield_per=10_000))
    try:  # a write cut off mid-read (an outage, a shutdown) must not leave a cursor open
        async for rows in result.partitions():
            yield rows
    finally:
        await result.close()


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
