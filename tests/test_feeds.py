"""``/feed.atom``, ``/flows/{flow}/feed.atom`` and ``/maintenance.ics`` from a real server.

The daemon's app (`probe.web.server.make_app`) runs under uvicorn on a free loopback port
(`probe.web.listener.Listener`), over a real SQLite file and the real PostgreSQL. Notices
are written through `probe.store.notices`, results through the store, which derives the
automatic incidents. The Atom feed is read back by feedparser and by ElementTree; the
calendar by the small RFC 5545 reader below, which also checks CRLF and the 75-octet lines.
"""

from __future__ import annotations

import calendar as cal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest

from probe.config.models import Config, resolve_flows
from probe.config.windows import Calendar
from probe.model import Outcome, Result, utcnow
from probe.store import create_engine, open_store
from probe.store.notices import Notice, open_notice, resolve_notice, update_notice
from probe.web.api import Api, ApiContext
from probe.web.ical import escape_text, fold
from probe.web.listener import Listener
from probe.web.server import make_app

CPH = ZoneInfo("Europe/Copenhagen")
ATOM = "{http://www.w3.org/2005/Atom}"
SCRIPT_TITLE = "Labka <script>alert(1)</script> & co"
ODD_WINDOW = "Move, phase 1; DC\\B"
LONG_NAME = "Patientdata fra GS til Labka, EPM3 og arkivet på Rigshospitalet og Herlev (æøå)"


def _config(**server: Any) -> Config:
    later = (datetime.now(CPH) + timedelta(days=10)).replace(hour=22, minute=0, second=0)
    return Config.model_validate(
        {
            "timezone": "Europe/Copenhagen",
            "server": {"listen": "127.0.0.1:0", **server},
            "maintenance": [
                {
                    "name": "tuesday-patch",
                    "flows": ["gs-*"],
                    "weekly": {"day": "tuesday", "start": "06:00", "duration": "1h"},
                },
                {
                    "name": ODD_WINDOW,
                    "flows": ["gs-adt"],
                    "once": {"start": later.replace(tzinfo=None).isoformat(), "duration": "4h"},
                },
            ],
            "display": {
                "gs-adt": {"da": LONG_NAME, "en": "Patient data from GS"},
                "gs-adt/labka": {"da": "Labka (laboratorie)", "en": "Labka (lab)"},
            },
            "flows": [
                {
                    "name": "gs-adt",
                    "source": {"type": "mllp", "host": "127.0.0.1", "port": 2575},
                    "destinations": [
                        {"name": "labka", "type": "mllp", "listen": "127.0.0.1:2576"},
                        {"name": "epm3", "type": "mllp", "listen": "127.0.0.1:2577"},
                    ],
                },
                {"name": "labka-api", "source": {"type": "http", "url": "http://127.0.0.1:1/"}},
            ],
        }
    )


async def _ready() -> dict[str, bool]:
    return {"store": True}


async def _no_run(_: object) -> None:
    return None


def _context(engine: Any, config: Config) -> ApiContext:
    flows = resolve_flows(config)
    return ApiContext(engine, config, flows, Calendar(config.maintenance, CPH), _no_run)


@asynccontextmanager
async def served(url: str, config: Config) -> AsyncIterator[tuple[str, Api]]:
    """The daemon's HTTP app on a free port over the store at ``url``: its base URL and API."""
    engine = create_engine(url)
    api = Api(_context(engine, config))
    app = make_app(exposition=lambda: iter([b""]), readiness=_ready, api=api)
    listener = Listener("api", app, host="127.0.0.1", port=0)
    await listener.start()
    try:
        yield listener.url, api
    finally:
        await listener.stop()
        await engine.dispose()


@asynccontextmanager
async def serving(url: str, config: Config) -> AsyncIterator[str]:
    async with served(url, config) as (base, _):
        yield base


class Scene:
    """What `_store_scene` wrote: the notices and the time everything is relative to."""

    def __init__(self, now: datetime, notices: dict[str, Notice]) -> None:
        self.now = now
        self.notices = notices


def _result(flow: str, destination: str, slot: datetime, outcome: str) -> Result:
    good = outcome == "delivered"
    return Result(
        probe_id=f"F{slot:%H%M%S}{destination[:1]}",
        flow=flow,
        destination=destination,
        outcome=Outcome(outcome),
        latency=0.1 if good else None,
        latency_clock="monotonic" if good else None,
        duplicates=0,
        reason=None if good else outcome,
        slot=slot,
        resolved_at=slot + timedelta(seconds=1),
        span=60.0,
    )


async def _store_scene(url: str) -> Scene:
    """Four notices (one too old for the feed) and two automatic incidents: labka down for
    three slots (a state change), epm3 for one (below ``failure_threshold``: none)."""
    now = utcnow().replace(microsecond=0)
    store = await open_store(url, flush_interval=0.05)
    store.start()
    try:
        for k in range(10):
            slot = now - timedelta(minutes=30 - k)
            store.add_result(
                _result("gs-adt", "labka", slot, "lost" if 2 <= k <= 4 else "delivered")
            )
            store.add_result(_result("gs-adt", "epm3", slot, "lost" if k == 6 else "delivered"))
    finally:
        await store.close(flush_timeout=60)
    engine = create_engine(url)
    hour = timedelta(hours=1)
    try:
        async with engine.begin() as conn:
            one = await open_notice(
                conn, kind="incident", title=SCRIPT_TITLE, flows=["gs-*"],
                body="We are looking into it.", now=now - 2 * hour,
            )  # fmt: skip
            one = await update_notice(
                conn, one.id, state="identified", now=now - hour,
                body="The **queue** is stuck. <script>alert('x')</script>",
            )  # fmt: skip
            two = await open_notice(
                conn, kind="incident", title="Labka API down", flows=["labka-api"], body="Down.",
                now=now - 3 * hour,
            )  # fmt: skip
            two = await resolve_notice(conn, two.id, body="Up again.", now=now - 2.5 * hour)
            three = await open_notice(
                conn, kind="announcement", title="Upgrade of EPM3, tonight; all flows", flows=[],
                body="EPM3 gets **version 9**.", now=now - timedelta(minutes=10),
                starts_at=now + 24 * hour, ends_at=now + 26 * hour,
            )  # fmt: skip
            old = await open_notice(
                conn,
                kind="incident",
                title="Long ago",
                flows=["*"],
                body="",
                now=now - 200 * 24 * hour,
            )
            old = await resolve_notice(conn, old.id, now=now - 199 * 24 * hour)
    finally:
        await engine.dispose()
    return Scene(now, {"one": one, "two": two, "three": three, "old": old})


async def _get(base: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(base + path)


def _seconds(moment: datetime) -> time.struct_time:
    return moment.astimezone(UTC).replace(microsecond=0).utctimetuple()


# --- Atom ---------------------------------------------------------------------------------


async def test_feed_lists_notices_and_state_changes(store_url: str) -> None:
    scene = await _store_scene(store_url)
    one, two, three = (scene.notices[k] for k in ("one", "two", "three"))
    async with serving(store_url, _config()) as base:
        answer = await _get(base, "/feed.atom")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title == "Integration status"
    assert feed.feed.id == f"{base}/feed.atom?lang=en"
    assert {link.rel: link.href for link in feed.feed.links} == {
        "self": f"{base}/feed.atom",
        "alternate": f"{base}/",
    }
    assert feed.feed.author == "dataflow-probe"
    # The newest change first; the notice of 200 days ago and epm3's single lost slot are
    # not in it.
    assert [entry.title for entry in feed.entries] == [
        "Announcement: Upgrade of EPM3, tonight; all flows",
        "Recovered: Patient data from GS \u2192 Labka (lab)",
        f"Identified: {SCRIPT_TITLE}",
        "Resolved: Labka API down",
    ]
    assert feed.feed.updated_parsed == _seconds(three.updated_at)
    announced, changed, incident, resolved = feed.entries
    assert incident.id == f"tag:127.0.0.1,{one.created_at.date()}:dataflow-probe/notice/{one.id}"
    assert incident.link == f"{base}/history?lang=en#notice-{one.id}"
    assert incident.updated_parsed == _seconds(one.updated_at)
    assert incident.published_parsed == _seconds(one.created_at)
    assert resolved.updated_parsed == _seconds(two.updated_at)
    assert changed.link == f"{base}/"
    assert changed.published_parsed == _seconds(scene.now - timedelta(minutes=28))
    assert changed.updated_parsed == _seconds(scene.now - timedelta(minutes=25))
    assert "Cause: lost" in changed.summary
    # The timeline, newest first, with the update's Markdown rendered.
    content = incident.content[0].value
    assert content.index("Identified") < content.index("Investigating")
    assert "The <strong>queue</strong> is stuck." in content
    assert "We are looking into it." in content
    assert incident.summary == "The queue is stuck. <script>alert('x')</script>"
    assert announced.tags[0].term == "announcement"


async def test_markup_in_titles_and_bodies_is_text(store_url: str) -> None:
    """A ``<script>`` and an ``&`` in a title read back as those characters, and the body's
    ``<script>`` is escaped inside the HTML content, not a tag."""
    scene = await _store_scene(store_url)
    async with serving(store_url, _config()) as base:
        raw = (await _get(base, "/feed.atom")).content
    root = ET.fromstring(raw)  # noqa: S314 (our own server's answer)
    entries = {e.findtext(f"{ATOM}id"): e for e in root.iter(f"{ATOM}entry")}
    one = scene.notices["one"]
    entry = next(e for key, e in entries.items() if key and key.endswith(f"/notice/{one.id}"))
    assert entry.findtext(f"{ATOM}title") == f"Identified: {SCRIPT_TITLE}"
    content = entry.find(f"{ATOM}content")
    assert content is not None
    assert content.get("type") == "html"
    html = content.text or ""
    assert "<script" not in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    # The title is escaped once, as text; the body's markup twice: as HTML, then into XML.
    assert b"Labka &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in raw
    assert b"&amp;lt;script&amp;gt;alert(1)" not in raw
    assert b"&amp;lt;script&amp;gt;alert('x')" in raw


async def test_a_flow_feed_lists_what_affects_that_flow(store_url: str) -> None:
    scene = await _store_scene(store_url)
    async with serving(store_url, _config()) as base:
        api = feedparser.parse((await _get(base, "/flows/labka-api/feed.atom")).content)
        gs = feedparser.parse((await _get(base, "/flows/gs-adt/feed.atom")).content)
        unknown = await _get(base, "/flows/nope/feed.atom")
    assert not api.bozo
    assert not gs.bozo
    assert api.feed.title == "Integration status: labka-api"
    assert api.feed.id == f"{base}/flows/labka-api/feed.atom?lang=en"
    assert [e.title for e in api.entries] == [
        "Announcement: Upgrade of EPM3, tonight; all flows",  # it names no flow: all of them
        "Resolved: Labka API down",
    ]
    assert [e.title for e in gs.entries] == [
        "Announcement: Upgrade of EPM3, tonight; all flows",
        "Recovered: Patient data from GS \u2192 Labka (lab)",
        f"Identified: {SCRIPT_TITLE}",
    ]
    assert gs.feed.title == "Integration status: Patient data from GS"
    assert scene.notices["two"].title not in {e.title for e in gs.entries}
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no flow named 'nope'"}


async def test_danish_and_bad_languages(store_url: str) -> None:
    scene = await _store_scene(store_url)
    async with serving(store_url, _config()) as base:
        danish = feedparser.parse((await _get(base, "/feed.atom?lang=da")).content)
        english = feedparser.parse((await _get(base, "/feed.atom")).content)
        bad = await _get(base, "/feed.atom?lang=de")
        bad_ics = await _get(base, "/maintenance.ics?lang=")
    assert not danish.bozo
    assert danish.feed.language == "da"
    assert danish.feed.title == "Integrationsstatus"
    assert [e.title for e in danish.entries] == [
        "Meddelelse: Upgrade of EPM3, tonight; all flows",
        f"Kører igen: {LONG_NAME} \u2192 Labka (laboratorie)",
        f"Årsag fundet: {SCRIPT_TITLE}",
        "Løst: Labka API down",
    ]
    assert "Undersøges" in danish.entries[2].content[0].value
    # The same entries, whatever the language: a reader sees one entry, translated.
    assert [e.id for e in danish.entries] == [e.id for e in english.entries]
    assert danish.entries[2].link.endswith(f"/history?lang=da#notice-{scene.notices['one'].id}")
    assert bad.status_code == 400
    assert bad.json() == {"error": "unknown language 'de': use lang=da or lang=en"}
    assert bad_ics.status_code == 400


async def test_public_url_makes_the_links_and_ids(store_url: str) -> None:
    await _store_scene(store_url)
    config = _config(public_url="https://drift.example.org/probe")
    async with serving(store_url, config) as base:
        feed = feedparser.parse((await _get(base, "/feed.atom?lang=da")).content)
    assert not feed.bozo
    assert {link.rel: link.href for link in feed.feed.links} == {
        "self": "https://drift.example.org/probe/feed.atom?lang=da",
        "alternate": "https://drift.example.org/probe/?lang=da",
    }
    for entry in feed.entries:
        assert entry.id.startswith("tag:drift.example.org,")
        assert entry.link.startswith("https://drift.example.org/probe/")


async def test_a_reloaded_config_is_what_the_feeds_use(store_url: str) -> None:
    """A reload replaces the API's context (names, windows): the next request sees it."""
    await _store_scene(store_url)
    async with served(store_url, _config()) as (base, api):
        before = feedparser.parse((await _get(base, "/flows/gs-adt/feed.atom")).content)
        config = _config().model_copy(update={"display": {}, "maintenance": []})
        api.context = _context(api.context.engine, config)
        after = feedparser.parse((await _get(base, "/flows/gs-adt/feed.atom")).content)
        calendar = parse_ics((await _get(base, "/maintenance.ics")).content)
    assert before.feed.title == "Integration status: Patient data from GS"
    assert after.feed.title == "Integration status: gs-adt"
    assert "Recovered: gs-adt \u2192 labka" in {e.title for e in after.entries}
    assert [c["BEGIN"] for c in calendar] == ["VCALENDAR", "VEVENT"]  # the announcement only


async def test_a_control_character_cannot_break_the_feed(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await open_notice(
                conn, kind="incident", title="Bell\x07 and \x1bescape", flows=[],
                body="Form\x0cfeed", now=utcnow(),
            )  # fmt: skip
    finally:
        await engine.dispose()
    async with serving(store_url, _config()) as base:
        feed = feedparser.parse((await _get(base, "/feed.atom")).content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert [e.title for e in feed.entries] == ["Investigating: Bell and escape"]


async def test_an_unreachable_store_is_a_503(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'probe.db'}"
    async with serving(url, _config()) as base:
        for path in ("/feed.atom", "/flows/gs-adt/feed.atom", "/maintenance.ics"):
            answer = await _get(base, path)
            assert answer.status_code == 503, path
            assert answer.json()["error"].startswith("store unreachable"), path


# --- iCalendar ----------------------------------------------------------------------------


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars)
            out.append("\n" if following in "nN" else following)
        else:
            out.append(char)
    return "".join(out)


def parse_ics(raw: bytes) -> list[dict[str, str]]:
    """Every component as ``{"BEGIN": name, property: value}``, after checking the lines:
    CRLF only, at most 75 octets each, no UTF-8 sequence split by a fold."""
    assert raw.endswith(b"\r\n")
    physical = raw[:-2].split(b"\r\n")
    for line in physical:
        assert b"\n" not in line, line
        assert b"\r" not in line, line
        assert len(line) <= 75, line
        line.decode("utf-8")  # a fold inside a character would not decode on its own
    text = raw.decode("utf-8").replace("\r\n ", "")
    components: list[dict[str, str]] = []
    for line in text.split("\r\n")[:-1]:
        name, value = line.split(":", 1)
        name = name.split(";", 1)[0]
        if name == "BEGIN":
            components.append({"BEGIN": value})
        elif name != "END":
            components[-1][name] = value
    return components


def _tuesdays(start: datetime, end: datetime) -> set[datetime]:
    """Tuesday 06:00 Copenhagen time between ``start`` and ``end``, by the calendar."""
    found = set()
    day: date = start.astimezone(CPH).date() - timedelta(days=1)
    while day <= end.astimezone(CPH).date():
        if cal.weekday(day.year, day.month, day.day) == cal.TUESDAY:
            begin = datetime(day.year, day.month, day.day, 6, 0, tzinfo=CPH).astimezone(UTC)
            if begin + timedelta(hours=1) > start and begin <= end:
                found.add(begin)
        day += timedelta(days=1)
    return found


def _utc(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


async def test_maintenance_calendar(store_url: str) -> None:
    scene = await _store_scene(store_url)
    async with serving(store_url, _config()) as base:
        answer = await _get(base, "/maintenance.ics?lang=da")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar, *events = parse_ics(answer.content)
    assert calendar["BEGIN"] == "VCALENDAR"
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"] == "-//dataflow-probe//maintenance//EN"
    assert calendar["X-WR-CALNAME"] == "Planlagt vedligehold"
    assert {e["BEGIN"] for e in events} == {"VEVENT"}
    for event in events:
        assert event["DTSTAMP"].endswith("Z")
    assert len({e["UID"] for e in events}) == len(events)
    weekly = [e for e in events if e["SUMMARY"] == "Planlagt vedligehold: tuesday-patch"]
    expected = _tuesdays(scene.now - timedelta(days=30), scene.now + timedelta(days=90))
    assert {_utc(e["DTSTART"]) for e in weekly} == expected
    assert all(_utc(e["DTEND"]) - _utc(e["DTSTART"]) == timedelta(hours=1) for e in weekly)
    (odd,) = [e for e in events if "Move" in e["SUMMARY"]]
    assert _unescape(odd["SUMMARY"]) == f"Planlagt vedligehold: {ODD_WINDOW}"
    assert odd["SUMMARY"] == "Planlagt vedligehold: Move\\, phase 1\\; DC\\\\B"
    assert _unescape(odd["DESCRIPTION"]).startswith(f"Berører: {LONG_NAME}.\n")
    assert _utc(odd["DTEND"]) - _utc(odd["DTSTART"]) == timedelta(hours=4)
    # Announcements not ended; the incidents and the old notice are not on a calendar.
    three = scene.notices["three"]
    (announced,) = [e for e in events if e["UID"].startswith("notice-")]
    assert announced["UID"] == f"notice-{three.id}@127.0.0.1"
    assert _unescape(announced["SUMMARY"]) == three.title
    assert three.starts_at is not None
    assert three.ends_at is not None
    assert (_utc(announced["DTSTART"]), _utc(announced["DTEND"])) == (
        three.starts_at,
        three.ends_at,
    )
    assert _unescape(announced["DESCRIPTION"]).startswith("EPM3 gets version 9.")
    assert announced["URL"] == f"{base}/history?lang=da#notice-{three.id}"
    assert [_utc(e["DTSTART"]) for e in events] == sorted(_utc(e["DTSTART"]) for e in events)
    # The long Danish line was folded, and reads back whole.
    assert b"\r\n " in answer.content


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        pytest.param("a, b; c\\d", "a\\, b\\; c\\\\d", id="specials"),
        pytest.param("one\r\ntwo\nthree\rfour", "one\\ntwo\\nthree\\nfour", id="line-breaks"),
        pytest.param("tab\tbell\x07", "tab\tbell", id="controls"),
    ],
)
def test_text_escaping(text: str, escaped: str) -> None:
    assert escape_text(text) == escaped


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_folding_never_splits_a_character(width: int) -> None:
    char = {1: "a", 2: "æ", 3: "€", 4: "\U0001f600"}[width]
    line = "DESCRIPTION:" + char * 100
    folded = fold(line).encode("utf-8")
    parts = folded.split(b"\r\n")
    assert parts[-1] == b""
    assert all(len(part) <= 75 for part in parts)
    assert all(part.startswith(b" ") for part in parts[1:-1])
    for part in parts:
        part.decode("utf-8")
    assert folded.decode("utf-8").replace("\r\n ", "").removesuffix("\r\n") == line
