"""Store housekeeping: pruning raw rows past retention, and rebuilding rollups."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.errors import StoreError
from probe.model import utcnow
from probe.store import rollup
from probe.store.connection import create_engine, safe_url
from probe.store.tables import probes, results, sightings


async def prune_raw(engine: AsyncEngine, retention: float) -> int:
    """Delete probes, sightings and results older than ``retention`` seconds; keep rollups."""
    cutoff = utcnow() - timedelta(seconds=retention)
    old = select(probes.c.probe_id).where(probes.c.slot_at < cutoff).scalar_subquery()
    deleted = 0
    try:
        async with engine.begin() as conn:
            for statement in (
                delete(sightings).where(sightings.c.probe_id.in_(old)),
                delete(results).where(results.c.slot_at < cutoff),
                delete(probes).where(probes.c.slot_at < cutoff),
            ):
                deleted += (await conn.execute(statement)).rowcount
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot prune: {type(exc).__name__}") from exc
    return deleted


async def prune_url(url: str, retention: float) -> int:
    """`prune_raw` on a store named by URL (for ``probe db prune``)."""
    engine = create_engine(url)
    try:
        return await prune_raw(engine, retention)
    finally:
        await engine.dispose()


async def rebuild_rollups(url: str, *, intervals: Mapping[str, float] | None = None) -> int:
    """Recompute rollups and incidents from the raw results; returns how many were read.

    ``intervals`` (flow name -> seconds) fills in the span of results stored before spans
    were (schema 0005), so coverage and time availability can be reckoned for them too.
    """
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for flow, seconds in (intervals or {}).items():
                await conn.execute(
                    update(results)
                    .where(results.c.flow == flow, results.c.span_s.is_(None))
                    .values(span_s=seconds)
                )
            return await rollup.rebuild(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot rebuild rollups in {safe_url(url)}: {exc}") from exc
    finally:
        await engine.dispose()
