"""The copies of each probe message a listener has seen, and those waiting for them.

An arrival may come before anyone expects it (an engine can forward before our source has
its own ACK), so arrivals are kept by probe id for `ARRIVAL_TTL` seconds:

    arrivals.add(probe_id, Arrival(seen_mono, seen_at, frozenset({"MSH-10"}), {}))
    first = await arrivals.first(probe_id, match="MSH-10", deadline=d, running=is_up)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Arrivals nobody waits for are kept this long: sightings are in the store from the moment
# they arrive, so memory only bridges an arrival that beats its own `expect` by moments.
ARRIVAL_TTL = 60.0
MAX_TRACKED = 10_000  # probe ids remembered at most, whatever a peer sends
MAX_COPIES = 1_000  # copies remembered per probe id
_PRUNE_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class Arrival:
    """One copy of a probe message: when it was read, where its id was, compared fields."""

    seen_mono: float
    seen_at: datetime
    found_in: frozenset[str]
    fields: Mapping[str, str]


@dataclass(slots=True)
class _Track:
    created: float
    copies: list[Arrival] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)


class Arrivals:
    """Copies by probe id, in time order, for `ARRIVAL_TTL` and at most `MAX_TRACKED` ids."""

    def __init__(self) -> None:
        self._tracks: dict[str, _Track] = {}
        self._pruned = 0.0

    def copies(self, probe_id: str, *, match: str) -> list[Arrival]:
        """The copies seen so far whose ``match`` field carried ``probe_id``."""
        track = self._tracks.get(probe_id)
        return [c for c in track.copies if match in c.found_in] if track else []

    async def first(
        self, probe_id: str, *, match: str, deadline: float, running: Callable[[], bool]
    ) -> Arrival | None:
        """The first copy of ``probe_id`` (in ``match``), waiting for it up to ``deadline``.

        None at the deadline, or as soon as ``running()`` is false after a `wake_all`.
        """
        while True:
            seen = self.copies(probe_id, match=match)
            if seen:
                return seen[0]
            now = time.monotonic()
            if not running() or now >= deadline:
                return None
            track = self._tracks.setdefault(probe_id, _Track(now))
            waiter = asyncio.get_running_loop().create_future()
            track.waiters.add(waiter)
            try:
                async with asyncio.timeout(deadline - now):
                    await waiter
            except TimeoutError:
                pass  # the loop looks once more, then gives up
            finally:
                track.waiters.discard(waiter)
                if not track.copies and not track.waiters and self._tracks.get(probe_id) is track:
                    del self._tracks[probe_id]

    def add(self, probe_id: str, arrival: Arrival) -> None:
        """Keep ``arrival`` and wake those waiting for ``probe_id``."""
        self._prune(arrival.seen_mono)  # at most every _PRUNE_EVERY, unless over the cap
        track = self._tracks.get(probe_id)
        if track is None:
            track = self._tracks[probe_id] = _Track(arrival.seen_mono)
        if len(track.copies) < MAX_COPIES:
            track.copies.append(arrival)
        _wake(track)

    def wake_all(self) -> None:
        """Wake everyone waiting, so that each looks again (the listener is closing)."""
        for track in self._tracks.values():
            _wake(track)

    def _prune(self, now: float) -> None:
        """Forget probe ids older than the TTL, and the oldest beyond `MAX_TRACKED`."""
        if now - self._pruned < _PRUNE_EVERY and len(self._tracks) < MAX_TRACKED:
            return
        self._pruned = now
        for probe_id, track in list(self._tracks.items()):
            young = now - track.created < ARRIVAL_TTL
            if young and len(self._tracks) < MAX_TRACKED:
                break  # ids were added in time order: the rest are younger still
            if not track.waiters:
                del self._tracks[probe_id]


def _wake(track: _Track) -> None:
    for waiter in track.waiters:
        if not waiter.done():
            waiter.set_result(None)
