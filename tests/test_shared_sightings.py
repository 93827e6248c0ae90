"""Active-active: a probe one node sent is resolved by a sighting another node received.

Node A sends every probe (node B's only flow fires once an hour), but the engine forwards
Labka's copies to node B's MLLP listener only, as a load balancer might. B records each
arrival in the shared PostgreSQL store before it ACKs; A finds it there. Every probe must
come out delivered, on the wall clock, and the store must show who saw what.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from probe.engine.daemon import Daemon, wait_started
from probe.sim import read_truth
from probe.store import create_engine
from probe.store.migrate import upgrade
from probe.store.tables import sightings
from tests.helpers import closed_port, fetch_rows, simulator, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PROBES = 30


def _config(store: str, engine: tuple[str, int], listen: int, interval: str) -> dict[str, Any]:
    return {
        "store": {"url": store, "flush_interval": "100ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "10s",
        "defaults": {"timeout": "3s"},
        "flows": [
            {
                "name": "gs-adt",
                "interval": interval,
                "source": {
                    "type": "mllp", "host": engine[0], "port": engine[1], "message": "adt_a08",
                },
                "destinations": [
                    {"name": "labka", "type": "mllp", "listen": f"127.0.0.1:{listen}",
                     "match": "PID-3"},
                ],
            }
        ],
    }  # fmt: skip


async def test_a_sighting_at_another_node_resolves_the_probe(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    await upgrade(engine)
    await engine.dispose()
    a_port, b_port = closed_port(), closed_port()
    sim = {
        "seed": 3,
        "truth": str(tmp_path / "truth.jsonl"),
        "mllp_engine": {"listen": "127.0.0.1:0"},
        "destinations": {
            "labka": {"kind": "mllp", "target": f"127.0.0.1:{b_port}", "delay": {"fixed": "50ms"}}
        },
    }
    async with simulator(sim) as landscape:
        address = landscape.address("mllp_engine")
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = Daemon(
            write_config(tmp_path / "a", _config(postgres_url, address, a_port, "200ms")),
            handle_signals=False,
            node="a",
        )
        b = Daemon(
            write_config(tmp_path / "b", _config(postgres_url, address, b_port, "1h")),
            handle_signals=False,
            node="b",
        )
        b_task = asyncio.create_task(b.run())
        await wait_started(b, b_task)
        a_task = asyncio.create_task(a.run())
        await wait_started(a, a_task)

        async def enough() -> bool:
            probe_rows, _ = await fetch_rows(postgres_url)
            return sum(p.node == "a" for p in probe_rows) >= PROBES

        try:
            await wait_for(enough, limit=60)
        finally:
            a.request_stop()  # A drains while B still receives what A has in flight
            assert await asyncio.wait_for(a_task, 60) == 0
            b.request_stop()
            assert await asyncio.wait_for(b_task, 60) == 0

    probe_rows, result_rows = await fetch_rows(postgres_url)
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            seen = (await conn.execute(select(sightings.c.probe_id, sightings.c.node))).all()
    finally:
        await engine.dispose()
    truth = {t.probe_id: t for t in read_truth(tmp_path / "truth.jsonl")}
    sent_by_a = {p.probe_id for p in probe_rows if p.node == "a"}
    assert len(sent_by_a) >= PROBES
    # B saw them (its listener recorded them); A's own listener never got one.
    assert {s.node for s in seen} == {"b"}
    assert {s.probe_id for s in seen} >= {pid for pid in sent_by_a if pid in truth}
    ours = {r.probe_id: r for r in result_rows if r.probe_id in sent_by_a}
    assert set(ours) == sent_by_a
    forwarded = [pid for pid in sent_by_a if truth.get(pid) and truth[pid].action == "delivered"]
    assert len(forwarded) == len(sent_by_a)  # no loss configured
    outcomes = Counter((ours[pid].outcome, ours[pid].latency_clock) for pid in forwarded)
    assert outcomes == {("delivered", "wall"): len(forwarded)}, outcomes
    for pid in forwarded:
        # Wall clocks of one host: the engine's 50 ms delay, plus at most a feed interval
        # (500 ms) and a flush (100 ms) of lag before A could see it.
        assert 0.04 <= ours[pid].latency_s <= 2.0, (pid, ours[pid].latency_s)
