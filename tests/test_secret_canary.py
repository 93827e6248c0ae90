"""A canary secret, given through ``${ENV}`` and ``*_file``, never shows up anywhere.

The real daemon runs flows that use the canary in a header, a URL query, an SQL password and
the API token, including flows that fail (so errors about those URLs get logged and stored).
Then each place an operator or attacker can read is searched for it: the logs, /metrics,
the API, every text column of the store, and the monthly report in every format. A
recording server proves the canary was really sent, so the test cannot pass vacuously.

A config error is the other place: a canary that fails validation (in a duration, a port,
a URL, a header, a ``*_file``) is shown as ``***``, at its file, line and path.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import String, Text, select

from probe.config.loader import load_config
from probe.engine.daemon import Daemon
from probe.errors import ConfigError
from probe.store import create_engine
from probe.store.tables import metadata
from tests.helpers import closed_port, fetch_rows, running, wait_for

CANARY = f"canary-{uuid.uuid4().hex}"  # in the environment
FILE_CANARY = f"filecanary-{uuid.uuid4().hex}"  # in a *_file
FLOWS = ["canary-check", "canary-5xx", "canary-refused", "canary-sql", "canary-observe"]


@asynccontextmanager
async def recording_server() -> AsyncIterator[tuple[int, list[str]]]:
    """HTTP on loopback: 200 on /ok, 500 elsewhere; keeps every request head it read."""
    heads: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                heads.append(head)
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.lower().startswith("content-length:")), 0)  # fmt: skip
                await reader.readexactly(length)
                status = "200 OK" if head.split(" ", 2)[1].startswith("/ok") else "500 Oops"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n[]".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        await server.wait_closed()


def _config(store_url: str, port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer ${CANARY}"}
    return {
        "store": {"url": store_url, "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0", "api_token_file": "api-token.txt"},
        "defaults": {"interval": "200ms", "timeout": "2s", "send_timeout": "1s",
                     "poll": "100ms"},
        "flows": [
            {"name": "canary-check",
             "source": {"type": "http", "url": base + "/ok?token=${CANARY_TOKEN}",
                        "headers": auth}},
            {"name": "canary-5xx",
             "source": {"type": "http", "method": "POST",
                        "url": base + "/fail?token=${CANARY_TOKEN}", "headers": auth,
                        "body": '{"probe_id": "${probe_id}"}'}},
            {"name": "canary-refused",
             "source": {"type": "http",
                        "url": f"http://127.0.0.1:{closed_port()}/x?token=${{CANARY_TOKEN}}",
                        "headers": auth}},
            {"name": "canary-sql",
             "source": {"type": "sql",
                        "url": f"postgresql+psycopg://probe:${{DB_PASSWORD}}@127.0.0.1:"
                               f"{closed_port()}/nowhere?connect_timeout=1",
                        "statement": "INSERT INTO t VALUES (:probe_id)"}},
            {"name": "canary-observe",
             "source": {"type": "http", "url": base + "/ok/send", "headers": auth},
             "destinations": [{"name": "inbox", "type": "http",
                               "url": base + "/inbox?token=${CANARY_TOKEN}",
                               "headers": {"X-Api-Key_file": "api-key.txt"}}]},
        ],
    }  # fmt: skip


async def _text_columns(url: str) -> list[str]:
    """Every value of every text column of every table, as stored."""
    values: list[str] = []
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            for table in metadata.sorted_tables:
                columns = [c for c in table.columns if isinstance(c.type, String | Text)]
                if columns:
                    rows = (await conn.execute(select(*columns))).fetchall()
                    values += [str(v) for row in rows for v in row if v is not None]
    finally:
        await engine.dispose()
    return values


async def _report(config: Path, fmt: str, cwd: Path) -> str:
    month = datetime.now(UTC).strftime("%Y-%m")  # the config's time zone is UTC
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "report", "-c", str(config), "--month", month,
        "--format", fmt, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode() + err.decode()


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CANARY", CANARY)
    monkeypatch.setenv("CANARY_TOKEN", CANARY)
    monkeypatch.setenv("DB_PASSWORD", CANARY)
    (tmp_path / "api-token.txt").write_text(FILE_CANARY + "\n")
    (tmp_path / "api-key.txt").write_text(FILE_CANARY + "-key\n")
    return tmp_path


async def _all_flows_resolved(daemon: Daemon) -> bool:
    _, rows = await fetch_rows(daemon.config.store.url)
    return {r.flow for r in rows} >= set(FLOWS)


@pytest.mark.slow
@pytest.mark.e2e
async def test_a_canary_secret_appears_nowhere(
    store_url: str, canary_env: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tmp_path = canary_env
    async with recording_server() as (port, heads):
        path = tmp_path / "probe.yaml"
        config = _config(store_url, port)
        config["store"]["spool_dir"] = str(tmp_path / "spool")  # not under the checkout
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        loaded = load_config(path)
        assert {CANARY, FILE_CANARY, FILE_CANARY + "-key"} <= loaded.secrets
        async with running(loaded) as daemon:
            assert daemon.server is not None
            await wait_for(lambda: _all_flows_resolved(daemon), limit=30)
            async with httpx.AsyncClient(base_url=daemon.server.url, timeout=30) as client:
                bearer = {"Authorization": f"Bearer {FILE_CANARY}"}
                run = await client.post("/api/v1/flows/canary-check/run", headers=bearer)
                assert run.status_code == 200, run.text  # the file canary is the API token
                api = [run]
                api.append(await client.get("/api/v1/flows"))
                api.append(await client.get("/api/v1/openapi.json"))
                api += [await client.get(f"/api/v1/flows/{f}/results") for f in FLOWS]
                # Error responses, including one with a token that contains the canary.
                wrong = {"Authorization": f"Bearer {CANARY}x"}
                api.append(await client.post("/api/v1/flows/canary-check/run", headers=wrong))
                api.append(await client.post("/api/v1/flows/nope/run", headers=bearer))
                api.append(await client.get("/api/v1/flows/nope/results"))
                metrics = await client.get("/metrics")
        # The canary was really used: it went out in headers and URLs, and as the API token.
        lower = [head.lower() for head in heads]  # header names are case-insensitive
        assert any(f"authorization: bearer {CANARY}" in head for head in lower)
        assert any(f"token={CANARY}" in head for head in lower)
        assert any(f"x-api-key: {FILE_CANARY}-key" in head for head in lower)
    assert [r.status_code for r in api[-3:]] == [401, 404, 404]

    out, err = capfd.readouterr()
    logs = out + err
    assert '"event": "send_error"' in logs  # the failing flows were logged
    assert CANARY not in logs
    assert FILE_CANARY not in logs

    assert "probe_results_total" in metrics.text or "probe_" in metrics.text
    assert CANARY not in metrics.text
    assert FILE_CANARY not in metrics.text

    for response in api:
        assert CANARY not in response.text, response.url
        assert FILE_CANARY not in response.text, response.url

    stored = await _text_columns(store_url)
    assert any("HTTP 500" in value or "500" in value for value in stored)  # errors were stored
    assert not [value for value in stored if CANARY in value or FILE_CANARY in value]

    for fmt in ("json", "csv", "md", "html"):
        report = await _report(path, fmt, tmp_path)
        assert "canary-5xx" in report
        assert CANARY not in report, fmt
        assert FILE_CANARY not in report, fmt


# --- config errors: a secret that fails validation is masked, its location kept ----------

# A file secret with a quote and a backslash: repr() escapes them, and still nothing leaks.
ODD_HEX = uuid.uuid4().hex
ODD_CANARY = f"odd'\\\"{ODD_HEX}"
HTTP = "source: {type: http, url: 'http://127.0.0.1:1/'}"
EXAMPLES = "use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 90d"
LEAKS = [
    pytest.param(f"flows:\n  - name: a\n    interval: ${{CANARY}}\n    {HTTP}\n",
                 [f"3: flows[0].interval: invalid duration '***': {EXAMPLES}"],
                 id="env-in-a-duration"),
    pytest.param(f"flows:\n  - name: a\n    interval: ${{CANARY}}s\n    {HTTP}\n",
                 [f"3: flows[0].interval: invalid duration '***s': {EXAMPLES}"],
                 id="env-in-part-of-a-duration"),
    pytest.param("server: {listen: '127.0.0.1:${CANARY}'}\n",
                 ["1: server.listen: invalid listen address '127.0.0.1:***': use HOST:PORT, "
                  "e.g. 127.0.0.1:9464"], id="env-in-a-listen-port"),
    pytest.param("flows:\n  - name: a\n    source: {type: mllp, host: h, port: '${CANARY}'}\n",
                 ["3: flows[0].source.port: Input should be a valid integer, unable to parse "
                  "string as an integer"], id="env-in-a-port"),
    pytest.param("flows:\n  - name: a\n    source: {type: http, url: 'htp://h/?t=${CANARY}'}\n",
                 ["3: flows[0].source.url: url must start with http:// or https://, got "
                  "'htp://h/?t=***'"], id="env-in-a-url"),
    pytest.param(f"flows:\n  - name: a\n    {HTTP}\n    destinations:\n"
                 "      - {name: b, type: http, url: 'h/${CANARY}', headers: {X: '${CANARY}'}}\n",
                 ["5: flows[0].destinations[0].url: url must start with http:// or https://, "
                  "got 'h/***'"], id="env-in-a-url-and-a-header"),
    pytest.param("flows:\n  - name: a\n    source:\n      type: http\n      url: http://h/\n"
                 "      headers: {Authorization_file: '${CANARY}'}\n",
                 ["6: flows[0].source.headers.Authorization_file: cannot read secret file ***: "
                  "No such file or directory"], id="env-as-a-header-file"),
    pytest.param("timezone: ${CANARY}\n",
                 ["1: timezone: unknown time zone '***' (expected an IANA name such as "
                  "Europe/Copenhagen)"], id="env-in-the-time-zone"),
    pytest.param(f"flows:\n  - name: ${{CANARY}}\n    {HTTP}\n  - name: ${{CANARY}}\n    {HTTP}\n",
                 ["4: flows[1].name: duplicate flow name '***' (first at line 2)"],
                 id="env-in-a-duplicate-name"),
    pytest.param("store: {url: 'mysql://probe:${CANARY}@db/probe'}\n",
                 ["1: store.url: unsupported store driver 'mysql': use "
                  "sqlite+aiosqlite:///FILE or postgresql+psycopg://user@host/db"],
                 id="env-in-the-store-url"),
    pytest.param(f"flows:\n  - name: a\n    interval_file: secret.txt\n    {HTTP}\n",
                 [f"3: flows[0].interval_file: invalid duration '***': {EXAMPLES}"],
                 id="file-in-a-duration"),
    pytest.param("flows:\n  - name: a\n    source: {type: mllp, host: h, port_file: secret.txt}\n",
                 ["3: flows[0].source.port_file: Input should be a valid integer, unable to "
                  "parse string as an integer"], id="file-in-a-port"),
    pytest.param(f"flows:\n  - name: a\n    timeout_file: odd.txt\n    {HTTP}\n",
                 [f"3: flows[0].timeout_file: invalid duration '***': {EXAMPLES}"],
                 id="file-with-a-quote-and-a-backslash"),
]  # fmt: skip


@pytest.fixture
def leaky(tmp_path: Path) -> dict[str, str]:
    """The files and environment the cases in `LEAKS` read their canaries from."""
    (tmp_path / "secret.txt").write_text(FILE_CANARY + "\n")
    (tmp_path / "odd.txt").write_text(ODD_CANARY + "\n")
    return {"CANARY": CANARY}


@pytest.mark.parametrize(("text", "expected"), LEAKS)
def test_a_config_error_masks_the_secret_and_keeps_the_location(
    text: str, expected: list[str], tmp_path: Path, leaky: dict[str, str]
) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=leaky)
    assert [p.removeprefix(f"{path}:") for p in caught.value.problems] == expected


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_no_config_error_prints_a_secret(
    command: str, tmp_path: Path, leaky: dict[str, str]
) -> None:
    """Every case of `LEAKS` in one file, through the real command line."""
    path = tmp_path / "probe.yaml"
    path.write_text(
        "timezone: ${CANARY}\n"
        "store: {url: 'mysql://probe:${CANARY}@db/probe'}\n"
        "server: {listen: '127.0.0.1:${CANARY}'}\n"
        "flows:\n"
        "  - name: ${CANARY}\n"
        "    interval: ${CANARY}s\n"
        "    source: {type: http, url: 'htp://h/?t=${CANARY}', headers: {X_file: '${CANARY}'}}\n"
        "  - name: ${CANARY}\n"
        "    interval_file: secret.txt\n"
        "    source: {type: mllp, host: h, port: '${CANARY}'}\n"
        "  - name: odd\n"
        "    timeout_file: odd.txt\n"
        f"    {HTTP}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "probe", command, "-c", str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        env={**leaky, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert CANARY not in output
    assert FILE_CANARY not in output
    assert ODD_HEX not in output
    assert "Traceback" not in output
    use = "use sqlite+aiosqlite:///FILE or postgresql+psycopg://user@host/db"
    assert [line.removeprefix(f"{path}:") for line in proc.stderr.splitlines()] == [
        "1: timezone: unknown time zone '***' (expected an IANA name such as Europe/Copenhagen)",
        f"2: store.url: unsupported store driver 'mysql': {use}",
        "3: server.listen: invalid listen address '127.0.0.1:***': use HOST:PORT, e.g. "
        "127.0.0.1:9464",
        f"6: flows[0].interval: invalid duration '***s': {EXAMPLES}",
        "7: flows[0].source.headers.X_file: cannot read secret file ***: No such file or directory",
        "7: flows[0].source.url: url must start with http:// or https://, got 'htp://h/?t=***'",
        "8: flows[1].name: duplicate flow name '***' (first at line 5)",
        f"9: flows[1].interval_file: invalid duration '***': {EXAMPLES}",
        "10: flows[1].source.port: Input should be a valid integer, unable to parse string as "
        "an integer",
        f"12: flows[2].timeout_file: invalid duration '***': {EXAMPLES}",
    ]
