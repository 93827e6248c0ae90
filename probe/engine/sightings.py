"""Where a pushed sighting comes from: our own listener, or another node's, from the store.

    sighting, remote = await first_sighting(observer, feed, "labka", message, deadline)

Active-active: an engine may forward a probe to any node's listener, so a node waits for
whichever comes first, its own listener's sighting or one another node stored.
"""

from __future__ import annotations

import asyncio

from probe.model import ProbeMessage, Sighting
from probe.store.feed import SightingFeed
from probe.transports import Observer


async def first_sighting(
    observer: Observer,
    feed: SightingFeed,
    destination: str,
    message: ProbeMessage,
    deadline: float,
) -> tuple[Sighting | None, bool]:
    """Whichever comes first: our own listener's sighting, or another node's from the
    store (active-active: the engine may forward to any node). True: another node's."""
    local = asyncio.ensure_future(observer.expect(message, deadline))
    shared = asyncio.ensure_future(feed.wait(message.probe_id, destination, deadline))
    try:
        await asyncio.wait({local, shared}, return_when=asyncio.FIRST_COMPLETED)
        found = shared.result() if shared.done() and not local.done() else None
        if found is None:
            return await local, False
        local.cancel()
        seen_at, copies = found
        return Sighting(message.probe_id, destination, seen_at, 0.0, count=copies), True
    finally:
        for task in (local, shared):
            if not task.done():
                task.cancel()
        await asyncio.gather(local, shared, return_exceptions=True)
