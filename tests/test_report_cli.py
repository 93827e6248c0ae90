"""`probe report`, the report API and pruning, as a user and a monthly job use them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from probe.model import Outcome, Result
from probe.store import open_store
from probe.store.housekeeping import prune_url
from tests.helpers import closed_port, fetch_rows, running, write_config

OCT = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)


def _config(url: str) -> dict[str, object]:
    return {
        "timezone": "Europe/Copenhagen",
        "store": {"url": url},
        "server": {"listen": "127.0.0.1:0"},
        "flows": [
            {"name": "gs-rest", "interval": "1h", "source": {"type": "http", "url": "http://127.0.0.1:1/"},
             "destinations": [{"name": "labka", "type": "http", "url": "http://127.0.0.1:1/"}]},
        ],
    }  # fmt: skip


async def _fill(url: str, *, start: datetime = OCT, count: int = 10, first: int = 0) -> None:
    store = await open_store(url, flush_interval=0.05)
    store.start()
    for i in range(count):
        slot = start + timedelta(minutes=10 * i)
        outcome = Outcome.LOST if i == 3 else Outcome.DELIVERED
        latency = None if outcome is Outcome.LOST else 0.5
        store.add_result(
            Result(f"PR{first + i:018X}", "gs-rest", "labka", outcome, latency, "monotonic",
                   0, None, slot, slot)
        )  # fmt: skip
    await store.close()


async def _probe(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_report_formats_and_exit_codes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(_config(url)))
    await _fill(url)
    code, out, err = await _probe("report", "--month", "2026-10", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 0, err
    (row,) = json.loads(out)["rows"]
    assert (row["probes"], row["outcomes"]["lost"], row["availability"]) == (10, 1, 0.9)
    assert len(row["incidents"]) == 1
    assert row["incidents"][0]["duration_seconds"] == 600.0

    code, out, _ = await _probe(
        "report", "--month", "2026-10", "-c", "probe.yaml", "--format", "csv", cwd=tmp_path
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [(r["flow"], r["destination"], r["probes"]) for r in rows] == [
        ("gs-rest", "labka", "10")
    ]

    target = tmp_path / "oktober.html"
    code, out, _ = await _probe(
        "report", "--month", "2026-10", "-c", "probe.yaml", "--format", "html", "--lang", "da",
        "-o", str(target), cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    assert out == ""
    html = target.read_text()
    assert "<svg" in html
    assert "90,00 %" in html  # Danish decimal comma
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".oktober")] == []

    code, out, _ = await _probe("report", "--month", "2026-09", "-c", "probe.yaml", cwd=tmp_path)
    (empty,) = json.loads(out)["rows"]
    assert code == 0
    assert (empty["no_data"], empty["availability"]) == (True, None)

    code, _, err = await _probe("report", "--month", "2026-13", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 2
    assert "YYYY-MM" in err


async def test_report_exits_3_when_the_store_is_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://probe:secret@127.0.0.1:{closed_port()}/probe"
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(_config(url)))
    code, out, err = await _probe("report", "--month", "2026-10", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 3
    assert "Traceback" not in err
    assert "secret" not in out + err


async def test_api_serves_the_same_report(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    await _fill(url)
    config = _config(url)
    config["flows"] = []  # nothing to probe: only the API matters here
    async with running(write_config(tmp_path, config)) as daemon:
        assert daemon.server is not None
        async with httpx.AsyncClient(base_url=daemon.server.url) as client:
            good = await client.get("/api/v1/reports/monthly/2026-10")
            bad = await client.get("/api/v1/reports/monthly/oct")
    assert good.status_code == 200
    (row,) = good.json()["rows"]
    assert (row["flow"], row["probes"], row["availability"]) == ("gs-rest", 10, 0.9)
    assert bad.status_code == 400


async def test_prune_deletes_raw_rows_and_keeps_rollups(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    await _fill(url, start=datetime.now(UTC) - timedelta(days=100), count=5)
    await _fill(url, start=datetime.now(UTC) - timedelta(hours=2), count=5, first=100)
    deleted = await prune_url(url, retention=90 * 86400.0)
    _, results = await fetch_rows(url)
    assert deleted == 5
    assert len(results) == 5
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(_config(url)))
    old = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m")
    code, out, _ = await _probe("report", "--month", old, "-c", "probe.yaml", cwd=tmp_path)
    assert code == 0
    # The month whose raw rows are gone still reports from its rollups.
    assert json.loads(out)["rows"][0]["probes"] >= 1
