"""The live status page: the event stream (``GET /api/v1/events``), the 90-day bar, the
written notices, "down since", the history page and the report page, served by a real
daemon probing the real simulator, and read the way a browser without JavaScript reads it.

A flow is broken the way an integration breaks: its simulator (`BROKEN`, a landscape of
its own) is stopped, so the engine refuses the probes and the flow goes down.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import event

from probe.config.models import resolve_flows
from probe.config.windows import Calendar
from probe.engine.daemon import Daemon
from probe.model import Outcome, Result, new_probe_id, utcnow
from probe.report.render import formats
from probe.sim import Simulator
from probe.store import create_engine, open_store
from probe.store.notices import open_notice, update_notice
from probe.web import live
from probe.web.api import Api, ApiContext
from probe.web.board import BoardSource
from probe.web.days import DAYS, days_bar
from probe.web.status import FlowStatus, Snapshot, State, snapshot
from tests.helpers import running, simulator, wait_for, write_config

TZ = "Europe/Copenhagen"
HEALTHY = {
    "destinations": {
        "labka": {"delay": {"lognormal": {"median": "40ms", "sigma": 0.3}}},
        "epm3": {"delay": {"lognormal": {"median": "60ms", "sigma": 0.3}}},
    }
}
BROKEN = {"destinations": {"labka-orders": {"delay": {"fixed": "20ms"}}}}
DISPLAY = {
    "gs-adt": {"da": "Patientdata fra GS", "en": "Patient data from GS",
               "description": {"da": "Patienter fra GS til Labka og EPM3",
                               "en": "Patients from GS to Labka and EPM3"}},
    "gs-adt/labka": {"da": "Labka (laboratorie)", "en": "Labka (lab)"},
    "gs-orders": {"da": "Laboratorieordrer", "en": "Lab orders"},
    "gs-orders/labka-orders": {"da": "Labkas ordremodtagelse", "en": "Labka order intake"},
    "labka-api": {"da": "Labkas webservice", "en": "Labka web service"},
}  # fmt: skip
PAIRS = [("gs-adt", "labka"), ("gs-adt", "epm3"), ("gs-orders", "labka-orders"), ("labka-api", "")]
GAP = range(40, 45)  # days ago with nothing measured (the daemon was off)
BAD_DAY = 10  # days ago when half of gs-adt/labka's messages were lost
DOWN = ("gs-orders", "labka-orders")


def config(tmp_path: Path, sim: Simulator, broken: Simulator) -> dict[str, Any]:
    """Three flows: ``gs-adt`` and ``labka-api`` on ``sim``, ``gs-orders`` on ``broken``."""

    def dest(site: Simulator, name: str) -> dict[str, Any]:
        url = site.url(name) + "/received?probe_id=${probe_id}"
        return {"name": name, "type": "http", "url": url,
                "match": {"jsonpath": "$.events[*].probe_id"}}  # fmt: skip

    def source(site: Simulator) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "url": site.url("engine") + "/gs/events",
                "body": '{"probe_id": "${probe_id}"}', "expect_status": [202]}  # fmt: skip

    local = datetime.now(ZoneInfo(TZ)).replace(second=0, microsecond=0, tzinfo=None)
    start = (local + timedelta(days=2)).replace(hour=22, minute=0)
    return {
        "timezone": TZ,
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "5s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "50ms"},
        "maintenance": [{"name": "gs-patch", "flows": ["gs-*"],
                         "once": {"start": start.isoformat(), "duration": "2h"}}],
        "display": DISPLAY,
        "flows": [
            {"name": "gs-adt", "description": "GS ADT", "source": source(sim),
             "destinations": [dest(sim, "labka"), dest(sim, "epm3")]},
            {"name": "gs-orders", "source": source(broken),
             "destinations": [dest(broken, "labka-orders")]},
            {"name": "labka-api", "source": {"type": "http", "url": sim.url("engine") + "/health"}},
        ],
    }  # fmt: skip


@asynccontextmanager
async def landscape(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Simulator, dict[str, Any]]]:
    """The daemon over 90 days of history, probing both simulators; and its config."""
    async with simulator(HEALTHY) as sim, simulator(BROKEN) as broken:
        raw = config(tmp_path, sim, broken)
        loaded = write_config(tmp_path, raw)
        await seed(loaded.config.store.url)
        async with running(loaded) as daemon:
            yield daemon, broken, raw


def _result(flow: str, dest: str, slot: datetime, outcome: Outcome, **extra: Any) -> Result:
    latency = None if outcome in (Outcome.LOST, Outcome.SEND_ERROR) else 0.05
    return Result(new_probe_id(slot.timestamp()), flow, dest, outcome, latency,
                  "monotonic" if latency else None, 0, None, slot, slot, **extra)  # fmt: skip


async def seed(url: str) -> None:
    """A result every 2 hours for 89 days, every 10 minutes in the last day, for every pair;
    nothing on the days `GAP` ago, and half lost on `BAD_DAY` for gs-adt/labka."""
    store = await open_store(url, flush_interval=0.05)
    store.start()
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    today = now.astimezone(ZoneInfo(TZ)).date()
    slots = [now - timedelta(hours=h) for h in range(24, (DAYS - 1) * 24, 2)]
    slots += [now - timedelta(minutes=10 * m) for m in range(1, 6 * 24)]
    for slot in slots:
        ago = (today - slot.astimezone(ZoneInfo(TZ)).date()).days
        if ago in GAP:
            continue
        for flow, dest in PAIRS:
            lost = (
                (flow, dest) == ("gs-adt", "labka") and ago == BAD_DAY and slot.hour // 2 % 2 == 0
            )
            store.add_result(_result(flow, dest, slot, Outcome.LOST if lost else Outcome.DELIVERED))
    await store.close()


# --- the 90-day bar, on each store --------------------------------------------------------

CPH = ZoneInfo(TZ)
NOW = datetime(2026, 10, 27, 11, 0, tzinfo=UTC)  # two days after the end of summer time


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=CPH)


async def test_the_90_day_bar_reads_every_pair_in_one_query(store_url: str, tmp_path: Path) -> None:
    store = await open_store(store_url, flush_interval=0.05)
    store.start()
    rows = [
        # 25 October has 25 hours: its first and last hour are the same day, and 23:30 on
        # the 24th (21:30 UTC) is not.
        _result("a", "x", at(10, 25, 0, 30), Outcome.DELIVERED),
        _result("a", "x", at(10, 25, 23, 30), Outcome.DELIVERED),
        _result("a", "x", at(10, 24, 23, 30), Outcome.LOST),
        _result("a", "x", at(10, 23, 12, 0), Outcome.DELIVERED, maintenance=True),
        _result("a", "x", at(10, 27, 9, 0), Outcome.DELIVERED),  # today
        *(_result("b", "", at(10, 26, h, 0), Outcome.DELIVERED) for h in range(10)),
        _result("b", "", at(10, 26, 11, 0), Outcome.LATE),
    ]
    for row in rows:
        store.add_result(row)
    await store.close()
    engine = create_engine(store_url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))  # fmt: skip
    try:
        async with engine.connect() as conn:
            statements.clear()
            bar = await days_bar(conn, now=NOW, tz=CPH)
        assert len(statements) == 1, statements
        loaded = write_config(tmp_path, {"flows": [
            {"name": "a", "source": {"type": "http", "url": "http://127.0.0.1:9/"},
             "destinations": [{"name": "x", "type": "http", "url": "http://127.0.0.1:9/",
                               "match": {"regex": "x"}}]}]})  # fmt: skip
        found = await snapshot(engine, resolve_flows(loaded.config), Calendar([], CPH), now=NOW)
    finally:
        await engine.dispose()
    cells = bar.cells(("a", "x"), hours=found.flows[0].destinations[0].hours)
    assert len(cells) == DAYS
    assert cells[0].day == date(2026, 10, 27) - timedelta(days=DAYS - 1)
    by_day = {c.day: c for c in cells}
    assert (by_day[date(2026, 10, 25)].counted, by_day[date(2026, 10, 25)].delivered) == (2, 2)
    assert by_day[date(2026, 10, 25)].state(0.995) is State.OK
    assert by_day[date(2026, 10, 24)].state(0.995) is State.DOWN  # all lost
    assert by_day[date(2026, 10, 23)].state(0.995) is State.MAINTENANCE
    not_measured = by_day[date(2026, 10, 22)]
    assert not_measured.availability is None  # never 0 %
    assert not_measured.state(0.995) is State.UNKNOWN
    assert (cells[-1].day, cells[-1].counted) == (date(2026, 10, 27), 1)  # from the hours
    check = {c.day: c for c in bar.cells(("b", ""), hours=())}
    assert check[date(2026, 10, 26)].state(0.995) is State.DEGRADED  # 10 of 11 in time


# --- the event stream ---------------------------------------------------------------------


def _flows(states: dict[str, State]) -> tuple[FlowStatus, ...]:
    return tuple(FlowStatus(name, "", state, None, None, ()) for name, state in states.items())


def test_state_data_is_compact_and_changes_only_with_the_states() -> None:
    first = live.state_of(Snapshot(NOW, _flows({"a": State.OK})), (), CPH)
    later = live.state_of(Snapshot(NOW + timedelta(seconds=2), _flows({"a": State.OK})), (), CPH)
    down = live.state_of(Snapshot(NOW, _flows({"a": State.DOWN})), (), CPH)
    assert first["generated_at"] == "2026-10-27T12:00:00+01:00"
    assert first["overall"] == {"state": "ok", "summary": "ok", "maintenance": False}
    assert live._same(first, later)
    assert not live._same(first, down)
    wire = live.frame("state", down)
    assert wire.startswith("event: state\ndata: {")
    assert wire.endswith("}\n\n")
    assert wire.count("\n") == 3, "one data line, whatever the content"


class _Stream:
    """A Server-Sent Events stream read as a browser's EventSource reads it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.retry: int | None = None

    async def next(self) -> tuple[str, Any]:
        """The next event: its name and its data, parsed."""
        name, data = "message", []
        async for line in self._lines:
            if line.startswith("retry:"):
                self.retry = int(line[6:])
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                return name, json.loads("\n".join(data))
        raise AssertionError("the stream ended")

    async def until(self, wanted: Callable[[dict[str, Any]], bool], *, what: str) -> dict[str, Any]:
        """Read ``state`` events until ``wanted(data)``; fail after a minute."""
        try:
            async with asyncio.timeout(60):  # a busy machine is slow
                while True:
                    name, data = await self.next()
                    if name == "state" and wanted(data):
                        return data  # type: ignore[no-any-return]
        except TimeoutError:
            raise AssertionError(f"no state event with {what} within 60 s") from None


def _pairs(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["name"], d["name"]): d for f in data["flows"] for d in f["destinations"]}


def _all_ok(data: dict[str, Any]) -> bool:
    return all(d["state"] == "ok" for d in _pairs(data).values())


def _down(data: dict[str, Any]) -> bool:
    pair = _pairs(data)[DOWN]
    return bool(pair["state"] == "down" and pair["down_since"])


LONG_READ = httpx.Timeout(10, read=40)  # a quiet stream sends a comment every 15 s


@pytest.mark.slow
@pytest.mark.e2e
async def test_the_event_stream_follows_a_flow_the_simulator_breaks(tmp_path: Path) -> None:
    async with landscape(tmp_path) as (daemon, broken, _):
        assert daemon.server is not None
        client = httpx.AsyncClient(base_url=daemon.server.url, timeout=LONG_READ)
        async with client, client.stream("GET", live.EVENTS_PATH) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            stream = _Stream(response)
            healthy = await stream.until(_all_ok, what="every pair ok")
            assert stream.retry == live.RETRY_MS
            assert healthy["overall"] == {"state": "ok", "summary": "ok", "maintenance": False}
            assert [f["name"] for f in healthy["flows"]] == ["gs-adt", "gs-orders", "labka-api"]
            check = _pairs(healthy)[("labka-api", "")]
            assert check == {"name": "", "state": "ok", "down_since": None}
            await broken.stop()
            down = await stream.until(_down, what=f"{DOWN} down with a down_since")
    assert down["overall"]["state"] == "down"
    assert down["overall"]["summary"] == "down"
    assert next(f for f in down["flows"] if f["name"] == "gs-orders")["state"] == "down"
    since = datetime.fromisoformat(_pairs(down)[DOWN]["down_since"])
    assert since.utcoffset() == datetime.now(ZoneInfo(TZ)).utcoffset()  # the config's zone
    assert _pairs(down)[("gs-adt", "labka")]["state"] == "ok"


@pytest.mark.slow
@pytest.mark.e2e
async def test_streams_are_capped_and_freed_when_their_clients_leave(tmp_path: Path) -> None:
    async with landscape(tmp_path) as (daemon, _, _), AsyncExitStack() as streams:
        assert daemon.server is not None
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        client = await streams.enter_async_context(
            httpx.AsyncClient(base_url=daemon.server.url, timeout=LONG_READ, limits=limits)
        )
        held = []
        for _ in range(live.MAX_STREAMS):
            request = client.build_request("GET", live.EVENTS_PATH)
            held.append(await client.send(request, stream=True))
        assert all(r.status_code == 200 for r in held)
        refused = await client.get(live.EVENTS_PATH)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "30"
        assert "too many event streams open (at most 100)" in refused.json()["error"]
        for response in held:
            await response.aclose()  # the browser tab closes

        async def one_more() -> bool:
            async with client.stream("GET", live.EVENTS_PATH) as response:
                return response.status_code == 200

        await wait_for(one_more, limit=30, what="a stream once the others are gone")


def _row(page: str, flow: str, dest: str) -> str:
    found = re.search(
        rf'<tr class="dest[^"]*" data-flow="{flow}" data-destination="{dest}".*?</tr>', page, re.S
    )
    assert found, (flow, dest)
    return found.group(0)


def _section(page: str, flow: str) -> str:
    found = re.search(rf'<section class="flow[^"]*" data-flow="{flow}".*?</section>', page, re.S)
    assert found, flow
    return found.group(0)


def _days(row: str) -> list[tuple[str, str]]:
    bar = re.search(r'<div class="cells days"[^>]*>(.*?)</div>', row, re.S)
    assert bar, row
    return re.findall(r'<span class="cell state-(\w+)" title="([^"]*)"></span>', bar.group(1))


async def _incident(url: str) -> int:
    """An incident on gs-orders with two updates, written as an operator would."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            opened = await open_notice(
                conn, kind="incident", title="Lab orders do not reach Labka", flows=["gs-orders"],
                body="We are looking into it. <script>alert(1)</script>", now=utcnow(),
            )  # fmt: skip
            await update_notice(
                conn, opened.id, state="identified", body="The **order queue** is stuck.",
                now=utcnow() + timedelta(seconds=1),
            )  # fmt: skip
    finally:
        await engine.dispose()
    return opened.id


@pytest.mark.slow
@pytest.mark.e2e
async def test_the_page_without_a_script_shows_everything(tmp_path: Path) -> None:
    async with landscape(tmp_path) as (daemon, broken, raw):
        assert daemon.server is not None
        await broken.stop()
        async with httpx.AsyncClient(base_url=daemon.server.url, timeout=30) as client:

            async def down_since() -> str | None:
                flows = (await client.get("/api/v1/flows")).json()["flows"]
                pair = next(f for f in flows if f["name"] == "gs-orders")["destinations"][0]
                return pair["down_since"] if pair["state"] == "down" else None

            await wait_for(
                lambda: _is_set(down_since()), limit=60, what="gs-orders down, with a down_since"
            )
            since = await down_since()
            notice = await _incident(raw["store"]["url"])
            await wait_for(
                lambda: _has(client, "/", "Lab orders do not reach Labka"),
                limit=10, what="the incident on the page",
            )  # fmt: skip
            english = await client.get("/?lang=en")
            danish = await client.get("/", headers={"Accept-Language": "da"})
            history = await client.get("/history?lang=en")
            month = f"{datetime.now(ZoneInfo(TZ)):%Y-%m}"
            report = await client.get(f"/report/{month}?lang=da")
            bad_month = await client.get("/report/2026-13?lang=en")
    assert since is not None
    _check_page(english, lang="en", notice=notice, since=since)
    _check_page(danish, lang="da", notice=notice, since=since)
    _check_history(history.text, notice=notice)
    assert report.status_code == 200
    assert '<html lang="da">' in report.text
    assert "Månedsrapport" in report.text
    assert "script-src 'none'" in report.headers["content-security-policy"]
    assert bad_month.status_code == 400
    assert "Not a month: 2026-13. Use YYYY-MM." in bad_month.text


async def _is_set(value: Awaitable[str | None]) -> bool:
    return await value is not None


async def _has(client: httpx.AsyncClient, path: str, text: str) -> bool:
    return text in (await client.get(path)).text


WORDS = {
    "en": ("Patient data from GS", "Labka (lab)", "Down", "since", "Identified", "Investigating"),
    "da": ("Patientdata fra GS", "Labka (laboratorie)", "Nede", "siden", "Årsag fundet",
           "Undersøges"),
}  # fmt: skip


def _check_page(response: httpx.Response, *, lang: str, notice: int, since: str) -> None:
    assert response.status_code == 200
    page = response.text
    flow, dest, down, since_word, identified, investigating = WORDS[lang]
    assert f'<html lang="{lang}">' in page
    # Works without the script: it reloads itself, and the script only enhances.
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script, "the inline script"
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    policy = response.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy
    assert "://" not in page.replace("https://example", ""), "nothing from anywhere else"
    # Display names, with the technical names small beside them.
    assert f'{flow} <small class="tech">gs-adt</small>' in page
    assert f'{dest} <small class="tech">labka</small>' in _row(page, "gs-adt", "labka")
    # The incident at the top, its timeline newest first, its body rendered inert.
    top = page[page.index('data-part="notices"') : page.index('<section class="flow')]
    assert f'id="notice-{notice}"' in top
    assert top.index(identified) < top.index(investigating)
    assert "The <strong>order queue</strong> is stuck." in top
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in top
    assert "gs-patch" in top, "planned maintenance as an upcoming announcement"
    # The broken flow: down, since when, and marked with the incident.
    orders = _section(page, "gs-orders")
    assert f'href="#notice-{notice}"' in orders
    row = _row(page, "gs-orders", "labka-orders")
    assert 'data-state="down"' in row
    local = formats.when(since, lang, exact=False)  # type: ignore[arg-type]
    assert f'<small class="since">{since_word} {local}</small>' in row
    assert f'\u2715</span> <span class="word">{down}</span>' in row
    # The 90-day bar: a cell a day, not-measured days grey and never 0 %.
    cells = _days(_row(page, "gs-adt", "labka"))
    assert len(cells) == DAYS
    today = datetime.now(ZoneInfo(TZ)).date()
    by_ago = {(DAYS - 1 - i): cell for i, cell in enumerate(cells)}
    for ago in GAP:
        state, title = by_ago[ago]
        assert state == "unknown"
        assert title.endswith("not measured" if lang == "en" else "ikke målt")
        assert title.startswith(formats.day(today - timedelta(days=ago), lang))  # type: ignore[arg-type]
    assert by_ago[BAD_DAY][0] == "down"
    assert by_ago[20][0] == "ok"
    assert all(state == "ok" for state, _ in _days(_row(page, "gs-adt", "epm3"))[1:-1]
               if state != "unknown")  # fmt: skip


def _check_history(page: str, *, notice: int) -> None:
    assert '<html lang="en">' in page
    assert f'id="notice-{notice}"' in page
    assert "Lab orders do not reach Labka" in page
    tables = re.findall(r'<table class="history"><caption>(.*?)</caption>(.*?)</table>', page, re.S)
    captions = {re.sub(r"<[^>]+>", "", caption): body for caption, body in tables}
    orders = captions["Lab orders gs-orders \u203a Labka order intake labka-orders"]
    assert "<td>ongoing</td>" in orders
    assert "<td>Send error</td>" in orders
    lab = captions["Patient data from GS gs-adt \u203a Labka (lab) labka"]
    assert lab.count("<td>Lost</td>") == 6  # the bad day: one lost in every four hours


async def _api(url: str, tmp_path: Path) -> Api:
    """The daemon's API over the store at ``url``, without a daemon: one flow, a check."""
    loaded = write_config(tmp_path, {"timezone": TZ, "store": {"url": url}, "flows": [
        {"name": "a", "source": {"type": "http", "url": "http://127.0.0.1:9/"}}]})  # fmt: skip

    async def run_now(_: Any) -> None:
        return None

    context = ApiContext(create_engine(url), loaded.config, resolve_flows(loaded.config),
                         Calendar([], CPH), run_now)  # fmt: skip
    return Api(context)


async def test_a_stream_says_when_the_store_is_unreadable_and_ends_on_close(
    tmp_path: Path,
) -> None:
    api = await _api(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'probe.db'}", tmp_path)
    events = live.Events(BoardSource(api), tick=0.05)
    stream = events._stream()
    try:
        assert await anext(stream) == f"retry: {live.RETRY_MS}\n\n"
        first = await anext(stream)
        assert first.startswith("event: unavailable\ndata: ")
        assert json.loads(first.split("data: ", 1)[1])["error"].startswith("store unreachable")
        events.close()
        with pytest.raises(StopAsyncIteration):  # ended within a tick, not a heartbeat
            await asyncio.wait_for(anext(stream), timeout=5)
    finally:
        await stream.aclose()
        await api.context.engine.dispose()
