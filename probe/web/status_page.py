"""The status page at ``/``: is each integration working now, for the people who use them.

    >>> routes(api)   # /, /history, /report/{month}, /api/v1/events
    [Route(path='/', ...), ...]

One self-contained page (`probe.web.page_parts`): the state of every flow and destination
by its display name (``display:``, in the page's language, the technical name small beside
it), "down since", a 24-hour and a 90-day bar, the active written incidents and
announcements with their timelines at the top, planned maintenance, and links to the
history page and the monthly report. Every state is a colour *and* a symbol *and* a word.
Danish with ``?lang=da`` (or a browser that prefers Danish), else English.

The server-rendered page shows everything and reloads itself every 30 seconds without
JavaScript. With it, the inline script (`static/status.js`) follows ``GET /api/v1/events``
(`probe.web.live`) and updates the badges, "down since" and the banner in place, swaps the
notices when they change, and shows the pop-ups a visitor opted in to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from probe.errors import StoreError
from probe.report.render import formats
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, cause
from probe.web import history_page, report_page
from probe.web.api import Api
from probe.web.board import Board, BoardSource
from probe.web.days import Day
from probe.web.live import EVENTS_PATH, Events
from probe.web.notices_view import flow_marks, notices_section
from probe.web.page_parts import (
    SYMBOLS,
    badge,
    description_of,
    destination_name_of,
    document,
    e,
    language_links,
    months,
    name_of,
    named,
    page_response,
    when,
)
from probe.web.page_text import choose_lang, t
from probe.web.status import DestinationStatus, FlowStatus, Hour, State, Window, overall

__all__ = ["choose_lang", "latency", "render", "routes"]


def routes(api: Api) -> list[Route]:
    """The pages for people, and the event stream the status page follows."""
    source = BoardSource(api)
    return [
        Route("/", _endpoint(source)),
        Route("/history", history_page.endpoint(source)),
        Route("/report/{month}", report_page.endpoint(api)),
        Route(EVENTS_PATH, Events(source).endpoint),
    ]


def _endpoint(source: BoardSource) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:
        lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
        try:
            board = await source.load()
        except StoreError:
            text = document([f"<p>{e(t('unavailable', lang))}</p>"], lang, title=t("title", lang))
            return page_response(text, status=503, script=False)
        return page_response(render(board, lang=lang))

    return page


def render(board: Board, *, lang: Lang) -> str:
    """The whole page for one board."""
    tz, found = board.tz, board.snapshot
    updated = t("updated", lang, time=when(found.generated_at, tz, lang, exact=True))
    body = [
        '<header class="top">',
        f"<div><h1>{e(t('title', lang))}</h1>",
        f'<p class="meta" data-part="updated">{e(updated)} {DASH} '
        f"{e(t('refresh', lang, tz=board.config.timezone))}</p>",
        f"{_links(found.generated_at.astimezone(tz), lang)}</div>",
        language_links(lang, "/"),
        "</header>",
        _overall(board, lang),
        notices_section(board, lang),
        _popups(lang),
        *(_flow(board, flow, lang, tz) for flow in found.flows),
        _legend(lang),
    ]
    return document(body, lang, title=t("title", lang), data=_script_data(lang))


def _links(now: datetime, lang: Lang) -> str:
    """The history page, and the monthly report of last month and of this one so far."""
    this = f"{now:%Y-%m}"
    last = f"{now.year - 1}-12" if now.month == 1 else f"{now.year}-{now.month - 1:02d}"
    so_far = t("so_far", lang, month=formats.month_name(this, lang))
    return (
        f'<nav class="links" aria-label="{e(t("links", lang))}">'
        f'<a href="/history?lang={lang}">{e(t("history", lang))}</a> '
        f"<span>{e(t('report', lang))}: "
        f'<a href="/report/{last}?lang={lang}">{e(formats.month_name(last, lang))}</a> · '
        f'<a href="/report/{this}?lang={lang}">{e(so_far)}</a></span></nav>'
    )


def _script_data(lang: Lang) -> dict[str, object]:
    """What the script needs: where the events are, and every word it may show."""
    summaries = ("ok", "degraded", "down", "unknown", "none", "maintenance")
    return {
        "lang": lang,
        "events": EVENTS_PATH,
        "states": {str(s): t(str(s), lang) for s in State},
        "symbols": {str(s): SYMBOLS[s] for s in State},
        "overall": {key: t(f"overall_{key}", lang) for key in summaries},
        "since": t("down_since", lang, time="{time}"),
        "months": months(lang),
        "notifyTitle": t("notify_title", lang, name="{name}"),
        "popups": {k: t(f"popups_{k}", lang) for k in ("on", "off", "blocked", "unsupported")},
        "unavailable": t("unavailable", lang),
    }


def _legend(lang: Lang) -> str:
    chips = " ".join(badge(state, lang) for state in SYMBOLS)
    return f'<footer class="legend"><p>{chips}</p><p>{e(t("legend", lang))}</p></footer>'


def _popups(lang: Lang) -> str:
    """The opt-in to pop-ups; hidden until the script shows it (it needs the script)."""
    return (
        f'<div class="popups" id="popups" hidden><p>{e(t("popups_intro", lang))}</p>'
        f'<button type="button" id="popups-allow">{e(t("popups_allow", lang))}</button>'
        '<p id="popups-state" role="status"></p></div>'
    )


def _overall(board: Board, lang: Lang) -> str:
    state, summary, some_maintenance = overall(board.snapshot)
    lines = [
        f'<span class="sym" aria-hidden="true">{SYMBOLS[state]}</span> '
        f'<span class="text">{e(t(f"overall_{summary}", lang))}</span>'
    ]
    extra = e(t("overall_maintenance", lang)) if some_maintenance else ""
    lines.append(f'<small class="extra">{extra}</small>')
    return (
        f'<div class="overall state-{state}" id="overall" data-state="{state}" role="status">'
        f"{''.join(lines)}</div>"
    )


def _flow(board: Board, flow: FlowStatus, lang: Lang, tz: ZoneInfo) -> str:
    config = board.config
    shown = name_of(config, flow.name, lang)
    ident = f"flow-{flow.name}"
    described = description_of(config, flow.name, lang, flow.description)
    head = (
        f'<div class="flow-head"><h2 id="{e(ident)}-h">{named(shown, flow.name)}</h2>'
        f"{badge(flow.state, lang)}"
        f'<button type="button" class="follow" id="follow-{e(flow.name)}" '
        f'data-follow="{e(flow.name)}" aria-pressed="false" hidden>{e(t("follow", lang))}'
        f'<span class="vh"> {e(shown)}</span></button></div>'
    ) + (f'<p class="desc">{e(described)}</p>' if described else "")
    notes = [flow_marks(board, flow.name, lang)]
    if flow.maintenance is not None:
        until = when(flow.maintenance.end, tz, lang)
        text = t("maintenance_now", lang, name=flow.maintenance.name, until=until)
        notes.append(f'<p class="note now">{SYMBOLS[State.MAINTENANCE]} {e(text)}</p>')
    if flow.next_maintenance is not None:
        notes.append(f'<p class="note next">{e(_next(flow.next_maintenance, lang, tz))}</p>')
    heads = "".join(
        f'<th scope="col" class="{cls}">{e(t(key, lang))}</th>'
        for key, cls in (
            ("destination", "c-name"), ("state", "c-state"), ("bars", "c-bar"),
            ("h1", "num"), ("h24", "num"), ("d30", "num"), ("last_probe", "c-last"),
        )
    )  # fmt: skip
    rows = "".join(_destination(board, flow.name, d, lang, tz) for d in flow.destinations)
    return (
        f'<section class="flow state-{flow.state}" data-flow="{e(flow.name)}" '
        f'data-state="{flow.state}" data-name="{e(shown)}" data-part="flow:{e(flow.name)}" '
        f'aria-labelledby="{e(ident)}-h">{head}{"".join(notes)}'
        f'<table class="dests"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>'
        "</section>"
    )


def _next(window: Window, lang: Lang, tz: ZoneInfo) -> str:
    start = window.start.astimezone(tz).isoformat()
    end = formats.until(start, window.end.astimezone(tz).isoformat(), lang)
    begin = when(window.start, tz, lang)
    return t("maintenance_next", lang, name=window.name, start=begin, dash=DASH, end=end)


def _destination(board: Board, flow: str, dest: DestinationStatus, lang: Lang, tz: ZoneInfo) -> str:
    key = f"{flow}/{dest.name}"
    shown = destination_name_of(board.config, flow, dest.name, lang) or t("check", lang)
    described = description_of(board.config, key, lang) if dest.name else ""
    since = ""
    if dest.down_since is not None:
        since = e(t("down_since", lang, time=when(dest.down_since, tz, lang)))
    days = board.days.cells((flow, dest.name), hours=dest.hours)
    cells = [
        f'<td class="name">{named(shown, dest.name)}'
        + (f'<br><small class="desc">{e(described)}</small>' if described else "")
        + "</td>",
        f'<td class="st">{badge(dest.state, lang)}<small class="since">{since}</small></td>',
        f'<td class="bar">{_bars(dest, days, lang, tz)}</td>',
        *(_percent(dest.availability[k], lang) for k in ("1h", "24h", "30d")),
        f'<td class="last">{_last(dest, lang, tz)}</td>',
    ]
    return (
        f'<tr class="dest state-{dest.state}" data-flow="{e(flow)}" '
        f'data-destination="{e(dest.name)}" data-state="{dest.state}" data-name="{e(shown)}">'
        f"{''.join(cells)}</tr>"
    )


def _percent(value: float | None, lang: Lang) -> str:
    text = DASH if value is None else formats.percent(value, lang, decimals=1)
    return f'<td class="num">{e(text)}</td>'


def _bars(dest: DestinationStatus, days: tuple[Day, ...], lang: Lang, tz: ZoneInfo) -> str:
    """The hours of the last 24 (each a cell) over the last 90 days (each a thinner one),
    each bar an image named by a summary of what it shows."""
    objective = dest.slo_objective
    hours = "".join(_hour_cell(hour, objective, lang, tz) for hour in dest.hours)
    daily = "".join(_day_cell(day, objective, lang) for day in days)
    hours_label = e(_summary("bar24", dest.hours, objective, lang))
    days_label = e(_summary("bar90", days, objective, lang))
    return (
        f'<div class="cells" role="img" aria-label="{hours_label}">{hours}</div>'
        f'<div class="axis"><span>{e(t("ago24", lang))}</span>'
        f"<span>{e(t('now', lang))}</span></div>"
        f'<div class="cells days" role="img" aria-label="{days_label}">{daily}</div>'
        f'<div class="axis days"><span>{e(t("ago90", lang))}</span>'
        f"<span>{e(t('today', lang))}</span></div>"
    )


def _summary(
    key: str, cells: tuple[Hour, ...] | tuple[Day, ...], objective: float, lang: Lang
) -> str:
    measured = [c for c in cells if c.counted]
    bad = [c for c in measured if c.state(objective) in (State.DOWN, State.DEGRADED)]
    return t(key, lang, measured=len(measured), bad=len(bad))


def _hour_cell(hour: Hour, objective: float, lang: Lang, tz: ZoneInfo) -> str:
    start = when(hour.start, tz, lang)
    return _cell(hour.state(objective), hour.availability, hour.counted, start, "cell_none", lang)


def _day_cell(day: Day, objective: float, lang: Lang) -> str:
    start = formats.day(day.day, lang)
    return _cell(day.state(objective), day.availability, day.counted, start, "day_none", lang)


def _cell(state: State, share: float | None, count: int, start: str, empty: str, lang: Lang) -> str:
    if share is not None:
        text = t("cell", lang, start=start, share=formats.percent(share, lang, decimals=1),
                 count=formats.number(count, lang))  # fmt: skip
    elif state is State.MAINTENANCE:
        text = t("cell_maintenance", lang, start=start)
    else:
        text = t(empty, lang, start=start)
    return f'<span class="cell state-{state}" title="{e(text)}"></span>'


def latency(value: float, lang: Lang) -> str:
    """``41 ms`` below a second (most deliveries), else ``1.25 s``."""
    if value < 1:
        return f"{formats.number(value * 1000, lang)} ms"
    return formats.seconds(value, lang)


def _last(dest: DestinationStatus, lang: Lang, tz: ZoneInfo) -> str:
    last = dest.last
    if last is None:
        return f'<span class="muted">{e(t("never", lang))}</span>'
    parts = [cause(str(last.outcome), lang)]
    if last.latency is not None:
        parts.append(latency(last.latency, lang))
    if last.reason:
        parts.append(last.reason)
    return (
        f'{e(" · ".join(parts))}<br><small class="muted">'
        f"{e(when(last.slot, tz, lang, exact=True))}</small>"
    )
