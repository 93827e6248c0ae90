"""Recovery: the spool files of processes that died, replayed from their committed mark.

Each orphan (`probe.store.spool.Spool.open`) is read from the position the database has
committed for it and written in batches, each of which moves that position in its own
transaction, so an interrupted replay is finished later without a double. A replayed file
is deleted. A file with a record of a version this daemon does not read was written by a
newer daemon: what comes before that record is replayed, and the file is left, whole, for
a daemon that reads it.

    >>> replayed = await replay(orphans, spool=spool, engine=engine, write=write,
    ...                         batch_size=2000, skipped=count)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.store import queries
from probe.store.spool import Spool, Spooled, UnknownVersion
from probe.store.spool import read as read_spool

log = structlog.get_logger("probe.store")

# Writes one batch, retrying while the database is away (`Store`'s).
Write = Callable[[Sequence[Spooled]], Awaitable[None]]


async def replay(
    orphans: Sequence[Path],
    *,
    spool: Spool,
    engine: AsyncEngine,
    write: Write,
    batch_size: int,
    skipped: Callable[[str], None],
) -> int:
    """Replay every orphan; the number of records written. ``skipped`` counts the records
    that could not be read (``spool_damaged``)."""
    replayed = 0
    for path in orphans:
        async with engine.connect() as conn:
            start = await queries.spool_position(conn, path.name)
        try:
            count = await _replay_file(path, start, write, batch_size, skipped)
        except UnknownVersion as exc:
            # Written by a newer daemon: the file is left for that daemon, and this one says
            # so and goes on.
            log.error("spool_not_replayed", file=path.name, error=str(exc))
            continue
        spool.forget(path.name)
        log.info("spool_replayed", file=path.name, records=count, from_byte=start)
        replayed += count
    return replayed


async def _replay_file(
    path: Path, start: int, write: Write, batch_size: int, skipped: Callable[[str], None]
) -> int:
    """Write the records of ``path`` after byte ``start``; on `UnknownVersion`, write those
    before it, then raise it."""
    count = 0
    chunk: list[Spooled] = []
    try:
        for spooled in read_spool(path, start, skipped=skipped):
            chunk.append(spooled)
            if len(chunk) >= batch_size:
                await write(chunk)
                count, chunk = count + len(chunk), []
    except UnknownVersion:
        if chunk:
            await write(chunk)
        raise
    if chunk:
        await write(chunk)
    return count + len(chunk)
