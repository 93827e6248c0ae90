"""Sightings that other daemons stored, for the probes this daemon waits on.

In active-active, an engine forwards a message to whichever node its connection reaches,
so the node that sent a probe may not be the one that sees it arrive. Every node records
what its listeners see in the store (before the ACK), and the sender looks there too: one
query per ``every`` seconds for all its probes in flight, however many there are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger("probe.store.feed")

_CHUNK = 500  # probe ids per query

Found = tuple[datetime, int]  # (first seen_at, copies)


class SightingSource(Protocol):
    async def sightings_for(
        self, probe_ids: Sequence[str], *, other_nodes: bool = False
    ) -> dict[tuple[str, str], Found]: ...


class SightingFeed:
    """`wait` for a sighting another node stored; polls only while someone waits."""

    def __init__(self, store: SightingSource, *, every: float = 0.5) -> None:
        self.store = store
        self.every = every
        self.queries = 0
        self._waiters: dict[tuple[str, str], set[asyncio.Future[Found]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait(self, probe_id: str, destination: str, deadline: float) -> Found | None:
        """The first sighting of ``probe_id`` at ``destination`` by another node, or None at
        the ``deadline`` (monotonic)."""
        key = (probe_id, destination)
        future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="sighting-feed")
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + self.every):
                return await future
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[key]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.every)
            ids = sorted({probe_id for probe_id, _ in self._waiters})
            for start in range(0, len(ids), _CHUNK):
                try:
                    found = await self.store.sightings_for(
                        ids[start : start + _CHUNK], other_nodes=True
                    )
                except (SQLAlchemyError, OSError) as exc:
                    log.debug("sighting_feed_failed", error=type(exc).__name__)
                    break  # the store is away; the local listener still works
                self.queries += 1
                for key, value in found.items():
                    for future in self._waiters.get(key, ()):
                        if not future.done():
                            future.set_result(value)
