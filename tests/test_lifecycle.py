"""The daemon as operators run it: a real `probe` process, signals, logs and restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import closed_port, fetch_rows, metric, simulator, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOKEN = "s3cr3t-token-value"


def _config(tmp_path: Path, sim: Any, *, port: int, timeout: str, grace: str) -> Path:
    config = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": f"127.0.0.1:{port}"},
        "shutdown_grace": grace,
        "defaults": {"interval": "200ms", "timeout": timeout, "poll": "100ms"},
        "flows": [
            {
                "name": "gs-events",
                "source": {
                    "type": "http",
                    "method": "POST",
                    "url": sim.url("engine") + "/gs/events",
                    "headers": {"Authorization": "Bearer ${GS_TOKEN}"},
                    "body": '{"probe_id": "${probe_id}", "token_echo": "${GS_TOKEN}"}',
                    "expect_status": [202],
                },
                "destinations": [
                    {
                        "name": "labka",
                        "type": "http",
                        "url": sim.url("labka") + "/received?probe_id=${probe_id}",
                        "match": {"jsonpath": "$.events[*].probe_id"},
                        "time_field": "received_at",
                    }
                ],
            }
        ],
    }
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def probe_process(config: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "GS_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "--log-level", "debug", "run", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:

        async def ready() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"probe exited with {proc.returncode}")
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.TransportError:
                return False
            return answer.status_code == 200

        await wait_for(ready, limit=20, every=0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _claimed(port: int, *, in_flight: int, in_all: int) -> bool:
    """The daemon on ``port`` has ``in_flight`` probes in flight, ``in_all`` with the resolved."""
    base = f"http://127.0.0.1:{port}"
    waiting = await metric(base, "probe_in_flight")
    return waiting >= in_flight and waiting + await metric(base, "probe_results_total") >= in_all


async def _draining(port: int) -> bool:
    """The daemon on ``port`` took a stop signal: its scheduler stopped, so it is not ready."""
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/readyz")
    return answer.status_code == 503 and answer.json()["checks"]["scheduler"] is False


async def _finish(proc: asyncio.subprocess.Process, limit: float) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_sigterm_drains_in_flight_probes_and_exits_0(tmp_path: Path) -> None:
    sim_config = {"destinations": {"labka": {"delay": {"fixed": "800ms"}}}}
    async with simulator(sim_config) as sim:
        port = closed_port()
        config = _config(tmp_path, sim, port=port, timeout="3s", grace="10s")
        async with probe_process(config, port) as proc:
            proc.send_signal(signal.SIGHUP)  # must not kill it
            # Several probes are now waiting for their 800 ms delay, after a few others.
            await wait_for(lambda: _claimed(port, in_flight=2, in_all=5), limit=20)
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            code, out, err = await _finish(proc, limit=15)
    assert code == 0, err
    assert "Traceback" not in out + err
    assert TOKEN not in out + err
    events = [json.loads(line) for line in out.splitlines()]  # JSON: stdout is not a terminal
    results = [e for e in events if e["event"] == "result"]
    assert results
    assert all(e["flow"] == "gs-events" and len(e["probe_id"]) == 20 for e in results)
    stopping = next(e for e in events if e["event"] == "stopping")
    assert stopping["in_flight"] > 0
    probes, rows = await fetch_rows(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    assert len(probes) >= 5
    assert {r.probe_id for r in rows} == {p.probe_id for p in probes}  # none unresolved
    assert {r.outcome for r in rows} == {"delivered"}
    assert {r.latency_clock for r in rows} == {"destination"}


async def test_second_signal_exits_at_once_and_restart_resolves(tmp_path: Path) -> None:
    # The engine forwards at once but holds its reply: the send is in flight for 30 s.
    stall = {"mode": "stall", "stall": "30s", "start": 0, "duration": "1h"}
    sim_config = {"engine": {"outages": [stall]}, "destinations": {"labka": {}}}
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    async with simulator(sim_config) as sim:
        port = closed_port()
        config = _config(tmp_path, sim, port=port, timeout="20s", grace="20s")
        async with probe_process(config, port) as proc:
            await wait_for(lambda: _claimed(port, in_flight=1, in_all=1), limit=20)
            proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: _draining(port), limit=20)  # the first signal is taken
            proc.send_signal(signal.SIGINT)
            code, _, err = await _finish(proc, limit=5)
        assert code == 1, err
        assert "Traceback" not in err
        probes, rows = await fetch_rows(url)
        assert probes
        assert rows == []  # cancelled before any result: stored, unresolved
        cut_off = {p.probe_id for p in probes}

        sim_ok = {"destinations": {"labka": {}}}
        async with simulator(sim_ok) as healthy:
            # The same destination port is gone; point the restart at the old labka,
            # which still shows the forwarded probes, and at a healthy engine.
            config = _config(tmp_path, healthy, port=port, timeout="20s", grace="1s")
            text = config.read_text().replace(healthy.url("labka"), sim.url("labka"))
            config.write_text(text)
            async with probe_process(config, port) as proc:

                async def resolved() -> bool:
                    _, rows = await fetch_rows(url)
                    return cut_off <= {r.probe_id for r in rows}

                await wait_for(resolved, limit=20)
                proc.send_signal(signal.SIGTERM)
                code, _, err = await _finish(proc, limit=15)
            assert code == 0, err
    _, rows = await fetch_rows(url)
    old = [r for r in rows if r.probe_id in cut_off]
    # Seen at Labka with Labka's own arrival time: on time, although we were down.
    assert {(r.outcome, r.latency_clock) for r in old} == {("delivered", "destination")}
