"""A database that hangs (its packets dropped, not refused) is not the target's failure.

Eight HTTP checks every 200 ms probe a healthy simulated engine, while PostgreSQL, reached
through a TCP proxy, stops passing any byte for a while. No result may blame the engine:
there must be no `send_error`. A slot the store could not claim in time is skipped and
counted (`probe_slots_skipped_total{reason="store"}`), or claimed locally, never failed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.helpers import fetch_rows, proxied_postgres, running, simulator, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HANG_S = 8.0


async def test_a_hanging_database_makes_no_false_send_errors(
    postgres_url: str, tmp_path: Path
) -> None:
    proxy, proxied = await proxied_postgres(postgres_url)
    async with simulator({}) as sim:
        config = {
            "store": {"url": proxied, "flush_interval": "50ms"},
            "server": {"listen": "127.0.0.1:0"},
            "defaults": {"interval": "200ms", "timeout": "2s", "send_timeout": "1s"},
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

                async def some(n: int) -> bool:
                    return len((await fetch_rows(postgres_url))[1]) >= n

                await wait_for(lambda: some(40), limit=20)
                proxy.hang()
                await asyncio.sleep(HANG_S)  # the time under test: the database hangs
                proxy.release()
                async with httpx.AsyncClient(base_url=daemon.server.url) as client:

                    async def caught_up() -> bool:
                        text = (await client.get("/metrics")).text
                        line = next(
                            line for line in text.splitlines()
                            if line.startswith("probe_store_backlog")
                        )  # fmt: skip
                        return float(line.split()[-1]) == 0

                    await wait_for(caught_up, limit=90)
        finally:
            await proxy.close()
    probe_rows, result_rows = await fetch_rows(postgres_url)
    outcomes = Counter((r.outcome, r.reason) for r in result_rows)
    print(f"FIGURES db hang {HANG_S}s: {len(probe_rows)} probes, results {dict(outcomes)}")
    assert outcomes.keys() == {("delivered", None)}, outcomes
    assert {r.probe_id for r in result_rows} == {p.probe_id for p in probe_rows}
