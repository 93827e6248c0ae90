"""The daemon's schedule of housekeeping: raw rows past retention are deleted every hour.

    supervisor.spawn("prune", lambda: prune_forever(store, retention=lambda: cfg.raw))

The deletion itself is the store's (`probe.store.housekeeping.prune_raw`, also run by
``probe db prune``); hourly rollups are kept, so the monthly report never needs raw rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from probe.errors import StoreError
from probe.store import Store
from probe.store.housekeeping import prune_raw

log = structlog.get_logger("probe.engine.pruning")

PRUNE_EVERY = 3600.0  # seconds between two prunes; the first is at start


async def prune_forever(
    store: Store, *, retention: Callable[[], float], every: float = PRUNE_EVERY
) -> None:
    """Delete raw rows older than ``retention()`` seconds (read each time: a reload may
    change it) now and every ``every`` seconds. A failed prune is logged and tried again
    at the next; any other error ends the task, for its supervisor to restart."""
    while True:
        try:
            deleted = await prune_raw(store.engine, retention())
            if deleted:
                log.info("pruned", rows=deleted)
        except StoreError as exc:
            log.warning("prune_failed", error=str(exc))
        await asyncio.sleep(every)
