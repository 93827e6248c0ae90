"""Config reload against the real simulator: SIGHUP and ``POST /-/reload`` on a real daemon.

Which definition a probe used is decided in one step of the event loop together with its
``claimed_at`` stamp, and a reload swaps definitions in one step too. So a probe claimed
before the POST was sent ran the old definition, and one claimed after the answer came back
runs the new one, whatever the timing.
"""

from __future__ import annotations

import asyncio
import copy
import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from structlog.testing import capture_logs

from probe.engine.daemon import Daemon
from tests.helpers import (
    child_process,
    closed_port,
    fetch_rows,
    log_events,
    probe_argv,
    running,
    simulator,
    stop_process,
    wait_for,
    wait_for_event,
    wait_ready,
    write_config,
)

TOKEN = "reload-token-for-tests-42"
SLOW = 1.5  # seconds the "slow" destination holds every message
SIM = {
    "destinations": {
        "labka": {"delay": {"fixed": "10ms"}},
        "slow": {"delay": {"fixed": f"{SLOW}s"}},
    }
}


def _check(name: str, sim: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "http", "url": sim.url("engine") + "/health"}}


def _flow(name: str, sim: Any, *, site: str, dest: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {
            "type": "http",
            "method": "POST",
            "url": sim.url("engine") + "/gs/events",
            "body": '{"probe_id": "${probe_id}"}',
            "expect_status": [202],
        },
        "destinations": [
            {
                "name": dest,
                "type": "http",
                "url": sim.url(site) + "/received?probe_id=${probe_id}",
                "match": {"jsonpath": "$.events[*].probe_id"},
            }
        ],
    }


def _config(tmp_path: Path, flows: list[dict[str, Any]], **server: Any) -> dict[str, Any]:
    spool = tmp_path / "spool"  # given, so the file a reload reads has the same store keys
    return {
        "store": {"url": _url(tmp_path), "flush_interval": "50ms", "spool_dir": f"{spool}"},
        "server": {"listen": "127.0.0.1:0", "api_token": TOKEN, **server},
        "shutdown_grace": "15s",
        "defaults": {"interval": "200ms", "timeout": "5s", "poll": "50ms"},
        "flows": flows,
    }


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"


async def _post_reload(daemon: Daemon, token: str | None = TOKEN) -> httpx.Response:
    assert daemon.server is not None
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{daemon.server.url}/-/reload", headers=headers)


async def _get(daemon: Daemon, path: str) -> httpx.Response:
    assert daemon.server is not None
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(daemon.server.url + path)


async def _metrics(daemon: Daemon) -> str:
    return (await _get(daemon, "/metrics")).text


async def _results_by_flow(tmp_path: Path) -> tuple[dict[str, Any], list[Any]]:
    """(probe rows by id, result rows)."""
    probes, results = await fetch_rows(_url(tmp_path))
    return {p.probe_id: p for p in probes}, results


def _resolved_after(flow: str, moment: datetime, probes: dict[str, Any], results: list[Any]) -> int:
    return sum(1 for r in results if r.flow == flow and probes[r.probe_id].claimed_at > moment)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_reload_adds_and_removes_flows(tmp_path: Path) -> None:
    async with simulator(SIM) as sim:
        keep, gone, new = _check("keep", sim), _check("gone", sim), _check("new", sim)
        loaded = write_config(tmp_path, _config(tmp_path, [keep, gone]))
        async with running(loaded) as daemon:

            async def both_probed() -> bool:
                _, results = await _results_by_flow(tmp_path)
                return {r.flow for r in results} == {"keep", "gone"}

            await wait_for(both_probed, limit=20)
            write_config(tmp_path, _config(tmp_path, [keep, new]))
            answer = await _post_reload(daemon)
            after = _now()
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "status": "ok", "flows": 2, "added": ["new"], "removed": ["gone"], "changed": [],
            }  # fmt: skip

            async def new_probed_and_gone_forgotten() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                text = await _metrics(daemon)
                return _resolved_after("new", after, probes, results) >= 3 and (
                    'flow="gone"' not in text
                )

            await wait_for(new_probed_and_gone_forgotten, limit=20)
            text = await _metrics(daemon)
            assert 'probe_success{destination="",flow="new"} 1.0' in text
            assert 'probe_in_flight{flow="new"}' in text
            assert "probe_config_last_reload_success 1.0" in text
            assert "probe_config_last_reload_success_timestamp_seconds 1." in text
            flows = (await _get(daemon, "/api/v1/flows")).json()["flows"]
            assert [f["name"] for f in flows] == ["keep", "new"]
            assert daemon.scheduler is not None
            assert daemon.scheduler.scheduled() == {"keep", "new"}
        probes, results = await _results_by_flow(tmp_path)
    gone_probes = [p for p in probes.values() if p.flow == "gone"]
    assert gone_probes
    assert all(p.claimed_at < after for p in gone_probes), "no gone probe after the reload"
    assert {r.probe_id for r in results} == set(probes), "every probe resolved"


async def test_changed_flow_keeps_its_old_definition_for_probes_in_flight(tmp_path: Path) -> None:
    async with simulator(SIM) as sim:
        old = _flow("gs", sim, site="slow", dest="slow")
        loaded = write_config(tmp_path, _config(tmp_path, [old]))
        async with running(loaded) as daemon:

            async def in_flight() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                return len(probes) > len({r.probe_id for r in results})

            await wait_for(in_flight, limit=20, every=0.05)
            new = _flow("gs", sim, site="labka", dest="labka")
            write_config(tmp_path, _config(tmp_path, [new]))
            before = _now()
            answer = await _post_reload(daemon)
            after = _now()
            assert answer.status_code == 200, answer.text
            assert answer.json()["changed"] == ["gs"]

            async def old_done_and_new_running() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                done = {r.probe_id for r in results}
                old_ids = {p for p, row in probes.items() if row.claimed_at < before}
                text = await _metrics(daemon)
                return (
                    old_ids <= done
                    and _resolved_after("gs", after, probes, results) >= 3
                    and 'destination="slow"' not in text
                )

            await wait_for(old_done_and_new_running, limit=30)
        probes, results = await _results_by_flow(tmp_path)
    old_results = [r for r in results if probes[r.probe_id].claimed_at < before]
    new_results = [r for r in results if probes[r.probe_id].claimed_at > after]
    assert old_results
    assert new_results
    # The probes in flight at the reload finished on the old destination, and were seen.
    assert {(r.destination, r.outcome) for r in old_results} == {("slow", "delivered")}
    assert all(r.latency_s >= SLOW for r in old_results)
    assert {(r.destination, r.outcome) for r in new_results} == {("labka", "delivered")}
    assert all(r.latency_s < SLOW for r in new_results)


def _mllp_sim(*targets: tuple[str, int, str]) -> dict[str, Any]:
    return {
        "mllp_engine": {"listen": "127.0.0.1:0"},
        "destinations": {
            name: {"kind": "mllp", "target": f"127.0.0.1:{port}", "delay": {"fixed": delay}}
            for name, port, delay in targets
        },
    }


def _mllp_flow(engine: tuple[str, int], dest: str, port: int) -> dict[str, Any]:
    return {
        "name": "gs-adt",
        "source": {
            "type": "mllp", "host": engine[0], "port": engine[1], "message": "adt_a08",
            "patient": {"id": "6504611234", "name": "Testperson^Aase"},
        },
        "destinations": [
            {"name": dest, "type": "mllp", "listen": f"127.0.0.1:{port}", "match": "PID-3"}
        ],
    }  # fmt: skip


@pytest.mark.parametrize("moved", [False, True], ids=["same-listener", "moved-listener"])
@pytest.mark.slow
async def test_changed_mllp_flow_and_its_listener(tmp_path: Path, moved: bool) -> None:
    """Same address: old and new definitions share one listener, and closing the old observer
    leaves it open. New address: the old listener serves the probes in flight, then closes."""
    first, second = closed_port(), closed_port()
    sim_config = _mllp_sim(("labka", first, f"{SLOW}s"), ("labka2", second, "10ms"))
    async with simulator(sim_config) as sim:
        engine = sim.address("mllp_engine")
        loaded = write_config(tmp_path, _config(tmp_path, [_mllp_flow(engine, "labka", first)]))
        async with running(loaded) as daemon:

            async def in_flight() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                return len(probes) > len({r.probe_id for r in results})

            await wait_for(in_flight, limit=20, every=0.05)
            flow = _mllp_flow(engine, "labka2" if moved else "labka-v2", second if moved else first)
            write_config(tmp_path, _config(tmp_path, [flow]))
            before = _now()
            answer = await _post_reload(daemon)
            assert answer.status_code == 200, answer.text

            async def old_runtime_closed() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                old_ids = {p for p, row in probes.items() if row.claimed_at < before}
                text = await _metrics(daemon)
                return old_ids <= {r.probe_id for r in results} and 'destination="labka"' not in (
                    text
                )

            await wait_for(old_runtime_closed, limit=30)
            closed = _now()  # the old observers are closed; the new ones must still see probes

            async def new_delivered() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                return _resolved_after("gs-adt", closed, probes, results) >= 3

            await wait_for(new_delivered, limit=30)
            if moved:  # nobody holds the old listener any more: its port is free again
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", first))
        probes, results = await _results_by_flow(tmp_path)
    old_results = [r for r in results if probes[r.probe_id].claimed_at < before]
    new_results = [r for r in results if probes[r.probe_id].claimed_at > closed]
    assert old_results
    assert {(r.destination, r.outcome) for r in old_results} == {("labka", "delivered")}
    new_dest = "labka2" if moved else "labka-v2"
    assert {(r.destination, r.outcome) for r in new_results} == {(new_dest, "delivered")}


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param("yaml", "YAML syntax error", id="yaml-syntax"),
        pytest.param("duration", "flows[0].interval: invalid duration", id="validation"),
        pytest.param("store", "store.url: cannot change while running", id="store-url"),
        pytest.param("listen", "server.listen: cannot change while running", id="server-listen"),
        pytest.param("timezone", "timezone: cannot change while running", id="timezone"),
        pytest.param("bind", "flow 'new', destination 'labka': cannot listen", id="cannot-bind"),
    ],
)
async def test_invalid_config_keeps_the_old_one_running(
    tmp_path: Path, taken: socket.socket, change: str, expected: str
) -> None:
    async with simulator(SIM) as sim:
        keep = _check("keep", sim)
        loaded = write_config(tmp_path, _config(tmp_path, [keep]))
        bad = _config(tmp_path, [copy.deepcopy(keep)])
        if change == "duration":
            bad["flows"][0]["interval"] = "fast"
        elif change == "store":
            bad["store"]["url"] = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
        elif change == "listen":
            bad["server"]["listen"] = f"127.0.0.1:{closed_port()}"
        elif change == "timezone":
            bad["timezone"] = "Europe/Copenhagen"
        elif change == "bind":
            port = taken.getsockname()[1]
            dest = {"name": "labka", "type": "mllp", "listen": f"127.0.0.1:{port}"}
            bad["flows"].append({**_check("new", sim), "destinations": [dest]})
        async with running(loaded) as daemon:
            path = tmp_path / "probe.yaml"
            text = "flows: [\n" if change == "yaml" else yaml.safe_dump(bad, sort_keys=False)
            path.write_text(text)
            with capture_logs() as logs:
                answer = await _post_reload(daemon)
            after = _now()
            assert answer.status_code == 422, answer.text
            assert expected in answer.json()["error"]
            failed = [e for e in logs if e["event"] == "config_reload_failed"]
            assert len(failed) == 1
            assert expected in failed[0]["error"]
            assert "probe_config_last_reload_success 0.0" in await _metrics(daemon)

            async def old_flow_still_probing() -> bool:
                probes, results = await _results_by_flow(tmp_path)
                return _resolved_after("keep", after, probes, results) >= 3

            await wait_for(old_flow_still_probing, limit=20)
            flows = (await _get(daemon, "/api/v1/flows")).json()["flows"]
            assert [f["name"] for f in flows] == ["keep"]
            # Fixed again, the next reload succeeds.
            write_config(tmp_path, _config(tmp_path, [keep, _check("new", sim)]))
            answer = await _post_reload(daemon)
            assert answer.status_code == 200, answer.text
            assert answer.json()["added"] == ["new"]
            assert "probe_config_last_reload_success 1.0" in await _metrics(daemon)


async def test_reload_endpoint_needs_the_token(tmp_path: Path) -> None:
    async with simulator(SIM) as sim:
        config = _config(tmp_path, [_check("keep", sim)])
        async with running(write_config(tmp_path, config)) as daemon:
            assert (await _post_reload(daemon, token=None)).status_code == 401
            wrong = await _post_reload(daemon, token="not-the-token")
            assert wrong.status_code == 401
            assert wrong.json() == {"error": "invalid token"}
            assert (await _get(daemon, "/-/reload")).status_code == 405
            # Two at once are serialised: both succeed, with nothing left to change.
            both = await asyncio.gather(_post_reload(daemon), _post_reload(daemon))
            assert [a.status_code for a in both] == [200, 200]
            assert all(a.json()["flows"] == 1 for a in both)
        disabled = _config(tmp_path, [_check("keep", sim)], api_token=None)
        async with running(write_config(tmp_path, disabled)) as daemon:
            answer = await _post_reload(daemon)
            assert answer.status_code == 403
            assert "set server.api_token" in answer.json()["error"]


@pytest.mark.slow
@pytest.mark.e2e
async def test_sighup_reloads_a_real_process(tmp_path: Path) -> None:
    port = closed_port()
    log = tmp_path / "probe.log"
    async with simulator(SIM) as sim:
        config = _config(tmp_path, [_check("keep", sim)], listen=f"127.0.0.1:{port}")
        path = tmp_path / "probe.yaml"
        path.write_text(yaml.safe_dump(config))
        async with child_process(probe_argv("run", "-c", str(path)), log) as proc:
            await wait_ready(proc, log, port)
            config["flows"].append(_check("new", sim))
            path.write_text(yaml.safe_dump(config))
            proc.send_signal(signal.SIGHUP)
            await wait_for_event(proc, log, "config_reloaded")

            async def new_flow_delivered() -> bool:
                async with httpx.AsyncClient(timeout=5) as client:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                return 'probe_success{destination="",flow="new"} 1.0' in text

            await wait_for(new_flow_delivered, limit=20)
            path.write_text("flows: [\n")
            proc.send_signal(signal.SIGHUP)
            await wait_for_event(proc, log, "config_reload_failed")
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert "probe_config_last_reload_success 0.0" in text
            assert proc.returncode is None
            assert await stop_process(proc, limit=30) == 0
    events = log_events(log)
    reloaded = next(e for e in events if e["event"] == "config_reloaded")
    assert reloaded["added"] == ["new"]
    assert reloaded["flows"] == 2
    failed = next(e for e in events if e["event"] == "config_reload_failed")
    assert "YAML syntax error" in failed["error"]
