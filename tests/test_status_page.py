"""The status page at ``/``, loaded in real headless Chromium from a real daemon.

Chromium dumps the DOM it built and takes a screenshot, once with every system healthy and
once during an outage. ``PROBE_UPDATE_SCREENSHOTS=1`` copies the screenshots to
``docs/status-healthy.png`` and ``docs/status-outage.png``. Without Chromium the browser
tests are skipped, unless ``PROBE_REQUIRE_CHROMIUM`` is set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from probe.engine.daemon import Daemon
from probe.model import Outcome, Result, new_probe_id
from probe.store import open_store
from tests.helpers import closed_port, running, simulator, wait_for, write_config

CHROMIUM = next(
    filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))),
    None,
)
DOCS = Path(__file__).resolve().parent.parent / "docs"
TZ = "Europe/Copenhagen"
FLOWS = {
    "gs-adt": ("GS patient updates reach Labka and EPM3", ["labka", "epm3"]),
    "gs-orders": ("GS lab orders reach Labka", ["labka-orders"]),
    "labka-api": ("Labka web service answers", []),
    "epm3-api": ("EPM3 medication service answers", []),
}
HEALTHY_SIM = {
    "destinations": {
        "labka": {"delay": {"lognormal": {"median": "40ms", "sigma": 0.3}}},
        "epm3": {"delay": {"lognormal": {"median": "60ms", "sigma": 0.3}}},
        "labka-orders": {"delay": {"lognormal": {"median": "50ms", "sigma": 0.3}}},
    }
}
OUTAGE_SIM = {
    "destinations": {
        "labka": {"outages": [{"mode": "refuse", "start": 0, "duration": "1h"}]},
        "epm3": {"delay": {"lognormal": {"median": "60ms", "sigma": 0.3}}},
        "labka-orders": {"delay": {"fixed": "300ms"}},  # later than its 150ms SLO
    }
}


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("PROBE_REQUIRE_CHROMIUM"):
            pytest.fail("PROBE_REQUIRE_CHROMIUM is set but no chromium is installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def _config(tmp_path: Path, sim: Any, *, outage: bool) -> dict[str, Any]:
    def dest(name: str, **extra: Any) -> dict[str, Any]:
        url = sim.url(name) + "/received?probe_id=${probe_id}"
        return {"name": name, "type": "http", "url": url,
                "match": {"jsonpath": "$.events[*].probe_id"}, **extra}  # fmt: skip

    source = {"type": "http", "method": "POST", "url": sim.url("engine") + "/gs/events",
              "body": '{"probe_id": "${probe_id}"}', "expect_status": [202]}  # fmt: skip
    health = {"type": "http", "url": sim.url("engine") + "/health"}
    local = datetime.now(ZoneInfo(TZ)).replace(second=0, microsecond=0, tzinfo=None)
    windows = [
        {"name": "gs-patch", "flows": ["gs-*"],
         "once": {"start": (local + timedelta(days=2)).replace(hour=22, minute=0).isoformat(),
                  "duration": "2h"}},
    ]  # fmt: skip
    if outage:
        windows.append({"name": "epm3-upgrade", "flows": ["epm3-*"],
                        "once": {"start": (local - timedelta(minutes=20)).isoformat(),
                                 "duration": "1h"}})  # fmt: skip
    return {
        "timezone": TZ,
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "5s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "50ms"},
        "maintenance": windows,
        "flows": [
            {"name": "gs-adt", "description": FLOWS["gs-adt"][0], "source": source,
             "destinations": [dest("labka"), dest("epm3")]},
            {"name": "gs-orders", "description": FLOWS["gs-orders"][0], "source": source,
             "destinations": [dest("labka-orders", slo={"latency": "150ms"})]},
            {"name": "labka-api", "description": FLOWS["labka-api"][0], "source": health},
            {"name": "epm3-api", "description": FLOWS["epm3-api"][0], "source": health},
        ],
    }  # fmt: skip


async def _history(url: str, *, bad: dict[tuple[str, str, int], Outcome] | None = None) -> None:
    """24 hours of results every 5 minutes, delivered unless ``bad[(flow, dest, hours_ago)]``."""
    store = await open_store(url, flush_interval=0.05)
    store.start()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 5)
    for step in range(1, 24 * 12):
        slot = now - timedelta(minutes=5 * step)
        hours_ago = int((datetime.now(UTC) - slot).total_seconds() // 3600)
        for flow, (_, dests) in FLOWS.items():
            for dest in dests or [""]:
                outcome = (bad or {}).get((flow, dest, hours_ago), Outcome.DELIVERED)
                latency = None if outcome in (Outcome.LOST, Outcome.SEND_ERROR) else 0.05
                store.add_result(
                    Result(new_probe_id(slot.timestamp()), flow, dest, outcome, latency,
                           "monotonic" if latency else None, 0, None, slot, slot)
                )  # fmt: skip
    await store.close()


class _States(HTMLParser):
    """Every element with a ``data-state``: (flow, destination) -> (state, class, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, str | None], dict[str, str]] = {}
        self._open: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "data-state" in values and tag in ("tr", "section", "div"):
            key = (values.get("data-flow", "*"), values.get("data-destination"))
            entry = {"state": values["data-state"], "class": values.get("class", ""), "text": ""}
            self.found[key] = entry
            self._open.append((tag, entry))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, entry in self._open:
            entry["text"] += data


async def _chromium(binary: str, tmp_path: Path, *args: str) -> str:
    """Run headless Chromium without any network but loopback; its stdout."""
    process = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium'}",
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def _load(binary: str, tmp_path: Path, url: str, *, shot: str, height: int) -> _States:
    dom = await _chromium(binary, tmp_path, "--dump-dom", url)
    await _chromium(binary, tmp_path, f"--window-size=1200,{height}", f"--screenshot={shot}", url)
    assert Path(shot).stat().st_size > 10_000
    parser = _States()
    parser.feed(dom)
    return parser


async def _wait_states(daemon: Daemon, expected: dict[str, dict[str, str]]) -> None:
    assert daemon.server is not None
    url = daemon.server.url + "/api/v1/flows"

    async def reached() -> bool:
        async with httpx.AsyncClient() as client:
            flows = (await client.get(url)).json()["flows"]
        return {f["name"]: {d["name"]: d["state"] for d in f["destinations"]} for f in flows} == (
            expected
        )

    await wait_for(reached, limit=60, what=f"the states {expected}")  # a busy machine is slow


def _publish(shot: Path, name: str) -> None:
    if os.environ.get("PROBE_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / name)


def _check_row(page: _States, flow: str, dest: str, state: str, label: str) -> None:
    row = page.found[(flow, dest)]
    assert row["state"] == state, (flow, dest, row)
    assert f"state-{state}" in row["class"].split()
    assert label in row["text"], (flow, dest, row["text"])


@pytest.mark.slow
@pytest.mark.e2e
async def test_healthy_systems_are_all_green(tmp_path: Path, chromium: str) -> None:
    async with simulator(HEALTHY_SIM) as sim:
        loaded = write_config(tmp_path, _config(tmp_path, sim, outage=False))
        await _history(loaded.config.store.url)
        async with running(loaded) as daemon:
            await _wait_states(daemon, {name: dict.fromkeys(d or [""], "ok")
                                        for name, (_, d) in FLOWS.items()})  # fmt: skip
            assert daemon.server is not None
            shot = tmp_path / "status-healthy.png"
            page = await _load(chromium, tmp_path, daemon.server.url + "/", shot=str(shot),
                               height=1100)  # fmt: skip
    _publish(shot, "status-healthy.png")
    assert page.found[("*", None)]["state"] == "ok"
    assert "All integrations are working" in page.found[("*", None)]["text"]
    for flow, (_, dests) in FLOWS.items():
        assert page.found[(flow, None)]["state"] == "ok"
        for dest in dests or [""]:
            _check_row(page, flow, dest, "ok", "\u2713 Working")


OUTAGE = {
    ("gs-adt", "labka"): ("down", "\u2715 Down", "\u2715 Nede"),
    ("gs-adt", "epm3"): ("ok", "\u2713 Working", "\u2713 Kører"),
    ("gs-orders", "labka-orders"): ("degraded", "! Degraded", "! Forringet"),
    ("labka-api", ""): ("ok", "\u2713 Working", "\u2713 Kører"),
    ("epm3-api", ""): ("maintenance", "\u2699 Maintenance", "\u2699 Vedligehold"),
}


@pytest.mark.slow
@pytest.mark.e2e
async def test_an_outage_shows_red_amber_and_maintenance(tmp_path: Path, chromium: str) -> None:
    bad = {("gs-orders", "labka-orders", h): Outcome.LATE for h in (1, 2)}
    bad |= {("gs-adt", "labka", 9): Outcome.LOST}
    async with simulator(OUTAGE_SIM) as sim:
        loaded = write_config(tmp_path, _config(tmp_path, sim, outage=True))
        await _history(loaded.config.store.url, bad=bad)
        async with running(loaded) as daemon:
            expected: dict[str, dict[str, str]] = {}
            for (flow, dest), (state, _, _) in OUTAGE.items():
                expected.setdefault(flow, {})[dest] = state
            await _wait_states(daemon, expected)
            assert daemon.server is not None
            base = daemon.server.url + "/"
            shot = tmp_path / "status-outage.png"
            english = await _load(chromium, tmp_path, base, shot=str(shot), height=1200)
            danish = await _load(chromium, tmp_path, base + "?lang=da",
                                 shot=str(tmp_path / "da.png"), height=1200)  # fmt: skip
    _publish(shot, "status-outage.png")
    for (flow, dest), (state, en, da) in OUTAGE.items():
        _check_row(english, flow, dest, state, en)
        _check_row(danish, flow, dest, state, da)
    assert english.found[("gs-adt", None)]["state"] == "down"
    assert english.found[("gs-orders", None)]["state"] == "degraded"
    overall = english.found[("*", None)]
    assert overall["state"] == "down"
    assert "One or more integrations are down" in overall["text"]
    assert "Planned maintenance in progress" in overall["text"]
    maintenance = english.found[("epm3-api", None)]["text"]
    assert "Planned maintenance \u201cepm3-upgrade\u201d until" in maintenance
    assert (
        "Planlagt vedligehold \u201cepm3-upgrade\u201d til"
        in danish.found[("epm3-api", None)]["text"]
    )
    assert (
        "Next planned maintenance: \u201cgs-patch\u201d" in english.found[("gs-adt", None)]["text"]
    )


async def test_page_escapes_config_strings_and_needs_no_network(tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script> & <b>bold</b>'
    config = {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
        "server": {"listen": "127.0.0.1:0"},
        "defaults": {"interval": "250ms", "timeout": "1s"},
        "maintenance": [{"name": hostile, "flows": ["*"],
                         "once": {"start": "2020-01-01T00:00", "duration": "3650d"}}],
        "flows": [{"name": "refused", "description": hostile,
                   "source": {"type": "http", "url": f"http://127.0.0.1:{closed_port()}/"}}],
    }  # fmt: skip
    async with running(write_config(tmp_path, config)) as daemon:
        assert daemon.server is not None
        async with httpx.AsyncClient(base_url=daemon.server.url) as client:
            page = await client.get("/", headers={"Accept-Language": "da-DK,da;q=0.9,en;q=0.8"})
            english = await client.get("/", headers={"Accept-Language": "de, en;q=0.5"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    # The page's own two: its words (JSON, never run) and its script, allowed by its hash.
    assert text.count("<script") == 2
    assert '<script type="application/json" id="status-data">' in text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert "<script>alert" not in text
    assert "<b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "://" not in text, "the page must not load anything from anywhere"
    assert '<meta http-equiv="refresh" content="30">' in text
    assert '<html lang="da">' in text
    assert "Integrationsstatus" in text
    assert '<html lang="en">' in english.text
