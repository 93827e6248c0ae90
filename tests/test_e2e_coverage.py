"""End to end: one lost probe is one slot of incident, and a stopped daemon is not measured.

The daemon probes the simulator at interval 1 s with timeout 3 s, so later probes are
delivered before the lost one resolves. The simulator drops exactly one forwarded message
(a 0.9 s `drop` window placed around one wall-clock second). Then the daemon is stopped
for a known time and started again; the report must show that gap as not measured.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from probe.engine.daemon import Daemon, wait_started
from probe.report.stats import Month, build_report
from probe.store import create_engine
from probe.store.tables import incidents
from tests.helpers import fetch_rows, simulator, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TZ = "Europe/Copenhagen"


def _config(tmp_path: Path, sim: Any) -> dict[str, Any]:
    return {
        "timezone": TZ,
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "defaults": {"interval": "1s", "timeout": "3s", "poll": "100ms"},
        "flows": [
            {
                "name": "gs-rest",
                "source": {
                    "type": "http",
                    "method": "POST",
                    "url": sim.url("engine") + "/gs/events",
                    "body": '{"probe_id": "${probe_id}"}',
                    "expect_status": [202],
                },
                "destinations": [
                    {
                        "name": "epm3",
                        "type": "http",
                        "url": sim.url("epm3") + "/received?probe_id=${probe_id}",
                        "match": {"jsonpath": "$.events[*].probe_id"},
                    }
                ],
            }
        ],
    }


async def _results(url: str) -> list[Any]:
    return sorted((await fetch_rows(url))[1], key=lambda r: r.slot_at)


async def _run_until(loaded: Any, predicate: Any) -> tuple[float, float]:
    """Run a daemon until ``predicate()``; (when it started probing, when it was told to stop)."""
    daemon = Daemon(loaded, handle_signals=False, node="test")
    task = asyncio.create_task(daemon.run())
    await wait_started(daemon, task)
    started = time.time()
    try:
        await wait_for(predicate, limit=60, every=0.1)
    finally:
        stopped = time.time()
        daemon.request_stop()
        assert await asyncio.wait_for(task, timeout=60) == 0
    return started, stopped


async def test_one_lost_probe_is_one_slot_and_a_stopped_daemon_is_not_measured(
    tmp_path: Path,
) -> None:
    # The drop window opens 0.2 s before wall-clock second `target` and lasts 0.9 s, so the
    # message of exactly that slot is lost, whatever the scheduler's lag up to 0.7 s.
    now = time.time()
    target = math.ceil(now) + 5
    drop = {"mode": "drop", "start": target - 0.2 - now, "duration": 0.9}
    async with simulator({"destinations": {"epm3": {"outages": [drop]}}}) as sim:
        loaded = write_config(tmp_path, _config(tmp_path, sim))
        url = loaded.config.store.url
        lost_slot = datetime.fromtimestamp(target, UTC)

        async def settled() -> bool:
            # The lost probe resolved (at its deadline), and three later slots after it.
            rows = await _results(url)
            return (
                any(r.outcome == "lost" for r in rows)
                and sum(r.slot_at > lost_slot + timedelta(seconds=3) for r in rows) >= 1
            )

        _, stopped = await _run_until(loaded, settled)
        first = await _results(url)
        gap = 4.0
        await asyncio.sleep(gap)  # the daemon is down: this is the time under test

        async def three_more() -> bool:
            return len(await _results(url)) >= len(first) + 3

        restarted, _ = await _run_until(loaded, three_more)

    rows = await _results(url)
    assert [r.slot_at for r in rows if r.outcome == "lost"] == [lost_slot]
    assert {r.outcome for r in rows} == {"delivered", "lost"}
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(select(incidents))).fetchall()
    finally:
        await engine.dispose()
    # One slot of incident, ended by the next delivered slot: not a timeout's worth.
    assert [(i.start_at, i.end_at, i.cause, i.ended_by) for i in found] == [
        (lost_slot, lost_slot + timedelta(seconds=1), "lost", "recovered")
    ]

    # The report: what lies outside the two runs, and the gap between them, is not measured.
    tz = ZoneInfo(TZ)
    months = {r.slot_at.astimezone(tz).strftime("%Y-%m") for r in rows}
    report_time = rows[-1].slot_at + timedelta(seconds=30)
    not_measured = month_seconds = 0.0
    coverages = []
    for label in sorted(months):
        engine = create_engine(url)
        try:
            report = await build_report(engine, loaded.config, label, now=report_time)
        finally:
            await engine.dispose()
        (row,) = report["rows"]
        not_measured += row["not_measured_seconds"]
        month = Month.parse(label, tz)
        month_seconds += (month.end - month.start).total_seconds()
        coverages.append(row["coverage"])
        assert report["partial"] is True  # the month is still running at report time
        down = 1.0 if lost_slot.astimezone(tz).strftime("%Y-%m") == label else 0.0
        assert row["time_availability"] == 1 - down / row["measured_seconds"]
    span = (rows[-1].slot_at + timedelta(seconds=1) - rows[0].slot_at).total_seconds()
    outside = month_seconds - span
    assert abs((not_measured - outside) - (restarted - stopped)) <= 1.0
    assert (restarted - stopped) >= gap
    assert all(c is not None and c < 1 for c in coverages)
