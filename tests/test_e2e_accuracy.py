"""The daemon against the simulator: its numbers must equal the simulator's ground truth.

At least 100 probes go through an engine that loses 10% of messages per destination and
delays the rest by a fixed 300 ms. Lost probes must match the truth exactly and nothing
may be left unresolved. A polling observer sees an arrival at its next poll, so the median
error must lie within poll + 50 ms; a single poll may be delayed when a loaded CI machine
stalls the loop, so each probe is only held to "never before it was visible, and not a
whole timeout later". The tight per-probe bounds are measured in `bench/accuracy.py`, not
asserted here (tests do not depend on timing). The same test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from probe.sim import read_truth
from probe.store import create_engine
from probe.store.tables import probes
from tests.helpers import fetch_rows, running, simulator, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PROBES = 110
POLL = 0.1
DELAY = 0.3


def _sim_config(truth: Path) -> dict[str, object]:
    dest = {"delay": {"fixed": f"{int(DELAY * 1000)}ms"}, "loss": 0.1}
    return {"seed": 2026, "truth": str(truth), "destinations": {"labka": dest, "epm3": dest}}


def _probe_config(store_url: str, engine: str, labka: str, epm3: str) -> dict[str, object]:
    def dest(name: str, base: str) -> dict[str, object]:
        return {
            "name": name,
            "type": "http",
            "url": base + "/received?probe_id=${probe_id}",
            "match": {"jsonpath": "$.events[*].probe_id"},
        }

    return {
        "store": {"url": store_url, "flush_interval": "100ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "10s",
        "defaults": {"poll": f"{int(POLL * 1000)}ms", "timeout": "1500ms", "max_in_flight": 50},
        "flows": [
            {
                "name": "gs-events",
                "interval": "200ms",  # 5 probes/s: the loop stays idle enough to time polls
                "source": {
                    "type": "http",
                    "method": "POST",
                    "url": engine + "/gs/events",
                    "headers": {"Content-Type": "application/json"},
                    "body": '{"probe_id": "${probe_id}", "sent_at": "${sent_at}"}',
                    "expect_status": [202],
                },
                "destinations": [dest("labka", labka), dest("epm3", epm3)],
            }
        ],
    }


async def _stored_probes(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(probes))).scalar_one())
    finally:
        await engine.dispose()


async def test_measurements_equal_ground_truth(store_url: str, tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    async with simulator(_sim_config(truth_file)) as sim:
        config = _probe_config(store_url, sim.url("engine"), sim.url("labka"), sim.url("epm3"))
        async with running(write_config(tmp_path, config)):

            async def enough() -> bool:
                return await _stored_probes(store_url) >= PROBES

            await wait_for(enough, limit=60)
        # The daemon has drained: every probe in flight resolved before it exited.
    probe_rows, result_rows = await fetch_rows(store_url)
    truth = {(t.probe_id, t.destination): t for t in read_truth(truth_file)}

    assert len(probe_rows) >= PROBES
    sent = {p.probe_id for p in probe_rows}
    # No probe left unresolved: one result per probe and destination.
    assert Counter(r.destination for r in result_rows) == {"labka": len(sent), "epm3": len(sent)}
    assert {r.probe_id for r in result_rows} == sent
    assert all(p.sent_at is not None and p.send_reason is None for p in probe_rows)

    for destination in ("labka", "epm3"):
        ours = {r.probe_id: r for r in result_rows if r.destination == destination}
        true_lost = {
            pid for (pid, d), t in truth.items() if d == destination and t.action == "lost"
        }
        our_lost = {pid for pid, r in ours.items() if r.outcome == "lost"}
        assert our_lost == true_lost, destination
        assert 0 < len(true_lost) < len(sent) * 0.25  # the 10% loss really happened
        seen = {pid: r for pid, r in ours.items() if r.outcome in ("delivered", "late")}
        assert len(seen) + len(our_lost) == len(sent)
        errors = []
        for pid, result in seen.items():
            record = truth[(pid, destination)]
            assert record.action == "delivered"
            assert record.visible_at is not None
            true_latency = record.visible_at - record.received_at  # engine in -> visible
            error = result.latency_s - true_latency
            # Never before the message was visible (5 ms for the two processes' clocks).
            assert -0.005 <= error < 1.0, (pid, destination, result.latency_s, true_latency)
            assert result.latency_clock == "monotonic"
            errors.append(error)
        assert statistics.median(errors) <= POLL + 0.05, (destination, sorted(errors)[-5:])
