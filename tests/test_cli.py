"""The `probe` commands as a user runs them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from probe.engine.demo import DEMO_PORTS, data_file, on_free_ports
from probe.store import create_engine, open_store
from probe.store.tables import incidents, probes, rollups
from tests.helpers import closed_port, fetch_rows, simulator, wait_for


async def _probe(*args: str, cwd: Path, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
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


def test_free_ports_replace_every_port_of_the_demo(tmp_path: Path) -> None:
    probe_file, sim_file = on_free_ports(tmp_path)
    fixed = data_file("demo.yaml").read_text() + data_file("demo-sim.yaml").read_text()
    free = probe_file.read_text() + sim_file.read_text()
    assert all(str(port) in fixed for port in DEMO_PORTS)
    assert not [port for port in DEMO_PORTS if str(port) in free]
    # Only the ports differ: the same words around them, four new ports in their places.
    assert re.sub(r"\d+", "N", free) == re.sub(r"\d+", "N", fixed)
    ports = re.findall(r"127\.0\.0\.1:(\d+)|port: (\d+)", free)
    assert len({a or b for a, b in ports}) == len(DEMO_PORTS)


@pytest.mark.slow
@pytest.mark.e2e
async def test_demo_runs_and_resolves_every_probe(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "demo", "--free-ports", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
            assert line, "demo ended before its banner"
            banner += line.decode()
        where = dict(re.findall(r"(?m)^  ([a-zA-Z ]+): +(\S+)", banner))
        base = where["status page"].removesuffix("/")  # the address the daemon bound
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), banner
        assert not base.endswith(":9464"), banner
        assert where == {
            "status page": f"{base}/",
            "API": f"{base}/api/v1/flows",
            "metrics": f"{base}/metrics",
            "readiness": f"{base}/readyz",
            "database": str(tmp_path / "probe-demo.db"),
            "truth": str(tmp_path / "sim-truth.jsonl"),
        }, banner
        rest = asyncio.create_task(proc.communicate())  # reads both pipes, so neither fills
        # Counted, not only declared: the daemon declares every series at 0 when it starts.
        needles = [
            re.compile(
                rf'^probe_results_total{{destination="{dest}",flow="{flow}",'
                rf'outcome="delivered"[^}}]*}} [1-9]',
                re.MULTILINE,
            )
            for flow, dest in (("gs-adt", "labka"), ("gs-adt", "epm3"), ("engine-health", ""))
        ]
        async with httpx.AsyncClient() as client:
            for name in ("status page", "API", "metrics"):
                assert (await client.get(where[name])).status_code == 200, name

            async def each_delivered() -> bool:
                scrape = (await client.get(where["metrics"])).text
                return all(needle.search(scrape) for needle in needles)

            await wait_for(each_delivered, limit=60, what="a delivered result of each flow")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo drains and prints its summary
        out, err = await asyncio.wait_for(rest, timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert " 0 unresolved" in out.decode()
    probe_rows, results = await fetch_rows(f"sqlite+aiosqlite:///{tmp_path / 'probe-demo.db'}")
    assert {p.flow for p in probe_rows} == {"gs-adt", "engine-health"}  # each, stored
    gs = [p.probe_id for p in probe_rows if p.flow == "gs-adt"]
    assert {(r.probe_id, r.destination) for r in results if r.flow == "gs-adt"} == {
        (pid, d) for pid in gs for d in ("labka", "epm3")
    }


COMMANDS = {
    "run": "Run the probe daemon.",
    "check-config": "Validate a config file, one line per flow.",
    "once": "Probe every flow once and print the results.",
    "demo": "Run the simulator and the daemon together on SQLite.",
    "sim": "Run the simulated integration landscape on its own.",
    "db": "Manage the store's database.",
    "incident": "Open, update, resolve and list written incidents.",
    "announce": "Post or end an announcement: planned work, a change.",
    "report": "Write the monthly operational statistics.",
}
DB_COMMANDS = {
    "upgrade": "Bring the store's schema up to date.",
    "prune": "Delete raw rows older than store.retention.raw.",
    "rollup": "Rebuild the hourly rollups and incidents from raw results.",
}


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    from probe.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _listed(text: str) -> dict[str, str]:
    """The commands a help text lists under ``commands:``, each with its description."""
    section = text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"(?m)^    (\S+) +(\S.*)$", section))


@pytest.mark.parametrize(
    "command",
    [pytest.param((), id="probe")]
    + [pytest.param((name,), id=name) for name in COMMANDS]
    + [pytest.param(("db", name), id=f"db-{name}") for name in DB_COMMANDS],
)
def test_help_is_plain_text(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, *command)
    assert "``" not in text
    assert "`" not in text
    description = text.split("\n\n")[1].strip()  # after the usage
    expected = {**COMMANDS, **DB_COMMANDS}.get(command[-1]) if command else None
    if expected is not None:
        assert description == expected


def test_every_command_and_db_command_has_a_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _listed(_help(capsys)) == COMMANDS
    assert _listed(_help(capsys, "db")) == DB_COMMANDS


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        pytest.param((), ["--log-level {debug,info,warning,error}", "(default: info)",
                          "(default: auto)"], id="probe"),
        pytest.param(("demo",), ["--duration SECONDS", "(default: 120)",
                                 "--free-ports let the OS pick every port, instead of the demo "
                                 "configs' 9464, 18075, 18076 and 18080"], id="demo"),
        pytest.param(("report",), ["(default: json)", "(default: en)", "(default: stdout)",
                                   "(default: $PROBE_CONFIG)"], id="report"),
        pytest.param(("run",), ["(default: $PROBE_NODE, else the host name)"], id="run"),
        pytest.param(("once",), ["(default: every flow)"], id="once"),
    ],
)  # fmt: skip
def test_help_shows_the_defaults(
    command: tuple[str, ...], shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = " ".join(_help(capsys, *command).split())  # as one line, whatever the wrapping
    assert [item for item in shown if item not in text] == []
