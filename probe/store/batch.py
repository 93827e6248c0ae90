"""The statements of the write path: slot claims, and one batch in one transaction.

A batch writes, in its caller's transaction: the claims taken locally while the database
was away, the send receipts, the sightings and the results, the rollups and incident
watermarks of the results it really inserted, and how far into each spool file it reaches
(`probe.store.spool`). So a batch replayed after a crash, or retried, writes nothing twice.

    >>> async with engine.begin() as conn:
    ...     won = await insert_claims(conn, [claim])        # the probe ids that got their slot
    >>> async with engine.begin() as conn:
    ...     await write_batch(conn, spooled, conflicts=set())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import delete, exists
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.model import Result, Sighting, utcnow
from probe.store import bulk, queries, rollup
from probe.store.rows import (
    ProbeRow,
    SentRow,
    derived_of,
    probe_row,
    result_row,
    sent_row,
    sighting_row,
)
from probe.store.spool import Spooled
from probe.store.tables import probes, results, sightings, spool_marks

log = structlog.get_logger("probe.store")


def _insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (the store opens only these two)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def insert_claims(conn: AsyncConnection, rows: Sequence[ProbeRow]) -> set[str]:
    """Insert the probes whose (flow, slot) is free; the ids of those inserted."""
    statement = (
        _insert(conn)(probes)
        .on_conflict_do_nothing(index_elements=["flow", "slot_at"])
        .returning(probes.c.probe_id)
    )
    result = await conn.execute(statement, [probe_row(row) for row in rows])
    return {row.probe_id for row in result}


async def write_batch(
    conn: AsyncConnection, batch: Sequence[Spooled], *, conflicts: set[str]
) -> None:
    """Write ``batch`` in the transaction of ``conn``.

    ``conflicts``: probe ids of local claims another daemon had taken first; their items are
    left out, and the claims found so now are added to it.
    """
    claims = [s.item for s in batch if isinstance(s.item, ProbeRow)]
    if claims:
        await _insert_local_claims(conn, claims, conflicts)
    items = [s.item for s in batch if s.item.probe_id not in conflicts]
    sent = [sent_row(i) for i in items if isinstance(i, SentRow)]
    seen = [sighting_row(i) for i in items if isinstance(i, Sighting)]
    done = [i for i in items if isinstance(i, Result)]
    await bulk.insert_rows(conn, sightings, seen)
    await bulk.update_rows(conn, probes, sent, key=("probe_id",))
    if done:
        await _insert_results(conn, done)
    await _mark(conn, batch)


async def _insert_results(conn: AsyncConnection, done: list[Result]) -> None:
    # Idempotent: a result replayed after a restart changes nothing, rollups included,
    # since only rows really inserted are rolled up.
    returned = await bulk.insert_rows(
        conn, results, [result_row(r) for r in done], returning=("probe_id", "destination"),
        skip_conflicts=True,
    )  # fmt: skip
    inserted = {(r.probe_id, r.destination) for r in returned}
    fresh = []
    for r in done:
        # Only the copy the database inserted: a replay in the same batch is not.
        if (r.probe_id, r.destination) in inserted:
            inserted.discard((r.probe_id, r.destination))
            if not r.adhoc:  # `probe once --store`: on record, in no statistic
                fresh.append(derived_of(r))
    await rollup.apply(conn, fresh)


async def _insert_local_claims(
    conn: AsyncConnection, claims: list[ProbeRow], conflicts: set[str]
) -> None:
    """Insert slots claimed while the database was away; note the ones lost to a peer."""
    statement = _insert(conn)(probes).on_conflict_do_nothing().returning(probes.c.probe_id)
    won = {r.probe_id for r in await conn.execute(statement, [probe_row(c) for c in claims])}
    others = [c for c in claims if c.probe_id not in won]
    if not others:
        return
    already = await queries.stored_probe_ids(conn, [c.probe_id for c in others])  # a replay
    taken_back = await _take_back(conn, [c for c in others if c.probe_id not in already])
    for claim in others:
        if claim.probe_id not in already and claim.probe_id not in taken_back:
            # Another daemon claimed this slot while we could not see the database: the
            # slot was probed twice. Its probe stands; ours is dropped, and said so.
            conflicts.add(claim.probe_id)
            log.warning(
                "local_claim_conflict",
                flow=claim.flow,
                slot=claim.slot_at.isoformat(),
                probe_id=claim.probe_id,
            )


async def _take_back(conn: AsyncConnection, claims: list[ProbeRow]) -> set[str]:
    """Slots that hold this daemon's own unsent claim, given to the local claims made there.

    A claim batch can commit in the database while the connection dies before the commit is
    acknowledged: the daemon then claims the same slots locally and sends those probes. The
    stored claims were never sent and have no result, so the local ones replace them.
    """
    mine = [c for c in claims if c.node is not None]
    for claim in mine:
        unsent = (
            delete(probes)
            .where(probes.c.flow == claim.flow, probes.c.slot_at == claim.slot_at)
            .where(probes.c.node == claim.node, probes.c.sent_at.is_(None))
            .where(~exists().where(results.c.probe_id == probes.c.probe_id))
        )
        await conn.execute(unsent)
    if not mine:
        return set()
    statement = _insert(conn)(probes).on_conflict_do_nothing().returning(probes.c.probe_id)
    return {r.probe_id for r in await conn.execute(statement, [probe_row(c) for c in mine])}


async def _mark(conn: AsyncConnection, batch: Sequence[Spooled]) -> None:
    """Record how far into each spool file this batch reaches, in its transaction."""
    ends: dict[str, int] = {}
    for spooled in batch:
        if spooled.file is not None:
            ends[spooled.file] = max(ends.get(spooled.file, 0), spooled.end)
    if not ends:
        return
    now = utcnow()
    for name, end in ends.items():
        statement = _insert(conn)(spool_marks).values(spool=name, position=end, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=["spool"],
            set_={"position": statement.excluded.position, "updated_at": now},
        )
        await conn.execute(statement)
