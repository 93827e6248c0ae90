"""`kill -9` during a database outage, then a start while the database is still down.

As systemd or Kubernetes would restart it, the daemon comes back while PostgreSQL is
unreachable (through a TCP proxy the test cuts). It has a spool, so it starts anyway,
probes at once, spools, and writes everything once the database is back: every probe the
simulated engine received is stored with its result, none twice, and the restarted run
probed through the outage instead of leaving its slots unprobed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic import command
from sqlalchemy import Connection
from structlog.testing import capture_logs

from probe.config.loader import load_config
from probe.engine.daemon import Daemon, wait_started
from probe.sim import read_truth
from probe.store import create_engine
from probe.store.migrate import HEAD, alembic_config
from tests.helpers import (
    child_process,
    closed_port,
    fetch_rows,
    kill_process,
    log_events,
    metric,
    probe_argv,
    proxied_postgres,
    simulator,
    stop_process,
    wait_for,
    wait_for_event,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FLOWS = 4
INTERVAL = 0.25  # 16 probes/s


def _config(tmp_path: Path, url: str, sim: Any, server: int) -> dict[str, Any]:
    return {
        "store": {"url": url, "flush_interval": "50ms", "spool_dir": str(tmp_path / "spool")},
        "server": {"listen": f"127.0.0.1:{server}"},
        "shutdown_grace": "10s",
        "defaults": {"interval": f"{int(INTERVAL * 1000)}ms", "timeout": "2s", "poll": "100ms"},
        "flows": [
            {
                "name": f"gs-{n}",
                "source": {
                    "type": "http",
                    "method": "POST",
                    "url": sim.url("engine") + "/gs/events",
                    "body": '{"probe_id": "${probe_id}"}',
                    "expect_status": [202],
                },
                "destinations": [
                    {
                        "name": "labka",
                        "type": "http",
                        "url": sim.url("labka") + "/received?probe_id=${probe_id}",
                        "match": {"jsonpath": "$.events[*].probe_id"},
                    }
                ],
            }
            for n in range(FLOWS)
        ],
    }


async def _results(url: str, *, at_least: int, after: float = 0.0) -> bool:
    """``url`` holds at least ``at_least`` results of slots after ``after`` (a Unix time)."""
    _, result_rows = await fetch_rows(url)
    return sum(r.slot_at.timestamp() > after for r in result_rows) >= at_least


async def _backlog(server: int, *, at_least: int) -> bool:
    return await metric(f"http://127.0.0.1:{server}", "probe_store_backlog") >= at_least


async def test_a_restart_while_the_database_is_down_probes_and_loses_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    proxy, proxied = await proxied_postgres(postgres_url)
    server = closed_port()
    truth_file = tmp_path / "truth.jsonl"
    run1_log, run2_log = tmp_path / "run1.log", tmp_path / "run2.log"
    try:
        async with simulator({"truth": str(truth_file), "destinations": {"labka": {}}}) as sim:
            path = tmp_path / "probe.yaml"
            path.write_text(yaml.safe_dump(_config(tmp_path, proxied, sim, server)))
            run = probe_argv("run", "-c", str(path))
            async with child_process(run, run1_log, cwd=tmp_path) as first:
                await wait_ready(first, run1_log, server)
                await wait_for(lambda: _results(postgres_url, at_least=FLOWS), limit=30)
                await proxy.cut()
                await wait_for_event(first, run1_log, "store_offline")
                # Killed with probes in its spool that the database has not seen.
                await wait_for(lambda: _backlog(server, at_least=2 * FLOWS), limit=30)
                await kill_process(first)
            async with child_process(run, run2_log, cwd=tmp_path) as second:
                await wait_for_event(second, run2_log, "store_offline_at_start")
                await wait_for_event(second, run2_log, "started")
                offline_from = time.time()
                # The time under test: the restarted run probes with the database away.
                await asyncio.sleep(2.0)
                offline_until = time.time()
                await proxy.start()
                await wait_for_event(second, run2_log, "store_recovered_after_start", limit=60)
                recovered_at = time.time()
                await wait_ready(second, run2_log, server, limit=30)
                # Probing goes on online: results of slots after the recovery are stored.
                await wait_for(
                    lambda: _results(postgres_url, at_least=FLOWS, after=recovered_at), limit=30
                )
                assert await stop_process(second, limit=30) == 0, run2_log.read_text()[-3000:]
    finally:
        await proxy.close()

    probe_rows, result_rows = await fetch_rows(postgres_url)
    received = {t.probe_id for t in read_truth(truth_file) if t.destination == "labka"}
    stored = {p.probe_id for p in probe_rows}
    # Every probe the engine received is stored, with its result: nothing was lost.
    assert received <= stored, f"{len(received - stored)} received probes not stored"
    done = Counter((r.probe_id, r.destination) for r in result_rows)
    assert all(n == 1 for n in done.values())
    assert {pid for pid, _ in done} == stored, "a stored probe has no result"
    twice = [k for k, n in Counter((p.flow, p.slot_at) for p in probe_rows).items() if n > 1]
    assert not twice
    # The restarted run probed while the database was away: its slots are not a gap.
    offline = [
        p for p in probe_rows if offline_from <= p.slot_at.timestamp() < offline_until - INTERVAL
    ]
    expected = (offline_until - INTERVAL - offline_from) / INTERVAL * FLOWS
    assert len(offline) >= expected * 0.8, (len(offline), expected)
    assert {r.outcome for r in result_rows if r.probe_id in {p.probe_id for p in offline}} == {
        "delivered"
    }
    print(
        f"FIGURES offline start: engine received {len(received)}, stored {len(stored)}, "
        f"results {len(result_rows)}, probed while offline {len(offline)} of {expected:.0f}, "
        f"log lines run 2: {len(log_events(run2_log))}"
    )
    events = [e["event"] for e in log_events(run2_log)]
    assert "probe_crashed" not in events
    assert "spool_replayed" in events  # the killed run's spool went in once it could


async def test_a_wrong_schema_found_after_an_offline_start_stops_the_daemon(
    postgres_url: str, tmp_path: Path
) -> None:
    """Started offline, the daemon checks the schema once the database answers. A store
    still at an older revision cannot be written: the write loop fails, is restarted with
    backoff and counted, then given up; the daemon says why and exits 1."""
    engine = create_engine(postgres_url)

    def old_schema(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0004")

    async with engine.begin() as conn:
        await conn.run_sync(old_schema)
    await engine.dispose()
    proxy, proxied = await proxied_postgres(postgres_url, migrate=False)
    (tmp_path / "spool").mkdir()  # it ran here before: a restart
    await proxy.cut()
    try:
        async with simulator({"destinations": {"labka": {}}}) as sim:
            config = _config(tmp_path, proxied, sim, closed_port())
            path = tmp_path / "probe.yaml"
            path.write_text(yaml.safe_dump(config))
            daemon = Daemon(load_config(path), handle_signals=False, node="a")
            with capture_logs() as logs:
                run = asyncio.create_task(daemon.run())
                await wait_started(daemon, run)
                await proxy.start()  # the database answers, at the old schema
                code = await asyncio.wait_for(run, timeout=90)
    finally:
        await proxy.close()
    assert code == 1
    gave_up = [e for e in logs if e["event"] == "task_gave_up"]
    assert gave_up, [e["event"] for e in logs][-20:]
    assert f"this version needs {HEAD}" in gave_up[0]["error"]
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert len(failed) >= 5
    assert daemon.supervisor.failed
