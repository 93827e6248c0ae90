"""End to end: the real daemon probes the simulator, and a webhook on loopback is told.

The simulator's destination drops what it is sent for a few seconds (a ``drop`` outage):
the probes of those slots are lost at their deadline, the pair goes down after
``failure_threshold`` of them, and comes back after ``success_threshold`` delivered ones.
The webhook gets the down message and the recovery, once each. A daemon stopped while the
receiver is away loses nothing: the next one sends what the first queued. The webhook's
URL, a secret, shows up in no log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from probe.store import create_engine
from probe.store.tables import notify_state, outbox
from tests.helpers import metric, running, simulator, wait_for, write_config
from tests.test_notify import TOKEN, webhook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _config(tmp_path: Path, sim: Any, store_url: str, hook_url: str) -> dict[str, Any]:
    return {
        "timezone": "Europe/Copenhagen",
        "store": {"url": store_url, "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0", "public_url": "https://drift.example.org/probe/"},
        "shutdown_grace": "3s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "100ms", "max_in_flight": 20},
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
                        "name": "labka",
                        "type": "http",
                        "url": sim.url("labka") + "/received?probe_id=${probe_id}",
                        "match": {"jsonpath": "$.events[*].probe_id"},
                    }
                ],
            }
        ],
        "display": {"gs-rest/labka": {"da": "Labka (laboratorie)", "en": "Labka (lab)"}},
        "notify": {
            "defaults": {"failure_threshold": 3, "success_threshold": 2, "reminder_interval": 0},
            "channels": [{"name": "drift", "url": hook_url, "lang": "en"}],
        },
    }


async def _rows(url: str, table: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(table))).fetchall())
    finally:
        await engine.dispose()


async def test_a_broken_flow_sends_one_down_and_one_recovery(
    tmp_path: Path, store_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    outage = {"mode": "drop", "start": "3s", "duration": "3s"}
    landscape = {"destinations": {"labka": {"outages": [outage]}}}
    async with simulator(landscape) as sim, webhook() as hook:
        loaded = write_config(tmp_path, _config(tmp_path, sim, store_url, hook.url))
        async with running(loaded) as daemon:
            await wait_for(lambda: len(hook.posts) >= 2, limit=60, what="down and recovery")
            recovered = (await _rows(store_url, notify_state))[0].slot_at

            async def well_past_recovery() -> bool:
                (state,) = await _rows(store_url, notify_state)
                return bool((state.slot_at - recovered).total_seconds() >= 2.0)

            await wait_for(well_past_recovery, limit=30, what="results after the recovery")
            assert daemon.server is not None
            sent = await metric(daemon.server.url, "probe_notifications_total")
    assert hook.titles == ["DOWN: Labka (lab)", "RECOVERED: Labka (lab)"]
    assert "**gs-rest → Labka (lab)** is down since" in hook.posts[0]["message"]
    assert "cause: lost" in hook.posts[1]["message"]
    assert "https://drift.example.org/probe/" in hook.posts[1]["message"]
    assert sent == 2
    out, err = capfd.readouterr()
    assert '"notification_sent"' in out  # the log was read: it holds the sends
    assert TOKEN not in out + err


async def test_a_restart_between_queueing_and_sending_loses_nothing(
    tmp_path: Path, store_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    landscape = {
        "destinations": {"labka": {"outages": [{"mode": "drop", "start": 0, "duration": "1h"}]}}
    }
    async with simulator(landscape) as sim, webhook(listening=False) as hook:
        loaded = write_config(tmp_path, _config(tmp_path, sim, store_url, hook.url))

        async def tried() -> bool:
            rows = await _rows(store_url, outbox)
            return len(rows) == 1 and rows[0].attempts >= 1

        async with running(loaded):  # the receiver refuses: the down message waits
            await wait_for(tried, limit=60, what="a down message that failed to send")
        (row,) = await _rows(store_url, outbox)
        assert row.sent_at is None
        assert row.last_error.startswith("FAILURE: ")
        await hook.listener.resume()
        async with running(loaded):  # a new daemon on the same store
            await wait_for(lambda: len(hook.posts) == 1, limit=60, what="the down message")
            await wait_for(tried, limit=5)  # still one row: not queued again
    (row,) = await _rows(store_url, outbox)
    assert row.sent_at is not None
    assert hook.titles == ["DOWN: Labka (lab)"]
    out, err = capfd.readouterr()
    assert '"notification_failed"' in out  # the failed tries were logged, without the URL
    assert TOKEN not in out + err
