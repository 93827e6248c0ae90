"""The `probe` commands as a user runs them."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from probe.store import create_engine, open_store
from probe.store.tables import incidents, probes, rollups
from tests.helpers import closed_port, fetch_rows, simulator

DEMO_PORTS = (9464, 18075, 18076, 18080)


async def _probe(*args: str, cwd: Path, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_once_prints_results_and_exits_1_on_a_bad_one(tmp_path: Path) -> None:
    async with simulator({}) as sim:
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
            "defaults": {"timeout": "2s"},
            "flows": [
                {"name": "health",
                 "source": {"type": "http", "url": sim.url("engine") + "/health"}},
                {"name": "down", "source": {"type": "http",
                                            "url": f"http://127.0.0.1:{closed_port()}/"}},
            ],
        }  # fmt: skip
        (tmp_path / "probe.yaml").write_text(yaml.safe_dump(config))
        code, out, err = await _probe("once", "-c", "probe.yaml", cwd=tmp_path)
        assert code == 1, err
        lines = out.splitlines()
        assert lines[0].split() == ["FLOW", "DESTINATION", "OUTCOME", "LATENCY", "REASON"]
        assert lines[1].split()[:3] == ["health", "(check)", "delivered"]
        assert lines[2].split() == ["down", "(check)", "send_error", "-", "connect"]
        code, out, err = await _probe("once", "-c", "probe.yaml", "--flow", "health", cwd=tmp_path)
        assert code == 0, err
        code, _, err = await _probe("once", "-c", "probe.yaml", "--flow", "nope", cwd=tmp_path)
        assert code == 2
        assert err.strip() == "no flow named 'nope'"
        url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
        assert not (tmp_path / "probe.db").exists()  # next to a daemon: its store untouched
        code, _, err = await _probe("once", "-c", "probe.yaml", "--store", cwd=tmp_path)
        assert code == 1, err
    probe_rows, results = await fetch_rows(url)
    assert len(probe_rows) == len(results) == 2
    assert all(r.adhoc for r in results)  # kept for the record, out of every statistic
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(rollups))).fetchall() == []
            assert (await conn.execute(select(incidents))).fetchall() == []
    finally:
        await engine.dispose()


async def test_run_refuses_to_start_when_a_listener_cannot_bind(tmp_path: Path) -> None:
    """A destination listener that cannot bind would make every probe of it a fault of the
    prober's own: the daemon says so and exits 1, as for the HTTP port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
            "server": {"listen": "127.0.0.1:0"},
            "flows": [
                {
                    "name": "gs-adt",
                    "source": {"type": "mllp", "host": "127.0.0.1", "port": closed_port()},
                    "destinations": [
                        {"name": "labka", "type": "mllp", "listen": f"127.0.0.1:{port}"}
                    ],
                }
            ],
        }
        (tmp_path / "probe.yaml").write_text(yaml.safe_dump(config))
        code, _, err = await _probe("run", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 1
    assert err.startswith("error: flow 'gs-adt', destination 'labka': "), err
    assert "Traceback" not in err
    _, results = await fetch_rows(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    assert results == []


async def test_db_upgrade_prepares_postgres(postgres_url: str, tmp_path: Path) -> None:
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump({"store": {"url": postgres_url}}))
    code, _, err = await _probe("run", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 1
    assert "run `probe db upgrade -c CONFIG`" in err
    code, out, err = await _probe("db", "upgrade", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 0, err
    assert "is up to date" in out
    store = await open_store(postgres_url)
    try:
        async with store.engine.connect() as conn:
            assert (await conn.execute(probes.select())).fetchall() == []
    finally:
        await store.close()


async def test_run_reports_an_unreachable_store_without_traceback(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://probe:hunter2@127.0.0.1:{closed_port()}/probe"
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump({"store": {"url": url}}))
    code, out, err = await _probe("run", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 1
    assert err.startswith("error: cannot open store postgresql+psycopg://probe:***@")
    assert "Traceback" not in err
    assert "hunter2" not in out + err


def _free(port: int) -> bool:
    with socket.socket() as sock:
        # As the demo's listeners do: a port left in TIME_WAIT by an earlier run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_demo_runs_and_resolves_every_probe(tmp_path: Path) -> None:
    if not all(_free(p) for p in DEMO_PORTS):
        pytest.fail(f"the demo needs ports {DEMO_PORTS} free")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "demo", "--duration", "8", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    banner = ""
    while "Press Ctrl-C" not in banner:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        assert line, "demo ended before its banner"
        banner += line.decode()
    assert "metrics   http://127.0.0.1:9464/metrics" in banner
    assert f"database  {tmp_path / 'probe-demo.db'}" in banner
    await asyncio.sleep(5)
    async with httpx.AsyncClient() as client:
        scrape = (await client.get("http://127.0.0.1:9464/metrics")).text
    for flow, dest in (("gs-adt", "labka"), ("gs-adt", "epm3"), ("engine-health", "")):
        assert (
            f'probe_results_total{{destination="{dest}",flow="{flow}",outcome="delivered"' in scrape
        )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert " 0 unresolved" in out.decode()
    probe_rows, results = await fetch_rows(f"sqlite+aiosqlite:///{tmp_path / 'probe-demo.db'}")
    assert len(probe_rows) >= 4
    gs = [p.probe_id for p in probe_rows if p.flow == "gs-adt"]
    assert {(r.probe_id, r.destination) for r in results if r.flow == "gs-adt"} == {
        (pid, d) for pid in gs for d in ("labka", "epm3")
    }
