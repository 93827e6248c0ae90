"""Reliability figures for issue 13: what is lost, counted, skipped and logged under faults.

    python bench/reliability.py            # needs root (tmpfs) and PROBE_TEST_POSTGRES_URL

Scenario "full disk": the spool on a 2 MB tmpfs with 40 KB free, PostgreSQL cut through a
TCP proxy, claims, send receipts and results for PROBES probes written while it is away,
with the in-memory bound lowered to MEMORY so that it overflows too. Then the database
comes back. It prints what the store holds, what was dropped (and counted), the spool
errors, the log lines by event, and the RSS growth. Every probe must be either stored or
counted as dropped: `stored + dropped == written` for each kind of item.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from structlog.testing import capture_logs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.store import backlog, create_engine, open_store
from probe.store.migrate import upgrade
from probe.store.tables import probes, results
from tests.helpers import proxied_postgres
from tests.test_spool_full import _rows

PROBES = 20_000
MEMORY = 5_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def full_disk(url: str, mount: Path) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(results.delete())
        await conn.execute(probes.delete())
    await engine.dispose()
    proxy, proxied = await proxied_postgres(url, migrate=False)
    backlog.MEMORY_LIMIT = MEMORY
    rss_before = _rss_mb()
    with capture_logs() as logs:
        store = await open_store(proxied, flush_interval=0.05, spool=mount / "spool", node="a")
        drops: Counter[str] = Counter()
        store.on_drop = lambda reason: drops.update([reason])
        store.start()
        await proxy.cut()
        for i in range(PROBES):
            claim, sent, result = _rows(i)
            await asyncio.wait_for(store.claim(claim), timeout=10)
            store.record_sent(sent)
            store.add_result(result)
        rss_peak = _rss_mb()
        await proxy.start()
        while store.backlog:  # noqa: ASYNC110 (a benchmark polls the figure it prints)
            await asyncio.sleep(0.1)
        await store.close()
    await proxy.close()
    engine = create_engine(url)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(probes))
        sent = await conn.scalar(
            select(func.count()).select_from(probes).where(probes.c.sent_at.is_not(None))
        )
        done = await conn.scalar(select(func.count()).select_from(results))
    await engine.dispose()
    events = Counter(e["event"] for e in logs)
    print(f"full disk: {PROBES} probes written while the database was away, memory bound {MEMORY}")
    print(f"  stored: probes {stored}, sent receipts {sent}, results {done}")
    print(f"  dropped and counted: {store.dropped} {dict(drops)}")
    kept = (stored or 0) + (sent or 0) + (done or 0)
    print(f"  claims lost: {PROBES - (stored or 0)}")
    print(f"  unaccounted: {3 * PROBES - kept - store.dropped}")
    print(f"  spool errors: {store.spool_errors}")
    print(f"  log lines: {sum(events.values())} {dict(events)}")
    print(f"  max RSS: {rss_before:.0f} MB before, {rss_peak:.0f} MB at the peak")


def main() -> None:
    url = os.environ.get("PROBE_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set PROBE_TEST_POSTGRES_URL")
    with tempfile.TemporaryDirectory() as scratch:
        mount = Path(scratch)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", scratch], check=True)
        try:
            with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
                filler.write(b"x" * (2 * 1024 * 1024 - 40 * 1024))
            asyncio.run(full_disk(url, mount))
        finally:
            subprocess.run(["umount", "-l", scratch], check=False)


if __name__ == "__main__":
    main()
