"""Written incidents and announcements: the store on SQLite and PostgreSQL, the Markdown."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.config.models import resolve_flows
from probe.config.windows import Calendar
from probe.markdown import plain, render, sanitise
from probe.store import create_engine, open_store
from probe.store.notices import (
    INCIDENT_STATES,
    Notice,
    active_notices,
    get_notice,
    notices_between,
    open_notice,
    recent_notices,
    resolve_notice,
    upcoming_notices,
    update_notice,
)
from probe.store.tables import notice_updates, outbox
from probe.web.api import Api, ApiContext
from probe.web.listener import Listener
from probe.web.openapi import schemas as openapi_schemas
from probe.web.server import make_app
from tests.helpers import write_config

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
async def conn(store_url: str) -> AsyncIterator[AsyncConnection]:
    """One connection in a transaction, committed at the end (so constraints are checked)."""
    engine = create_engine(store_url)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


async def _incident(
    conn: AsyncConnection, title: str = "Labka gets nothing", **kw: object
) -> Notice:
    args: dict[str, object] = {"flows": ["gs-*"], "body": "Looking.", "now": T0} | kw
    return await open_notice(conn, kind="incident", title=title, **args)  # type: ignore[arg-type]


# --- the store ----------------------------------------------------------------------------


async def test_an_incident_goes_through_its_states_with_a_timeline(conn: AsyncConnection) -> None:
    opened = await _incident(conn, flows=["gs-*", "labka-api"])
    assert (opened.kind, opened.state, opened.flows) == (
        "incident",
        "investigating",
        ("gs-*", "labka-api"),
    )
    assert opened.updates[0].body == "Looking."
    assert opened.resolved_at is None
    await update_notice(conn, opened.id, now=T0 + MIN, state="identified", body="Queue stuck.")
    await update_notice(conn, opened.id, now=T0 + 2 * MIN, title="Labka: engine queue stuck")
    await update_notice(conn, opened.id, now=T0 + 3 * MIN, state="monitoring")
    done = await resolve_notice(conn, opened.id, now=T0 + 4 * MIN, body="Restarted.")
    assert [(u.state, u.body) for u in done.updates] == [
        ("investigating", "Looking."),
        ("identified", "Queue stuck."),
        ("identified", ""),
        ("monitoring", ""),
        ("resolved", "Restarted."),
    ]
    assert [u.at for u in done.updates] == [T0 + i * MIN for i in range(5)]
    assert done.title == "Labka: engine queue stuck"
    assert done.state == "resolved"
    assert (done.created_at, done.updated_at, done.resolved_at) == (T0, T0 + 4 * MIN, T0 + 4 * MIN)
    assert done.body == "Restarted."
    assert await get_notice(conn, opened.id) == done
    assert not done.active(T0 + 5 * MIN)
    assert opened.active(T0)


async def test_a_resolved_incident_is_final(conn: AsyncConnection) -> None:
    notice = await _incident(conn)
    await resolve_notice(conn, notice.id, now=T0 + MIN)
    with pytest.raises(ValueError, match=f"incident {notice.id} is resolved and cannot be updated"):
        await update_notice(conn, notice.id, now=T0 + 2 * MIN, body="again")
    with pytest.raises(ValueError, match="cannot be updated"):
        await resolve_notice(conn, notice.id, now=T0 + 2 * MIN)
    rows = await conn.execute(select(func.count()).select_from(notice_updates))
    assert rows.scalar_one() == 2


async def test_unknown_ids_are_a_key_error(conn: AsyncConnection) -> None:
    assert await get_notice(conn, 4711) is None
    with pytest.raises(KeyError, match="no incident or announcement 4711"):
        await update_notice(conn, 4711, now=T0, body="x")
    with pytest.raises(KeyError, match="4711"):
        await resolve_notice(conn, 4711, now=T0)
    assert await get_notice(conn, 2**64) is None  # past BIGINT: no notice, not an overflow
    with pytest.raises(KeyError, match=str(2**64)):
        await update_notice(conn, 2**64, now=T0, body="x")


BAD_OPENS = {
    "empty-title": ({"title": "  "}, "the title is empty"),
    "long-title": ({"title": "x" * 201}, "the title is 201 characters long; at most 200"),
    "state": (
        {"state": "fixed"},
        "unknown incident state 'fixed': use investigating, identified, monitoring, resolved",
    ),
    "announcement-state": ({"state": "active"}, "unknown incident state 'active'"),
    "opened-resolved": ({"state": "resolved"}, "a new incident cannot be resolved"),
    "comma": ({"flows": ["gs-a,gs-b"]}, "a flow glob cannot contain a comma: 'gs-a,gs-b'"),
    "empty-glob": ({"flows": [""]}, "a flow glob is empty"),
    "long-body": (
        {"body": "x" * (64 * 1024 + 1)},
        "the body is 65537 characters long; at most 65536",
    ),
    "naive": ({"now": T0.replace(tzinfo=None)}, "now has no time zone"),
    "kind": ({"kind": "outage"}, "unknown kind 'outage': use incident or announcement"),
}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [pytest.param(*case, id=name) for name, case in BAD_OPENS.items()],
)
async def test_bad_input_is_a_clear_value_error(
    conn: AsyncConnection, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"kind": "incident", "title": "t", "flows": [], "body": "", "now": T0}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        await open_notice(conn, **(args | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"state": "done"}, "unknown incident state 'done'", id="state"),
        pytest.param({}, "nothing to update: give a state, a body or a title", id="nothing"),
        pytest.param({"state": "investigating"}, "nothing to update", id="same-state"),
        pytest.param({"title": ""}, "the title is empty", id="empty-title"),
    ],
)
async def test_bad_updates_are_a_clear_value_error(
    conn: AsyncConnection, kwargs: dict[str, object], message: str
) -> None:
    notice = await _incident(conn)
    with pytest.raises(ValueError, match=message):
        await update_notice(conn, notice.id, now=T0 + MIN, **kwargs)  # type: ignore[arg-type]


async def test_an_announcement_is_active_between_its_start_and_end(conn: AsyncConnection) -> None:
    start, end = T0 + 60 * MIN, T0 + 120 * MIN
    notice = await open_notice(
        conn, kind="announcement", title="EPM3 upgrade", flows=[], body="Tonight.",
        now=T0, starts_at=start, ends_at=end,
    )  # fmt: skip
    assert notice.state == "active"
    assert notice.affects("anything")
    assert [notice.active(t) for t in (T0, start, end - MIN, end)] == [False, True, True, False]
    assert [n.id for n in await upcoming_notices(conn, now=T0)] == [notice.id]
    assert await active_notices(conn, now=T0) == []
    assert [n.id for n in await active_notices(conn, now=start)] == [notice.id]
    assert await upcoming_notices(conn, now=start) == []
    ended = await resolve_notice(conn, notice.id, now=start + MIN, body="Done early.")
    assert ended.state == "ended"
    assert ended.resolved_at == start + MIN
    assert await active_notices(conn, now=start + 2 * MIN) == []
    with pytest.raises(ValueError, match="ends_at must be after starts_at"):
        await open_notice(conn, kind="announcement", title="t", flows=[], body="", now=T0,
                          starts_at=end, ends_at=start)  # fmt: skip
    with pytest.raises(ValueError, match="unknown announcement state 'monitoring'"):
        await open_notice(conn, kind="announcement", title="t", flows=[], body="", now=T0,
                          state="monitoring")  # fmt: skip


async def test_flows_are_globs(conn: AsyncConnection) -> None:
    notice = await _incident(conn, flows=["gs-*", "labka-api"])
    assert [notice.affects(f) for f in ("gs-adt", "labka-api", "labka-api2", "epm3")] == [
        True, True, False, False,
    ]  # fmt: skip
    assert (await _incident(conn, flows=[])).affects("epm3")


async def test_lists_are_newest_first(conn: AsyncConnection) -> None:
    first = await _incident(conn, "first", now=T0)
    second = await _incident(conn, "second", now=T0 + MIN)
    third = await _incident(conn, "third", now=T0 + 2 * MIN)
    await resolve_notice(conn, second.id, now=T0 + 3 * MIN)
    await update_notice(conn, first.id, now=T0 + 4 * MIN, body="still")
    active = await active_notices(conn, now=T0 + 5 * MIN)
    assert [n.title for n in active] == ["third", "first"]
    assert [n.title for n in await recent_notices(conn)] == ["first", "second", "third"]
    assert [n.title for n in await recent_notices(conn, limit=1)] == ["first"]
    assert third.updates[0].body == "Looking."


async def test_notices_between_finds_every_overlapping_life(conn: AsyncConnection) -> None:
    early = await _incident(conn, "early", now=T0)
    await resolve_notice(conn, early.id, now=T0 + 10 * MIN)
    await _incident(conn, "open", now=T0 + 20 * MIN)
    window = await open_notice(
        conn, kind="announcement", title="window", flows=["gs-*"], body="", now=T0,
        starts_at=T0 + 30 * MIN, ends_at=T0 + 40 * MIN,
    )  # fmt: skip

    async def titles(start: int, end: int, **kw: object) -> list[str]:
        found = await notices_between(conn, T0 + start * MIN, T0 + end * MIN, **kw)  # type: ignore[arg-type]
        return [n.title for n in found]

    assert await titles(0, 60) == ["window", "open", "early"]
    assert await titles(11, 19) == []
    assert await titles(5, 21) == ["open", "early"]
    assert await titles(41, 60) == ["open"]
    assert await titles(35, 36, kind="announcement") == ["window"]
    assert await titles(0, 60, kind="incident") == ["open", "early"]
    assert await titles(-10, 0) == []  # [start, end): the one created at T0 is not before it
    assert window.starts_at == T0 + 30 * MIN


# --- Markdown -----------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every element and its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


HOSTILE = (
    "Hello <script>alert(1)</script>\n\n"
    '<img src=x onerror="alert(2)">\n\n'
    "[x](javascript:alert(3)) [y](JaVaScRiPt:alert(4)) [z](data:text/html,<b>5</b>)\n\n"
    '<a href="javascript:alert(6)">a</a> <https://ok.example/> [rel](/admin)\n\n'
    "<div onclick=alert(7)>div</div> <style>body{}</style> <!-- comment -->"
)


def test_a_hostile_body_is_rendered_inert() -> None:
    html = render(HOSTILE)
    elements = _elements(html)
    assert {tag for tag, _ in elements} <= {"p", "a"}
    for tag, attrs in elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
    hrefs = [attrs.get("href") for tag, attrs in elements if tag == "a"]
    assert hrefs == ["https://ok.example/", None]  # the relative link loses its target
    assert "<script" not in html
    assert "<img" not in html
    assert "<div" not in html
    assert "<!--" not in html
    assert "<style" not in html
    # What was written is kept, as text: a reader sees what the author typed.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '&lt;img src=x onerror="alert(2)"&gt;' in html
    assert "[x](javascript:alert(3))" in html


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script><p>kept</p>",
        '<p onclick="alert(1)">kept</p><img src=x onerror=alert(1)>',
        '<a href="javascript:alert(1)">kept</a><a href=" JAVASCRIPT:alert(1)">x</a>',
        '<a href="data:text/html,x">kept</a><iframe src="https://evil.example"></iframe>',
        '<style>p{}</style><p style="color:red">kept</p><svg><script>alert(1)</script></svg>',
    ],
)
def test_the_sanitiser_alone_makes_raw_html_inert(html: str) -> None:
    """The second layer holds on its own, should the Markdown layer ever let HTML through."""
    clean = sanitise(html)
    elements = _elements(clean)
    assert {tag for tag, _ in elements} <= {"p", "a"}, clean
    assert all(set(attrs) <= {"href", "rel"} for _, attrs in elements), clean
    assert all(a.get("href") is None for tag, a in elements if tag == "a"), clean
    assert "kept" in clean, clean
    assert "alert" not in clean, clean
    assert "evil" not in clean, clean


def test_markdown_renders_the_allowed_tags_with_safe_links() -> None:
    html = render(
        "# Title\n\n**bold** *em* `code` line  \nbreak\n\n- one\n- two\n\n3. three\n\n"
        "> quote\n\n```\npre <b>\n```\n\n"
        "[docs](https://example.org/a?b=1) <mailto:drift@example.org>"
    )
    assert html.startswith("<h3>Title</h3>\n<p><strong>bold</strong> <em>em</em> <code>code</code>")
    assert "line<br />\nbreak" in html or "line<br>\nbreak" in html
    assert "<ul>\n<li>one</li>" in html
    assert '<ol start="3">' in html
    assert "<blockquote>\n<p>quote</p>\n</blockquote>" in html
    assert "<pre><code>pre &lt;b&gt;\n</code></pre>" in html
    assert '<a href="https://example.org/a?b=1" rel="noopener noreferrer nofollow">docs</a>' in html
    assert 'href="mailto:drift@example.org"' in html


def test_images_are_links_not_fetches() -> None:
    html = render("![chart](https://tracker.example/pixel.png)")
    assert "<img" not in html
    assert 'href="https://tracker.example/pixel.png"' in html


def test_plain_text_keeps_the_words_and_drops_the_markup() -> None:
    text = plain(
        "# Labka\n\nIt is **down**, see [the log](https://example.org/log).\n\n"
        "- one\n- two\n\n> quoted\n\n<b>typed</b>"
    )
    assert text == (
        "Labka\n\nIt is down, see the log (https://example.org/log).\n\n- one\n- two\n\n"
        "> quoted\n\n<b>typed</b>"
    )
    assert plain("") == ""


def test_incident_states_are_the_statuspage_ones() -> None:
    assert INCIDENT_STATES == ("investigating", "identified", "monitoring", "resolved")


# --- the API, on a real uvicorn server ------------------------------------------------------

TOKEN = "notice-token-for-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _probe_config(tmp_path: Path, *, token: str | None = TOKEN) -> dict[str, Any]:
    return {
        "timezone": "Europe/Copenhagen",
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
        "server": {"listen": "127.0.0.1:0", "api_token": token},
        "notify": {
            "channels": [{"name": "hook", "url": "json://127.0.0.1:9/x", "events": ["incident"]}]
        },
        "flows": [
            {"name": "gs-adt", "source": {"type": "http", "url": "http://127.0.0.1:9/"}},
            {"name": "labka-api", "source": {"type": "http", "url": "http://127.0.0.1:9/"}},
        ],
    }


@asynccontextmanager
async def _served(tmp_path: Path, *, token: str | None = TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    """The daemon's app (`make_app`) over a migrated SQLite store, on a real uvicorn server."""
    tmp_path.mkdir(exist_ok=True)
    loaded = write_config(tmp_path, _probe_config(tmp_path, token=token))
    store = await open_store(loaded.config.store.url)
    calendar = Calendar([], ZoneInfo(loaded.config.timezone))

    async def run_now(_: object) -> None:
        return None

    context = ApiContext(
        store.engine, loaded.config, resolve_flows(loaded.config), calendar, run_now
    )
    app = make_app(exposition=lambda: iter([b""]), readiness=_ready, api=Api(context))
    listener = Listener("test", app, host="127.0.0.1", port=0)
    await listener.start()
    try:
        async with httpx.AsyncClient(base_url=listener.url, timeout=10) as client:
            yield client
    finally:
        await listener.stop()
        await store.close()


async def _ready() -> dict[str, bool]:
    return {}


async def _outbox(tmp_path: Path) -> list[str]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(outbox.c.dedupe).order_by(outbox.c.id))
            return [row.dedupe for row in rows]
    finally:
        await engine.dispose()


async def test_api_opens_updates_and_resolves_an_incident(tmp_path: Path) -> None:
    async with _served(tmp_path) as client:
        new = {"title": "Labka gets nothing", "flows": ["gs-*"], "body": "Hi <script>x</script>"}
        created = await client.post("/api/v1/incidents", json=new, headers=AUTH)
        assert created.status_code == 201, created.text
        notice = created.json()
        assert created.headers["location"] == f"/api/v1/incidents/{notice['id']}"
        assert (notice["kind"], notice["state"], notice["active"]) == (
            "incident",
            "investigating",
            True,
        )
        assert notice["created_at"].endswith("+02:00") or notice["created_at"].endswith("+01:00")
        (first,) = notice["updates"]
        assert first["body"] == "Hi <script>x</script>"
        assert first["body_html"] == "<p>Hi &lt;script&gt;x&lt;/script&gt;</p>\n"
        path = f"/api/v1/incidents/{notice['id']}"

        listed = (await client.get("/api/v1/incidents")).json()
        assert [n["id"] for n in listed["notices"]] == [notice["id"]]
        assert listed["timezone"] == "Europe/Copenhagen"
        patched = await client.patch(
            path, json={"state": "identified", "body": "Queue."}, headers=AUTH
        )
        assert patched.status_code == 200, patched.text
        assert [u["state"] for u in patched.json()["updates"]] == ["investigating", "identified"]
        same = await client.patch(path, json={}, headers=AUTH)  # no change: the notice as it is
        assert same.status_code == 200
        assert same.json() == patched.json() | {"active": True}
        done = await client.patch(path, json={"state": "resolved", "body": "Fixed."}, headers=AUTH)
        assert done.status_code == 200, done.text
        assert (done.json()["state"], done.json()["active"]) == ("resolved", False)
        assert done.json()["resolved_at"] is not None
        again = await client.patch(path, json={"body": "more"}, headers=AUTH)
        assert again.status_code == 409
        assert again.json() == {
            "error": f"incident {notice['id']} is resolved and cannot be updated"
        }

        assert (await client.get("/api/v1/incidents")).json()["notices"] == []
        every = (await client.get("/api/v1/incidents", params={"all": "1"})).json()
        assert [n["state"] for n in every["notices"]] == ["resolved"]
        assert (await client.get(path)).json() == done.json() | {"active": False}
        outbox_keys = await _outbox(tmp_path)
    n = notice["id"]
    assert outbox_keys == [
        f"notice:{n}:1:opened",
        f"notice:{n}:2:updated",
        f"notice:{n}:3:resolved",
    ]


async def test_api_posts_and_ends_an_announcement(tmp_path: Path) -> None:
    async with _served(tmp_path) as client:
        new = {
            "kind": "announcement", "title": "EPM3 upgrade", "body": "**Tonight**",
            "starts_at": "2030-10-06T18:00:00+02:00", "ends_at": "2030-10-06T20:00:00Z",
        }  # fmt: skip
        created = await client.post("/api/v1/incidents", json=new, headers=AUTH)
        assert created.status_code == 201, created.text
        notice = created.json()
        assert (notice["kind"], notice["state"], notice["active"]) == (
            "announcement",
            "active",
            False,
        )
        assert (notice["starts_at"], notice["ends_at"]) == (
            "2030-10-06T18:00:00+02:00",
            "2030-10-06T22:00:00+02:00",
        )
        assert notice["updates"][0]["body_html"] == "<p><strong>Tonight</strong></p>\n"
        assert notice["flows"] == []
        path = f"/api/v1/incidents/{notice['id']}"
        wrong = await client.patch(path, json={"state": "monitoring"}, headers=AUTH)
        assert wrong.status_code == 409
        assert wrong.json()["error"].startswith("unknown announcement state 'monitoring'")
        ended = await client.patch(path, json={"state": "resolved"}, headers=AUTH)
        assert ended.json()["state"] == "ended"
        backwards = new | {"ends_at": "2030-10-06T17:00:00+02:00"}
        refused = await client.post("/api/v1/incidents", json=backwards, headers=AUTH)
        assert (refused.status_code, refused.json()) == (
            409,
            {"error": "ends_at must be after starts_at"},
        )


async def test_api_writes_need_the_token(tmp_path: Path) -> None:
    new = {"title": "t"}
    async with _served(tmp_path) as client:
        missing = await client.post("/api/v1/incidents", json=new)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.post(
            "/api/v1/incidents", json=new, headers={"Authorization": "Bearer nope"}
        )
        assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid token"})
        assert (
            await client.patch(
                "/api/v1/incidents/1", json={}, headers={"Authorization": "Bearer x"}
            )
        ).status_code == 401
        assert (await client.post("/api/v1/incidents", json=new, headers=AUTH)).status_code == 201
    async with _served(tmp_path / "off", token=None) as client:
        disabled = await client.post("/api/v1/incidents", json=new, headers=AUTH)
        assert disabled.status_code == 403
        assert "set server.api_token" in disabled.json()["error"]
        assert (await client.patch("/api/v1/incidents/1", json={}, headers=AUTH)).status_code == 403
        assert (await client.get("/api/v1/incidents")).status_code == 200  # reading is public


BAD_REQUESTS = {
    "not-json": (b"{title", 400, "the body is not JSON"),
    "empty-title": (b'{"title": "  "}', 422, "title: the title is empty"),
    "no-title": (b'{"flows": []}', 422, "title: Field required"),
    "unknown-key": (b'{"title": "t", "stat": "x"}', 422, "stat: Extra inputs are not permitted"),
    "comma": (
        b'{"title": "t", "flows": ["a,b"]}',
        422,
        "flows.0: a flow glob is empty or contains a comma",
    ),
    "kind": (b'{"title": "t", "kind": "outage"}', 422, "body: Input tag 'outage'"),
    "state": (b'{"title": "t", "state": "resolved"}', 422, "state: Input should be"),
    "naive-time": (
        b'{"title": "t", "kind": "announcement", "starts_at": "2030-10-06T18:00:00"}',
        422,
        "starts_at: not an ISO 8601 time with a UTC offset, from 1970 to 2999",
    ),
    "unix-time": (
        b'{"title": "t", "kind": "announcement", "ends_at": "1700000000"}',
        422,
        "ends_at: not an ISO",
    ),
    "long-title": (
        b'{"title": "' + b"x" * 201 + b'"}',
        422,
        "title: String should have at most 200 characters",
    ),
    "array": (b"[]", 422, "body: Unable to extract tag"),
}


@pytest.mark.parametrize(
    ("raw", "status", "message"), [pytest.param(*v, id=k) for k, v in BAD_REQUESTS.items()]
)
async def test_api_bad_requests_say_what_is_wrong(
    tmp_path: Path, raw: bytes, status: int, message: str
) -> None:
    async with _served(tmp_path) as client:
        answer = await client.post("/api/v1/incidents", content=raw, headers=AUTH)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"].startswith(message), answer.json()


async def test_api_limits_and_missing_notices(tmp_path: Path) -> None:
    async with _served(tmp_path) as client:
        huge = b'{"title": "t", "body": "' + b"x" * (1024 * 1024) + b'"}'
        too_big = await client.post("/api/v1/incidents", content=huge, headers=AUTH)
        assert (too_big.status_code, too_big.json()) == (
            413,
            {"error": "the request is over 1048576 bytes"},
        )
        body = {"title": "t", "body": "x" * (64 * 1024 + 1)}
        long_body = await client.post("/api/v1/incidents", json=body, headers=AUTH)
        assert long_body.status_code == 422
        assert long_body.json()["error"] == "body: String should have at most 65536 characters"
        for path in ("/api/v1/incidents/4711", f"/api/v1/incidents/{2**64}", "/api/v1/incidents/0"):
            missing = await client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"].startswith("no incident or announcement"), path
        patched = await client.patch("/api/v1/incidents/4711", json={"body": "x"}, headers=AUTH)
        assert (patched.status_code, patched.json()) == (
            404,
            {"error": "no incident or announcement 4711"},
        )
        assert (await client.get("/api/v1/incidents/abc")).status_code == 404
        assert (await client.get("/api/v1/incidents", params={"all": "yes"})).status_code == 422
        assert (await client.delete("/api/v1/incidents/1", headers=AUTH)).status_code == 405


async def test_the_openapi_document_describes_the_incidents(tmp_path: Path) -> None:
    async with _served(tmp_path) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/api/v1/incidents"]) == {"get", "post"}
    assert set(paths["/api/v1/incidents/{id}"]) == {"get", "patch"}
    schemas = document["components"]["schemas"]
    assert schemas == openapi_schemas()
    assert "body_html" in schemas["NoticeUpdate"]["properties"]
    assert schemas["NewIncident"]["additionalProperties"] is False
    post = paths["/api/v1/incidents"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert {"201", "401", "403", "409", "422"} <= set(post["responses"])


# --- the CLI, as an operator runs it ------------------------------------------------------


async def _probe(*args: str, cwd: Path, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "--log-format", "console", *args, cwd=cwd,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    data = None if stdin is None else stdin.encode()
    out, err = await asyncio.wait_for(proc.communicate(data), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _stored(tmp_path: Path, notice_id: int) -> Notice:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    try:
        async with engine.connect() as conn:
            found = await get_notice(conn, notice_id)
    finally:
        await engine.dispose()
    assert found is not None
    return found


@pytest.mark.slow
async def test_cli_opens_updates_lists_and_resolves_an_incident(tmp_path: Path) -> None:
    write_config(tmp_path, _probe_config(tmp_path))
    c = ("-c", "probe.yaml")
    code, out, err = await _probe(
        "incident", "open", *c, "--title", "Labka gets nothing", "--flows", "gs-*,labka-api",
        "--body", "-", cwd=tmp_path, stdin="We are *looking*.\n",
    )  # fmt: skip
    assert (code, err) == (0, "")
    notice_id = int(out)
    (tmp_path / "cause.md").write_text("The engine's queue is stuck.\n", encoding="utf-8")
    code, out, err = await _probe(
        "incident", "update", str(notice_id), *c, "--state", "identified", "--body", "cause.md",
        cwd=tmp_path,
    )  # fmt: skip
    assert (code, out, err) == (0, f"incident {notice_id}: identified\n", "")
    code, out, _ = await _probe("incident", "list", *c, cwd=tmp_path)
    assert out == f"{notice_id}\tidentified\tLabka gets nothing\tgs-*,labka-api\n"
    code, out, err = await _probe("incident", "resolve", str(notice_id), *c, cwd=tmp_path)
    assert (code, out) == (0, f"incident {notice_id}: resolved\n"), err
    notice = await _stored(tmp_path, notice_id)
    assert [(u.state, u.body) for u in notice.updates] == [
        ("investigating", "We are *looking*."),
        ("identified", "The engine's queue is stuck."),
        ("resolved", ""),
    ]
    assert notice.flows == ("gs-*", "labka-api")
    # Each change queued one message for the channel that wants incidents, in its transaction.
    keys = await _outbox(tmp_path)
    assert keys == [f"notice:{notice_id}:{n}:{change}" for n, change in
                    ((1, "opened"), (2, "updated"), (3, "resolved"))]  # fmt: skip
    code, out, _ = await _probe("incident", "list", *c, cwd=tmp_path)
    assert (code, out) == (0, "")


@pytest.mark.slow
async def test_cli_posts_and_ends_an_announcement_in_the_config_time_zone(tmp_path: Path) -> None:
    write_config(tmp_path, _probe_config(tmp_path))
    c = ("-c", "probe.yaml")
    code, out, err = await _probe(
        "announce", *c, "--title", "EPM3 upgrade", "--from", "2030-07-06 18:00",
        "--until", "2030-07-06T20:00:00+00:00", "--flows", "gs-*", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    notice = await _stored(tmp_path, int(out))
    assert notice.kind == "announcement"
    assert notice.starts_at == datetime(2030, 7, 6, 16, 0, tzinfo=UTC)  # CEST is UTC+2
    assert notice.ends_at == datetime(2030, 7, 6, 20, 0, tzinfo=UTC)
    code, listed, _ = await _probe("incident", "list", *c, cwd=tmp_path)
    assert listed == f"{notice.id}\tupcoming\tEPM3 upgrade\tgs-*\n"
    code, out, err = await _probe("announce", *c, "--end", str(notice.id), cwd=tmp_path)
    assert (code, out) == (0, f"announcement {notice.id}: ended\n"), err
    assert (await _stored(tmp_path, notice.id)).resolved_at is not None


CLI_ERRORS = {
    "no-such-id": (
        ("incident", "update", "4711", "--body", "-"),
        1,
        "error: no incident or announcement 4711",
    ),
    "resolved": (
        ("incident", "resolve", "1"),
        1,
        "error: incident 1 is resolved and cannot be updated",
    ),
    "bad-state": (("incident", "update", "1", "--state", "fixed"), 2, "invalid choice: 'fixed'"),
    "empty-title": (
        ("incident", "open", "--title", " ", "--flows", "*"),
        2,
        "error: the title is empty",
    ),
    "comma": (
        ("incident", "open", "--title", "t", "--flows", "a,,b"),
        2,
        "error: a flow glob is empty",
    ),
    "no-body-file": (
        ("incident", "resolve", "1", "--body", "nope.md"),
        2,
        "error: cannot read --body nope.md",
    ),
    "bad-time": (("announce", "--title", "t", "--from", "tomorrow"), 2, "error: --from 'tomorrow'"),
    "backwards": (
        ("announce", "--title", "t", "--from", "2030-01-02", "--until", "2030-01-01"),
        2,
        "error: --until must be after --from",
    ),
    "end-and-until": (
        ("announce", "--end", "1", "--until", "2030-01-01"),
        2,
        "error: --end takes no --flows, --from or --until",
    ),
    "title-and-end": (("announce", "--title", "t", "--end", "1"), 2, "not allowed with argument"),
    "not-a-number": (("incident", "resolve", "one"), 2, "invalid int value: 'one'"),
}


@pytest.mark.slow
async def test_cli_refusals_say_why_with_their_exit_code(tmp_path: Path) -> None:
    write_config(tmp_path, _probe_config(tmp_path))
    code, out, _ = await _probe("incident", "open", "-c", "probe.yaml", "--title", "t",
                                "--flows", "*", cwd=tmp_path)  # fmt: skip
    assert (code, out) == (0, "1\n")
    code, _, _ = await _probe("incident", "resolve", "1", "-c", "probe.yaml", cwd=tmp_path)
    assert code == 0
    for name, (args, status, message) in CLI_ERRORS.items():
        at = 1 if args[0] == "announce" else 2  # -c after the (sub)command
        argv = [*args[:at], "-c", "probe.yaml", *args[at:]]
        code, out, err = await _probe(*argv, cwd=tmp_path, stdin="x")
        assert code == status, (name, err)
        assert message in err, (name, err)
        assert out == "", name
    code, _, err = await _probe("incident", "list", cwd=tmp_path)
    assert (code, err.strip()) == (2, "no config file: give -c FILE or set PROBE_CONFIG")
