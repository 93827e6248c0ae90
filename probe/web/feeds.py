"""Feeds for people who do not keep the status page open: Atom and a maintenance calendar.

- ``GET /feed.atom``: the written incidents and announcements (`probe.store.notices`) of the
  last `FEED_DAYS`, and the automatic state changes: each stored incident of at least
  ``notify.defaults.failure_threshold`` bad slots is a flow and destination that went down,
  and its end the recovery. The newest first, at most `FEED_LIMIT` entries.
- ``GET /flows/{flow}/feed.atom``: the same for one flow (the notices whose globs match it);
  404 for a flow that is not configured.
- ``GET /maintenance.ics``: the configured maintenance windows from `CALENDAR_BEFORE` ago to
  `CALENDAR_AHEAD` ahead, each occurrence an event (`probe.web.calendar_feed`).

``?lang=da|en`` chooses the language (English by default; anything else is a 400). Links
and ids are built on ``server.public_url`` when it is set, else on the address the request
came to: set it when the daemon sits behind a proxy, so that links work and ids stay the same
whoever asks. An entry's id is a ``tag:`` URI (RFC 4151) made from that host, the day the
notice was created and its id, so a reader sees an update as the same entry, changed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Final
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from probe import markdown
from probe.config.people import display_name
from probe.model import utcnow
from probe.report.render import formats
from probe.report.render.i18n import Lang, cause, label, notice_kind, notice_state
from probe.store.notices import Notice, notices_between
from probe.store.tables import incidents
from probe.web import atom, calendar_feed, ical
from probe.web.api import Api, ApiContext, ApiError
from probe.web.atom import Entry, Head

FEED_DAYS: Final = timedelta(days=90)
FEED_LIMIT: Final = 50
HISTORY_PATH: Final = "history"  # the status page's history of notices, under the base URL
# An announcement may be written well ahead of the work it announces.
_AHEAD: Final = timedelta(days=3660)
_DNS_NAME: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")

# key: (English, Danish); the notice words are the report's (probe.report.render.i18n).
_WORDS: Final[dict[str, tuple[str, str]]] = {
    "feed": ("Integration status", "Integrationsstatus"),
    "feed_flow": ("Integration status: {name}", "Integrationsstatus: {name}"),
    "subtitle": (
        "Incidents, announcements and state changes of the monitored integrations.",
        "Hændelser, meddelelser og tilstandsskift for de overvågede integrationer.",
    ),
    "times": ("Times in {tz}.", "Tider i {tz}."),
    "down": ("Down", "Nede"),
    "recovered": ("Recovered", "Kører igen"),
    "stopped": ("No longer measured", "Måles ikke længere"),
    "down_since": ("Down since {time}. Cause: {cause}.", "Nede siden {time}. Årsag: {cause}."),
    "recovered_at": ("Working again from {time}.", "Kører igen fra {time}."),
    "stopped_at": (
        "Measurement stopped at {time}; the state after that is not known.",
        "Målingen stoppede {time}; tilstanden derefter kendes ikke.",
    ),
    "state_change": ("Automatic state change", "Automatisk tilstandsskift"),
    "planned": ("From {start} to {end}.", "Fra {start} til {end}."),
}


def words(key: str, lang: Lang, **values: object) -> str:
    """A feed phrase in ``lang``."""
    english, danish = _WORDS[key]
    return (danish if lang == "da" else english).format(**values)


def parse_lang(value: str | None) -> Lang:
    """``?lang=``: ``da`` or ``en`` (the default), else an `ApiError` 400."""
    if value is None or value == "en":
        return "en"
    if value == "da":
        return "da"
    raise ApiError(400, f"unknown language {value!r}: use lang=da or lang=en")


def base_url(public_url: str | None, request: Request) -> str:
    """Where the status page is, ending in ``/``: ``public_url`` or the request's base."""
    base = public_url or str(request.base_url)
    return base if base.endswith("/") else base + "/"


def authority(base: str) -> str:
    """The host of ``base`` as a tag URI authority; ``localhost`` for one that is no DNS
    name (an IPv6 literal)."""
    host = urlsplit(base).hostname or ""
    return host.lower() if _DNS_NAME.match(host) else "localhost"


def tag(base: str, day: datetime, specific: str) -> str:
    """``tag:drift.example.org,2026-10-03:dataflow-probe/notice/17``."""
    return f"tag:{authority(base)},{day.date().isoformat()}:dataflow-probe/{specific}"


@dataclass(frozen=True, slots=True)
class Page:
    """What one request asks for: its language, base URL and time zone."""

    lang: Lang
    base: str
    tz: ZoneInfo

    def when(self, moment: datetime) -> str:
        """``3 Oct 2026 14:00 CEST`` in the configured time zone."""
        local = moment.astimezone(self.tz)
        return f"{formats.when(local.isoformat(), self.lang, exact=False)} {local.tzname()}"

    def status_url(self) -> str:
        return self.base + ("?lang=da" if self.lang == "da" else "")

    def notice_url(self, notice_id: int) -> str:
        return f"{self.base}{HISTORY_PATH}?lang={self.lang}#notice-{notice_id}"


@dataclass(frozen=True, slots=True)
class Feeds:
    """The feed endpoints over the API's context; `routes` mounts them."""

    api: Api

    @property
    def context(self) -> ApiContext:
        """Read at each request: a config reload replaces the API's context."""
        return self.api.context

    def routes(self) -> list[Route]:
        guard = Api._guard  # the API's one mapping of errors to answers
        return [
            Route("/feed.atom", guard(self.feed)),
            Route("/flows/{flow}/feed.atom", guard(self.flow_feed)),
            Route("/maintenance.ics", guard(self.maintenance)),
        ]

    def page(self, request: Request) -> Page:
        lang = parse_lang(request.query_params.get("lang"))
        base = base_url(self.context.config.server.public_url, request)
        return Page(lang, base, ZoneInfo(self.context.config.timezone))

    async def feed(self, request: Request) -> Response:
        return await self._atom(request, None)

    async def flow_feed(self, request: Request) -> Response:
        name = request.path_params["flow"]
        if name not in {flow.name for flow in self.context.flows}:
            raise ApiError(404, f"no flow named {name!r}")
        return await self._atom(request, name)

    async def _atom(self, request: Request, flow: str | None) -> Response:
        page = self.page(request)
        now = utcnow()
        entries = await self.entries(page, flow=flow, now=now)
        config = self.context.config
        path = "feed.atom" if flow is None else f"flows/{quote(flow)}/feed.atom"
        title = words("feed", page.lang)
        if flow is not None:
            title = words(
                "feed_flow", page.lang, name=display_name(config.display, flow, page.lang)
            )
        head = Head(
            id=f"{page.base}{path}?lang={page.lang}",
            title=title,
            subtitle=words("subtitle", page.lang),
            self_url=page.base + path + (f"?{request.url.query}" if request.url.query else ""),
            alternate_url=page.status_url(),
            updated=max((e.updated for e in entries), default=now),
            lang=page.lang,
        )
        body = atom.atom_document(head, entries)
        return Response(body, media_type=atom.MEDIA_TYPE, headers={"Cache-Control": "max-age=60"})

    async def maintenance(self, request: Request) -> Response:
        """``/maintenance.ics``: the maintenance windows and the announcements not ended."""
        page = self.page(request)
        now = utcnow()
        ctx = self.context
        async with ctx.engine.connect() as conn:
            ahead = await notices_between(conn, now, now + _AHEAD, kind="announcement")
        host = authority(page.base)
        events = calendar_feed.maintenance_events(
            ctx.config, ctx.flows, now=now, lang=page.lang, host=host
        )
        events += calendar_feed.announcement_events(
            [n for n in ahead if n.resolved_at is None],
            lang=page.lang,
            host=host,
            link=page.notice_url,
        )
        events.sort(key=lambda e: (e.start, e.uid))
        body = ical.calendar(
            events,
            name=calendar_feed.calendar_name(page.lang),
            description=page.status_url(),
            stamp=now,
        )
        return Response(body, media_type=ical.MEDIA_TYPE, headers={"Cache-Control": "max-age=60"})

    async def entries(self, page: Page, *, flow: str | None, now: datetime) -> list[Entry]:
        """The feed's entries, newest update first."""
        since = now - FEED_DAYS
        threshold = self.context.config.notify.defaults.failure_threshold
        known = {f.name for f in self.context.flows}
        async with self.context.engine.connect() as conn:
            notices = await notices_between(conn, since, now + _AHEAD)
            changes = await _state_changes(conn, since=since, threshold=threshold, flow=flow)
        found = [
            notice_entry(n, page, self._flow_names(n, page.lang))
            for n in notices
            if flow is None or n.affects(flow)
        ]
        found += [change_entry(c, page, self._name(c, page.lang)) for c in changes if c[0] in known]
        found.sort(key=lambda e: (e.updated, e.id), reverse=True)
        return found[:FEED_LIMIT]

    def _flow_names(self, notice: Notice, lang: Lang) -> list[str]:
        display = self.context.config.display
        return [
            display_name(display, f.name, lang)
            for f in self.context.flows
            if notice.affects(f.name)
        ]

    def _name(self, change: Change, lang: Lang) -> str:
        flow, destination = change[0], change[1]
        display = self.context.config.display
        name = display_name(display, flow, lang)
        if destination:
            key = f"{flow}/{destination}"
            shown = display_name(display, key, lang)
            name += " \u2192 " + (destination if shown == key else shown)
        return name


def notice_entry(notice: Notice, page: Page, flows: Sequence[str]) -> Entry:
    """A written incident or announcement as an entry: its timeline, newest first."""
    lang = page.lang
    affected = ", ".join(flows) if notice.flows else label("all_flows", lang)
    parts = [
        f"<p><strong>{escape(notice_kind(notice.kind, lang))}</strong> \u00b7 "
        f"{escape(label('affects', lang))}: {escape(affected or ', '.join(notice.flows))}</p>"
    ]
    if notice.kind == "announcement" and (notice.starts_at or notice.ends_at):
        start = page.when(notice.starts_at or notice.created_at)
        end = "" if notice.ends_at is None else page.when(notice.ends_at)
        parts.append(f"<p>{escape(words('planned', lang, start=start, end=end or '…'))}</p>")
    for update in reversed(notice.updates):
        parts.append(
            f"<p><strong>{escape(notice_state(update.state, lang))}</strong> \u2014 "
            f"{escape(page.when(update.at))}</p>"
        )
        if update.body:
            parts.append(markdown.render(update.body))
    return Entry(
        id=tag(page.base, notice.created_at, f"notice/{notice.id}"),
        title=f"{_headline(notice, lang)}: {notice.title}",
        updated=notice.updated_at,
        published=notice.created_at,
        link=page.notice_url(notice.id),
        content_html="".join(parts),
        summary=markdown.plain(notice.body),
        categories=((notice.kind, notice_kind(notice.kind, lang)),),
    )


def _headline(notice: Notice, lang: Lang) -> str:
    """An incident's state; for an announcement its kind, or "Ended" (not "Active": it may
    be for later)."""
    if notice.kind == "announcement" and notice.resolved_at is None:
        return notice_kind(notice.kind, lang)
    return notice_state(notice.state, lang)


# flow, destination, start_at, end_at, cause, ended_by
Change = tuple[str, str, datetime, datetime | None, str, str | None]


def change_entry(change: Change, page: Page, name: str) -> Entry:
    """An automatic incident as a state change: down since its start, and how it ended."""
    flow, destination, start, end, why, ended_by = change
    lang = page.lang
    state = "down" if end is None else "recovered" if ended_by == "recovered" else "stopped"
    lines = [words("down_since", lang, time=page.when(start), cause=cause(why, lang).lower())]
    if end is not None:
        key = "recovered_at" if state == "recovered" else "stopped_at"
        lines.append(words(key, lang, time=page.when(end)))
    lines.append(words("times", lang, tz=page.tz.key))
    specific = f"state/{quote(flow)}/{quote(destination)}/{int(start.timestamp())}"
    return Entry(
        id=tag(page.base, start, specific),
        title=f"{words(state, lang)}: {name}",
        updated=end or start,
        published=start,
        link=page.status_url(),
        content_html="".join(f"<p>{escape(line)}</p>" for line in lines),
        summary=" ".join(lines),
        categories=(("state", words("state_change", lang)),),
    )


async def _state_changes(
    conn: AsyncConnection, *, since: datetime, threshold: int, flow: str | None
) -> list[Change]:
    """Stored incidents of at least ``threshold`` bad slots that were open after ``since``:
    the flow and destination was down (the notifications' rule), newest first."""
    changed = func.coalesce(incidents.c.end_at, incidents.c.start_at)
    query = (
        select(incidents)
        .where(incidents.c.bad_results >= threshold)
        .where(or_(incidents.c.end_at.is_(None), incidents.c.end_at >= since))
        .order_by(changed.desc())
        .limit(FEED_LIMIT)
    )
    if flow is not None:
        query = query.where(incidents.c.flow == flow)
    rows = (await conn.execute(query)).all()
    return [(r.flow, r.destination, r.start_at, r.end_at, r.cause, r.ended_by) for r in rows]
