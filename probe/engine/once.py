"""``probe once``: every flow probed once, results printed, exit 1 if any is bad."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from probe.config.loader import LoadedConfig
from probe.config.models import FlowSpec, resolve_flows
from probe.engine.runner import Runner
from probe.errors import ConfigError
from probe.logs import redactor
from probe.metrics.registry import Metrics
from probe.model import Result, utcnow
from probe.store import open_store
from probe.transports import Resources


async def run_once(loaded: LoadedConfig, *, only: str | None = None, store: bool = False) -> int:
    """Probe each flow (or just ``only``) once, at slot = now, and print the results.

    Nothing reaches the configured store unless ``store``: a run next to the daemon must not
    change the production statistics. With ``store`` the results are written marked ad hoc,
    kept for the record and left out of rollups, incidents and the report.
    """
    config = loaded.config
    redactor.update(loaded.secrets)
    flows = [f for f in resolve_flows(config) if only is None or f.name == only]
    if not flows:
        raise ConfigError([f"no flow named {only!r}"])
    with tempfile.TemporaryDirectory(prefix="probe-once-") as scratch:
        url = config.store.url if store else f"sqlite+aiosqlite:///{Path(scratch) / 'once.db'}"
        return await _run(loaded, flows, url, adhoc=store)


async def _run(loaded: LoadedConfig, flows: list[FlowSpec], url: str, *, adhoc: bool) -> int:
    config = loaded.config
    store = await open_store(url, flush_interval=config.store.flush_interval)
    store.start()
    clients = Resources()
    runner = Runner(store=store, metrics=Metrics(config.labels), adhoc=adhoc)
    try:
        # A listener that cannot bind (the daemon holds the port) is reported per result.
        await runner.open(flows, clients, strict=False)
        slot = utcnow()  # not a scheduled slot: it cannot collide with the daemon's
        batches = await asyncio.gather(*(runner.run_slot(flow, slot) for flow in flows))
    finally:
        await runner.aclose()
        await clients.aclose()
        await store.close()
    results = [r for batch in batches for r in batch or []]
    _print(results)
    return 0 if results and all(r.outcome.good for r in results) else 1


def _print(results: list[Result]) -> None:
    rows = [("FLOW", "DESTINATION", "OUTCOME", "LATENCY", "REASON")]
    for r in results:
        latency = "-" if r.latency is None else f"{r.latency * 1000:.1f}ms"
        rows.append((r.flow, r.destination or "(check)", str(r.outcome), latency, r.reason or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
