"""The history page at ``/history``: what happened in the last `HISTORY_DAYS` days.

    GET /history?lang=da

Two parts, newest first:

- the written incidents and announcements whose life overlaps the period
  (`probe.store.notices.notices_between`), each with its whole timeline;
- the incidents the probe found itself (`probe.store.queries.incidents_between`: runs of
  bad results), per flow and destination by display name, at most `MAX_ROWS` each.

It needs no script and does not reload itself: history changes slowly. Like the status
page it is self-contained, with the same strict Content-Security-Policy (no script at all).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from probe.config.models import Config
from probe.errors import StoreError
from probe.model import utcnow
from probe.report.render import formats
from probe.report.render.i18n import Lang, cause, label
from probe.store import queries
from probe.store.notices import Notice, notices_between
from probe.store.queries import StoredIncident
from probe.web.board import BoardSource
from probe.web.notices_view import notice_article
from probe.web.page_parts import (
    destination_name_of,
    document,
    e,
    language_links,
    name_of,
    named,
    page_response,
    when,
)
from probe.web.page_text import choose_lang, t

HISTORY_DAYS: Final = 90
MAX_ROWS: Final = 50  # detected incidents shown per flow and destination
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class History:
    """The period's notices (newest first) and detected incidents per pair (oldest first)."""

    now: datetime
    notices: list[Notice]
    incidents: dict[Pair, list[StoredIncident]]


async def load_history(source: BoardSource, *, now: datetime | None = None) -> History:
    """Everything the page shows, in two queries (`StoreError` if the store fails)."""
    now = now or utcnow()
    start = now - timedelta(days=HISTORY_DAYS)
    try:
        async with source.api.context.engine.connect() as conn:
            notices = await notices_between(conn, start, now)
            incidents = await queries.incidents_between(conn, start, now)
    except SQLAlchemyError as exc:
        raise StoreError(f"store unreachable: {type(exc).__name__}") from exc
    return History(now, notices, incidents)


def endpoint(source: BoardSource) -> Callable[[Request], Awaitable[Response]]:
    """The ``/history`` handler."""

    async def page(request: Request) -> Response:
        lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
        try:
            found = await load_history(source)
        except StoreError:
            body = [f"<p>{e(t('unavailable', lang))}</p>"]
            text = document(body, lang, title=t("history_title", lang), refresh=False)
            return page_response(text, status=503, script=False)
        return page_response(render_history(found, source.config, lang=lang), script=False)

    return page


def render_history(found: History, config: Config, *, lang: Lang) -> str:
    """The whole history page."""
    tz = ZoneInfo(config.timezone)
    flows = [flow.name for flow in config.flows]
    notices = [
        notice_article(n, config=config, tz=tz, lang=lang, flows=flows) for n in found.notices
    ] or [f"<p>{e(t('history_none', lang))}</p>"]
    tables = [
        _table(pair, rows, config, found.now, tz=tz, lang=lang)
        for pair, rows in _ordered(found.incidents, config)
    ] or [f"<p>{e(t('history_none', lang))}</p>"]
    body = [
        '<header class="top">',
        f"<div><h1>{e(t('history_title', lang))}</h1>",
        f'<p class="meta">{e(t("times_in", lang, tz=config.timezone))}</p>',
        f'<nav class="links" aria-label="{e(t("links", lang))}">'
        f'<a href="/?lang={lang}">{e(t("back", lang))}</a></nav></div>',
        language_links(lang, "/history"),
        "</header>",
        '<section class="notices" aria-labelledby="h-notices">',
        f'<h2 id="h-notices">{e(t("history_notices", lang))}</h2>{"".join(notices)}</section>',
        '<section aria-labelledby="h-auto">',
        f'<h2 id="h-auto">{e(t("history_auto", lang))}</h2>',
        f'<p class="desc">{e(t("history_auto_intro", lang))}</p>{"".join(tables)}</section>',
    ]
    return document(body, lang, title=t("history_title", lang), refresh=False)


def _ordered(
    incidents: dict[Pair, list[StoredIncident]], config: Config
) -> list[tuple[Pair, list[StoredIncident]]]:
    """The configured pairs in config order, then any others the store still has."""
    known = [(f.name, d.name) for f in config.flows for d in f.destinations]
    known += [(f.name, "") for f in config.flows if not f.destinations]
    rest = sorted(set(incidents) - set(known))
    return [(pair, incidents[pair]) for pair in [*known, *rest] if incidents.get(pair)]


def _table(
    pair: Pair,
    rows: Sequence[StoredIncident],
    config: Config,
    now: datetime,
    *,
    tz: ZoneInfo,
    lang: Lang,
) -> str:
    flow, dest = pair
    caption = named(name_of(config, flow, lang), flow)
    if dest:
        caption += f" \u203a {named(destination_name_of(config, flow, dest, lang), dest)}"
    heads = "".join(
        f'<th scope="col">{e(label(key, lang))}</th>'
        for key in ("start", "end", "duration", "cause")
    )
    newest = list(reversed(rows))
    lines = "".join(_row(incident, now, tz=tz, lang=lang) for incident in newest[:MAX_ROWS])
    more = len(newest) - MAX_ROWS
    note = f'<p class="desc">{e(t("more_incidents", lang, count=more))}</p>' if more > 0 else ""
    return (
        f'<table class="history"><caption>{caption}</caption><thead><tr>{heads}</tr></thead>'
        f"<tbody>{lines}</tbody></table>{note}"
    )


def _row(incident: StoredIncident, now: datetime, *, tz: ZoneInfo, lang: Lang) -> str:
    end = incident.end_at
    seconds = ((end or now) - incident.start_at).total_seconds()
    cells = [
        when(incident.start_at, tz, lang),
        t("ongoing", lang) if end is None else when(end, tz, lang),
        formats.duration(seconds, lang),
        cause(incident.cause, lang),
    ]
    return "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in cells) + "</tr>"
