"""Misbehaving systems give the right outcome, and the daemon keeps running through them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.engine.daemon import Daemon
from tests.helpers import closed_port, fetch_rows, running, simulator, wait_for, write_config

pytestmark = [pytest.mark.e2e]

LONG = {"start": 0, "duration": "1h"}
PROMTOOL = shutil.which("promtool")
if os.environ.get("PROBE_REQUIRE_PROMTOOL") and not PROMTOOL:
    raise RuntimeError("PROBE_REQUIRE_PROMTOOL is set but promtool is not installed")


def _dest(name: str, base: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "url": base + "/received?probe_id=${probe_id}",
        "match": {"jsonpath": "$.events[*].probe_id"},
    }


def _post(url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "url": url + "/gs/events",
        "body": '{"probe_id": "${probe_id}"}',
        "expect_status": [202],
    }


def _config(tmp_path: Path, healthy: Any, stalled: Any) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "5s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "100ms", "max_in_flight": 20},
        "flows": [
            {
                "name": "refused",
                "source": {"type": "http", "url": f"http://127.0.0.1:{closed_port()}/health"},
            },
            {
                "name": "slow-source",
                "source": _post(stalled.url("engine")),
                "destinations": [_dest("labka", stalled.url("labka"))],
            },
            {
                "name": "fan-out",
                "source": _post(healthy.url("engine")),
                "destinations": [
                    _dest("answers-500", healthy.url("broken")),
                    _dest("garbage", healthy.url("garbage")),
                    _dest("ok", healthy.url("ok")),
                    {**_dest("slow", healthy.url("slow")), "slo": {"latency": "150ms"}},
                    {**_dest("twice", healthy.url("twice"))},
                    {**_dest("regex", healthy.url("ok")), "match": {"regex": "${probe_id}"}},
                    _dest("refusing", healthy.url("refusing")),
                ],
            },
            {
                "name": "health",
                "source": {"type": "http", "url": healthy.url("engine") + "/health"},
            },
            {
                "name": "wrong-status",
                "source": {
                    "type": "http",
                    "url": healthy.url("engine") + "/health",
                    "expect_status": [204],
                },
            },
        ],
    }


HEALTHY = {
    "destinations": {
        "broken": {"outages": [{"mode": "http_500", **LONG}]},
        "garbage": {"outages": [{"mode": "garbage", **LONG}]},
        "ok": {"delay": {"fixed": "20ms"}},
        "slow": {"delay": {"fixed": "400ms"}},
        "twice": {"duplicates": 1.0},
        "refusing": {"outages": [{"mode": "refuse", **LONG}]},
    }
}
STALLED = {
    "engine": {"outages": [{"mode": "stall", "stall": "30s", **LONG}]},
    "destinations": {"labka": {}},
}

EXPECTED = {
    ("refused", ""): ("send_error", "connect"),
    ("slow-source", "labka"): ("send_error", "timeout"),
    ("fan-out", "answers-500"): ("observe_error", "http_5xx"),
    ("fan-out", "garbage"): ("observe_error", "protocol"),
    ("fan-out", "ok"): ("delivered", None),
    ("fan-out", "slow"): ("late", None),
    ("fan-out", "twice"): ("delivered", None),
    ("fan-out", "regex"): ("delivered", None),
    ("fan-out", "refusing"): ("observe_error", "connect"),
    ("health", ""): ("delivered", None),
    ("wrong-status", ""): ("send_error", "unexpected_status"),
}


async def _scrape(daemon: Daemon) -> str:
    assert daemon.server is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(daemon.server.url + "/metrics")
        assert response.status_code == 200
        return response.text


def _total(text: str, flow: str, destination: str, outcome: str) -> float:
    needle = f'probe_results_total{{destination="{destination}",flow="{flow}",outcome="{outcome}"}}'
    for line in text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    raise AssertionError(f"no series {needle}")


@pytest.mark.slow
async def test_each_failure_has_its_outcome_and_the_daemon_keeps_running(tmp_path: Path) -> None:
    async with simulator(HEALTHY) as healthy, simulator(STALLED) as stalled:
        loaded = write_config(tmp_path, _config(tmp_path, healthy, stalled))
        async with running(loaded) as daemon:

            async def all_seen_twice() -> bool:
                text = await _scrape(daemon)
                return all(_total(text, f, d, o) >= 2 for (f, d), (o, _) in EXPECTED.items())

            await wait_for(all_seen_twice, limit=30)
            before = _total(await _scrape(daemon), "fan-out", "ok", "delivered")

            async def still_probing() -> bool:
                # Still probing after all those failures.
                return _total(await _scrape(daemon), "fan-out", "ok", "delivered") > before

            await wait_for(still_probing, limit=30)
            after_text = await _scrape(daemon)
            assert daemon.server is not None
            async with httpx.AsyncClient() as client:
                ready = await client.get(daemon.server.url + "/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"store": True, "scheduler": True, "tasks": True}
            if PROMTOOL:
                _promtool_check(after_text)
    _, results = await fetch_rows(loaded.config.store.url)
    seen = {(r.flow, r.destination): set() for r in results}
    for r in results:
        seen[(r.flow, r.destination)].add((r.outcome, r.reason))
    for key, expected in EXPECTED.items():
        assert seen[key] == {expected}, key
    duplicates = {(r.destination, r.duplicates) for r in results if r.outcome == "delivered"}
    assert ("twice", 1) in duplicates
    assert not {d for d, n in duplicates if n and d != "twice"}


def _promtool_check(text: str) -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not PROMTOOL, reason="promtool not installed (apt-get install prometheus)")
async def test_promtool_accepts_a_scrape_with_static_labels(tmp_path: Path) -> None:
    async with simulator(HEALTHY) as healthy:
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
            "server": {"listen": "127.0.0.1:0"},
            "labels": {"region": "hovedstaden", "env": "test"},
            "defaults": {"interval": "200ms", "timeout": "1s", "poll": "100ms"},
            "maintenance": [{"name": "always", "flows": ["gs-*"], "once": {
                "start": "2020-01-01T00:00", "duration": "3650d"}}],
            "flows": [{"name": "gs-a", "source": _post(healthy.url("engine")),
                       "destinations": [_dest("ok", healthy.url("ok"))]}],
        }  # fmt: skip
        async with running(write_config(tmp_path, config)) as daemon:

            async def delivered() -> bool:
                text = await _scrape(daemon)
                return (
                    _total(
                        text.replace(',env="test"', "").replace(',region="hovedstaden"', ""),
                        "gs-a",
                        "ok",
                        "delivered",
                    )
                    > 0
                )

            await wait_for(delivered, limit=20)
            text = await _scrape(daemon)
    _promtool_check(text)
    assert 'probe_maintenance{env="test",flow="gs-a",region="hovedstaden"} 1.0' in text
    assert "probe_id=" not in text  # never a label
