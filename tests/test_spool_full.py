"""A full spool disk during a database outage: probing goes on, nothing is lost uncounted.

The spool lives on a 2 MB tmpfs that is nearly full, and PostgreSQL is reached through a
TCP proxy the test cuts. Claims are then taken locally, and the spool runs out of space:
every claim must still be answered, every result kept (in memory, within its bound) and
written once the database is back, and the spool file must hold no torn record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from probe.model import Outcome, Result
from probe.store import ProbeRow, SentRow, backlog, create_engine, open_store
from probe.store.tables import probes, results
from tests.helpers import fetch_rows, proxied_postgres, running, simulator, wait_for, write_config

PROBES = 1500
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs with about 40 KB left."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with (mount / "filler").open("wb") as filler, contextlib.suppress(OSError):
            filler.write(b"x" * (2 * 1024 * 1024 - 40 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _rows(i: int) -> tuple[ProbeRow, SentRow, Result]:
    slot = T0 + timedelta(seconds=i)
    probe_id = f"PF{i:018d}"
    claim = ProbeRow(probe_id, "gs-adt", slot, slot, slot + timedelta(seconds=5), "a")
    sent = SentRow(probe_id, slot, None, "ACK AA")
    result = Result(
        probe_id, "gs-adt", "labka", Outcome.DELIVERED, 0.1, "monotonic", 0, None, slot, slot,
        span=1.0,
    )  # fmt: skip
    return claim, sent, result


async def _stored(url: str) -> tuple[int, int, int]:
    """(probes, probes with their send receipt, results) in the store."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(probes))
            sent = await conn.scalar(
                select(func.count()).select_from(probes).where(probes.c.sent_at.is_not(None))
            )
            done = await conn.scalar(select(func.count()).select_from(results))
    finally:
        await engine.dispose()
    return stored or 0, sent or 0, done or 0


async def test_a_full_spool_disk_keeps_probing_and_loses_nothing(
    postgres_url: str, small_disk: Path
) -> None:
    proxy, proxied = await proxied_postgres(postgres_url)
    spool = small_disk / "spool"
    store = await open_store(proxied, flush_interval=0.05, spool=spool, node="a")
    store.start()
    try:
        await proxy.cut()  # the database is away: claims are taken locally, and spooled
        for i in range(PROBES):
            claim, sent, result = _rows(i)
            assert await asyncio.wait_for(store.claim(claim), timeout=10)
            store.record_sent(sent)
            store.add_result(result)
        assert store.offline
        assert store.spool_errors > 0  # the disk did fill up
        assert store.dropped == 0  # all of it fits in memory
        await proxy.start()  # the database is back

        async def written() -> bool:
            return store.backlog == 0

        await wait_for(written, limit=60, every=0.1)
    finally:
        await store.close()
        await proxy.close()
    stored, sent_rows, done = await _stored(postgres_url)
    assert (stored, sent_rows, done) == (PROBES, PROBES, PROBES)
    for path in spool.glob("spool-*.jsonl"):  # what is left: whole records only
        data = path.read_bytes()
        assert not data or data.endswith(b"\n")
        for line in data.splitlines():
            json.loads(line)


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


@pytest.mark.slow
@pytest.mark.e2e
async def test_the_daemon_probes_through_a_full_disk_and_an_outage(
    postgres_url: str, small_disk: Path, tmp_path: Path
) -> None:
    """40 probes/s; the database goes away and the spool's disk fills up. No slot is
    skipped, /readyz stays ready, and every probe ends up stored with its result."""
    proxy, proxied = await proxied_postgres(postgres_url)
    async with simulator({}) as sim:
        config = {
            "store": {"url": proxied, "flush_interval": "50ms",
                      "spool_dir": str(small_disk / "spool")},
            "server": {"listen": "127.0.0.1:0"},
            "defaults": {"interval": "200ms", "timeout": "1s"},
            "flows": [
                {"name": f"health-{i}",
                 "source": {"type": "http", "url": sim.url("engine") + "/health"}}
                for i in range(8)
            ],
        }  # fmt: skip
        loaded = write_config(tmp_path, config)
        try:
            async with running(loaded) as daemon:
                assert daemon.server is not None
                base = daemon.server.url
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:

                    async def metric(name: str, **labels: str) -> float:
                        return _sample((await client.get("/metrics")).text, name, **labels)

                    async def delivered(n: float) -> bool:
                        return await metric("probe_results_total", outcome="delivered") >= n

                    await wait_for(partial(delivered, 40), limit=20)
                    await proxy.cut()

                    async def disk_full() -> bool:
                        return await metric("probe_spool_errors_total") > 0

                    await wait_for(disk_full, limit=30)
                    during = await metric("probe_results_total", outcome="delivered")
                    await wait_for(partial(delivered, during + 80), limit=30)  # goes on
                    ready = await client.get("/readyz")
                    assert ready.status_code == 503  # the store is away: said so
                    assert ready.json()["checks"]["tasks"] is True
                    await proxy.start()

                    async def caught_up() -> bool:
                        return (
                            await metric("probe_store_backlog") == 0
                            and (await client.get("/readyz")).status_code == 200
                        )

                    await wait_for(caught_up, limit=60)
                    text = (await client.get("/metrics")).text
                    print(
                        "FIGURES full disk daemon:",
                        {n: _sample(text, n) for n in (
                            "probe_spool_errors_total", "probe_slots_skipped_total",
                            "probe_results_dropped_total", "probe_task_failures_total",
                            "probe_store_write_errors_total")},
                    )  # fmt: skip
                    assert _sample(text, "probe_slots_skipped_total") == 0
                    assert _sample(text, "probe_results_dropped_total") == 0
                    assert _sample(text, "probe_task_failures_total") == 0
                    assert _sample(text, "probe_in_flight") <= 8
        finally:
            await proxy.close()
    probe_rows, result_rows = await fetch_rows(postgres_url)
    print(f"FIGURES full disk daemon: {len(probe_rows)} probes, {len(result_rows)} results")
    assert len(probe_rows) == len(result_rows) > 120
    assert {r.probe_id for r in result_rows} == {p.probe_id for p in probe_rows}
    assert all(p.sent_at is not None for p in probe_rows)


async def test_past_the_memory_bound_items_are_dropped_and_counted_never_claims(
    postgres_url: str, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full and memory full: the oldest non-claim items go, each counted; no claim is
    ever dropped, and nothing is lost without being counted."""
    monkeypatch.setattr(backlog, "MEMORY_LIMIT", 500)
    proxy, proxied = await proxied_postgres(postgres_url)
    store = await open_store(proxied, flush_interval=0.05, spool=small_disk / "spool", node="a")
    drops: list[str] = []
    store.on_drop = drops.append
    store.start()
    try:
        await proxy.cut()
        for i in range(PROBES):
            claim, sent, result = _rows(i)
            assert await asyncio.wait_for(store.claim(claim), timeout=10)
            store.record_sent(sent)
            store.add_result(result)
        await proxy.start()

        async def written() -> bool:
            return store.backlog == 0

        await wait_for(written, limit=60, every=0.1)
    finally:
        await store.close()
        await proxy.close()
    stored, sent_rows, done = await _stored(postgres_url)
    assert stored == PROBES  # every claim
    assert store.dropped == len(drops) > 0
    assert set(drops) == {"memory_full"}
    assert sent_rows + done + store.dropped == 2 * PROBES
