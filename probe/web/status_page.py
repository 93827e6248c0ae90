"""The status page at ``/``: is each integration working now, for the people who use them.

One self-contained HTML page: inline CSS, no script, no image, no external URL, so it
works on a hospital network without internet. It reloads itself every 30 seconds with
``<meta http-equiv="refresh">``. Every state is a colour *and* a symbol *and* a word.
Flow, destination and maintenance names come from the config, so every string goes through
`html.escape` (`_e`). Danish with ``?lang=da`` (or a browser that prefers Danish), else
English.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from html import escape
from typing import Final
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from probe.errors import StoreError
from probe.report.render import formats
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, cause
from probe.web.status import DestinationStatus, FlowStatus, Hour, Snapshot, State, Window, worst

REFRESH_SECONDS: Final = 30

# key: (English, Danish)
_LABELS: Final[dict[str, tuple[str, str]]] = {
    "title": ("Integration status", "Integrationsstatus"),
    "updated": ("Updated {time}", "Opdateret {time}"),
    "refresh": (
        "Times in {tz}. This page refreshes itself every 30 seconds.",
        "Tider i {tz}. Siden opdaterer sig selv hvert 30. sekund.",
    ),
    "ok": ("Working", "Kører"),
    "degraded": ("Degraded", "Forringet"),
    "down": ("Down", "Nede"),
    "down_since": ("since {time}", "siden {time}"),
    "maintenance": ("Maintenance", "Vedligehold"),
    "unknown": ("Unknown", "Ukendt"),
    "overall_ok": ("All integrations are working", "Alle integrationer kører"),
    "overall_degraded": ("Some integrations are degraded", "Nogle integrationer kører forringet"),
    "overall_down": ("One or more integrations are down", "En eller flere integrationer er nede"),
    "overall_unknown": (
        "The state of some integrations is unknown",
        "Nogle integrationers tilstand er ukendt",
    ),
    "overall_none": ("No integrations are configured", "Ingen integrationer er sat op"),
    "overall_maintenance": ("Planned maintenance in progress", "Planlagt vedligehold i gang"),
    "destination": ("Destination", "Destination"),
    "check": ("(check)", "(tjek)"),
    "state": ("Status", "Status"),
    "last24": ("Last 24 hours", "Seneste 24 timer"),
    "h1": ("1 hour", "1 time"),
    "h24": ("24 hours", "24 timer"),
    "d30": ("30 days", "30 dage"),
    "availability": ("Availability", "Tilgængelighed"),
    "last_probe": ("Last probe", "Seneste måling"),
    "never": ("No probe yet", "Ingen måling endnu"),
    "maintenance_now": (
        "Planned maintenance \u201c{name}\u201d until {until}.",
        "Planlagt vedligehold \u201c{name}\u201d til {until}.",
    ),
    "maintenance_next": (
        "Next planned maintenance: \u201c{name}\u201d {start} {dash} {end}.",
        "Næste planlagte vedligehold: \u201c{name}\u201d {start} {dash} {end}.",
    ),
    "cell": (
        "{start}: {share} of {count} probes delivered",
        "{start}: {share} af {count} målinger leveret",
    ),
    "cell_none": ("{start}: no data", "{start}: ingen data"),
    "cell_maintenance": ("{start}: maintenance", "{start}: vedligehold"),
    "ago24": ("24 h ago", "for 24 t siden"),
    "now": ("now", "nu"),
    "legend": (
        "Working: the recent test messages all arrived in time. Degraded: some arrived late "
        "or went missing. Down: the last three did not arrive. Maintenance: planned downtime. "
        "Unknown: no recent measurement. Each bar is one hour: green when the messages arrived "
        "in time, amber when some were late or missing, red when more than one in ten did not "
        "arrive, grey without data.",
        "Kører: de seneste testbeskeder kom alle frem til tiden. Forringet: nogle kom for sent "
        "eller forsvandt. Nede: de sidste tre kom ikke frem. Vedligehold: planlagt nedetid. "
        "Ukendt: ingen nye målinger. Hver søjle er én time: grøn når beskederne kom frem til "
        "tiden, gul når nogle var forsinkede eller manglede, rød når mere end hver tiende ikke "
        "kom frem, grå uden data.",
    ),
    "unavailable": (
        "The status cannot be read right now: the probe's database does not answer.",
        "Status kan ikke læses lige nu: måledatabasen svarer ikke.",
    ),
}

SYMBOLS: Final = {
    State.OK: "\u2713",
    State.DEGRADED: "!",
    State.DOWN: "\u2715",
    State.MAINTENANCE: "\u2699",
    State.UNKNOWN: "?",
}


def _t(key: str, lang: Lang, **values: object) -> str:
    english, danish = _LABELS[key]
    text = danish if lang == "da" else english
    return text.format(**values) if values else text


def _e(text: object) -> str:
    """Escape for element content and quoted attribute values alike."""
    return escape(str(text), quote=True)


def choose_lang(query: str | None, accept: str | None) -> Lang:
    """``?lang=da|en`` first, then the browser's Accept-Language, else English."""
    if query in ("da", "en"):
        return "da" if query == "da" else "en"
    best: tuple[float, Lang] = (0.0, "en")
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("da", "en") and weight > best[0]:
            best = (weight, "da" if primary == "da" else "en")
    return best[1]


def endpoint(
    load: Callable[[], Awaitable[Snapshot]], *, timezone: str
) -> Callable[[Request], Awaitable[Response]]:
    """The ``/`` handler over a snapshot loader (`probe.web.api.Api.snapshot`)."""
    tz = ZoneInfo(timezone)

    async def page(request: Request) -> Response:
        lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
        try:
            found = await load()
        except StoreError:
            return HTMLResponse(_document([f"<p>{_e(_t('unavailable', lang))}</p>"], lang), 503)
        return HTMLResponse(render(found, lang=lang, tz=tz, timezone=timezone))

    return page


def render(found: Snapshot, *, lang: Lang, tz: ZoneInfo, timezone: str) -> str:
    """The whole page for one snapshot."""
    now = found.generated_at.astimezone(tz)
    body = [
        '<header class="top">',
        f"<div><h1>{_e(_t('title', lang))}</h1>",
        f'<p class="meta">{_e(_t("updated", lang, time=formats.when(now.isoformat(), lang)))}'
        f" {DASH} {_e(_t('refresh', lang, tz=timezone))}</p></div>",
        _language_links(lang),
        "</header>",
        _overall(found, lang),
        *(_flow(flow, lang, tz) for flow in found.flows),
        _legend(lang),
    ]
    return _document(body, lang)


def _legend(lang: Lang) -> str:
    chips = " ".join(_badge(state, lang) for state in SYMBOLS)
    return f'<footer class="legend"><p>{chips}</p><p>{_e(_t("legend", lang))}</p></footer>'


def _document(body: list[str], lang: Lang) -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{_e(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(_t('title', lang))}</title>\n<style>{CSS}</style>\n</head>\n"
        '<body>\n<main class="page">\n' + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def _language_links(lang: Lang) -> str:
    links = []
    for code, name in (("en", "English"), ("da", "Dansk")):
        current = ' aria-current="true" class="current"' if code == lang else ""
        links.append(f'<a href="?lang={code}" hreflang="{code}"{current}>{name}</a>')
    return f'<nav class="langs">{" ".join(links)}</nav>'


def _badge(state: State, lang: Lang) -> str:
    return (
        f'<span class="badge state-{state}"><span class="sym" aria-hidden="true">'
        f"{SYMBOLS[state]}</span> {_e(_t(str(state), lang))}</span>"
    )


def _overall(found: Snapshot, lang: Lang) -> str:
    states = [f.state for f in found.flows if f.state is not State.MAINTENANCE]
    if not found.flows:
        state, key = State.UNKNOWN, "overall_none"
    elif not states:
        state, key = State.MAINTENANCE, "overall_maintenance"
    else:
        state = worst(states)
        key = f"overall_{state}"
    lines = [f'<span class="sym" aria-hidden="true">{SYMBOLS[state]}</span> {_e(_t(key, lang))}']
    if states and any(f.state is State.MAINTENANCE for f in found.flows):
        lines.append(f"<small>{_e(_t('overall_maintenance', lang))}</small>")
    return f'<div class="overall state-{state}" data-state="{state}">{"".join(lines)}</div>'


def _flow(flow: FlowStatus, lang: Lang, tz: ZoneInfo) -> str:
    head = f'<div class="flow-head"><h2>{_e(flow.name)}</h2>{_badge(flow.state, lang)}</div>' + (
        f'<p class="desc">{_e(flow.description)}</p>' if flow.description else ""
    )
    notes = []
    if flow.maintenance is not None:
        until = formats.when(flow.maintenance.end.astimezone(tz).isoformat(), lang, exact=False)
        text = _t("maintenance_now", lang, name=flow.maintenance.name, until=until)
        notes.append(f'<p class="note now">{SYMBOLS[State.MAINTENANCE]} {_e(text)}</p>')
    if flow.next_maintenance is not None:
        notes.append(f'<p class="note next">{_e(_next(flow.next_maintenance, lang, tz))}</p>')
    heads = "".join(
        f'<th class="{cls}">{_e(_t(key, lang))}</th>'
        for key, cls in (
            ("destination", "c-name"), ("state", "c-state"), ("last24", "c-bar"),
            ("h1", "num"), ("h24", "num"), ("d30", "num"), ("last_probe", "c-last"),
        )
    )  # fmt: skip
    rows = "".join(_destination(flow.name, d, lang, tz) for d in flow.destinations)
    return (
        f'<section class="flow state-{flow.state}" data-flow="{_e(flow.name)}" '
        f'data-state="{flow.state}">{head}{"".join(notes)}'
        f'<table class="dests"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>'
        "</section>"
    )


def _next(window: Window, lang: Lang, tz: ZoneInfo) -> str:
    start = window.start.astimezone(tz).isoformat()
    end = formats.until(start, window.end.astimezone(tz).isoformat(), lang)
    begin = formats.when(start, lang, exact=False)
    return _t("maintenance_next", lang, name=window.name, start=begin, dash=DASH, end=end)


def _destination(flow: str, dest: DestinationStatus, lang: Lang, tz: ZoneInfo) -> str:
    name = dest.name or _t("check", lang)
    since = ""
    if dest.down_since is not None:
        at = formats.when(dest.down_since.astimezone(tz).isoformat(), lang, exact=False)
        since = f'<br><small class="since">{_e(_t("down_since", lang, time=at))}</small>'
    cells = [
        f'<td class="name">{_e(name)}</td>',
        f"<td>{_badge(dest.state, lang)}{since}</td>",
        f'<td class="bar">{_bar(dest, lang, tz)}</td>',
        *(_percent(dest.availability[key], lang) for key in ("1h", "24h", "30d")),
        f'<td class="last">{_last(dest, lang, tz)}</td>',
    ]
    return (
        f'<tr class="dest state-{dest.state}" data-flow="{_e(flow)}" '
        f'data-destination="{_e(dest.name)}" data-state="{dest.state}">{"".join(cells)}</tr>'
    )


def _percent(value: float | None, lang: Lang) -> str:
    text = DASH if value is None else formats.percent(value, lang, decimals=1)
    return f'<td class="num">{_e(text)}</td>'


def _bar(dest: DestinationStatus, lang: Lang, tz: ZoneInfo) -> str:
    cells = "".join(_cell(hour, dest.slo_objective, lang, tz) for hour in dest.hours)
    return (
        f'<div class="cells">{cells}</div><div class="axis"><span>{_e(_t("ago24", lang))}</span>'
        f"<span>{_e(_t('now', lang))}</span></div>"
    )


def _cell(hour: Hour, objective: float, lang: Lang, tz: ZoneInfo) -> str:
    state = hour.state(objective)
    start = formats.when(hour.start.astimezone(tz).isoformat(), lang, exact=False)
    share = hour.availability
    if share is not None:
        text = _t(
            "cell",
            lang,
            start=start,
            share=formats.percent(share, lang, decimals=1),
            count=formats.number(hour.counted, lang),
        )
    elif state is State.MAINTENANCE:
        text = _t("cell_maintenance", lang, start=start)
    else:
        text = _t("cell_none", lang, start=start)
    return f'<span class="cell state-{state}" title="{_e(text)}"></span>'


def latency(value: float, lang: Lang) -> str:
    """``41 ms`` below a second (most deliveries), else ``1.25 s``."""
    if value < 1:
        return f"{formats.number(value * 1000, lang)} ms"
    return formats.seconds(value, lang)


def _last(dest: DestinationStatus, lang: Lang, tz: ZoneInfo) -> str:
    last = dest.last
    if last is None:
        return f'<span class="muted">{_e(_t("never", lang))}</span>'
    when: datetime = last.slot.astimezone(tz)
    parts = [cause(str(last.outcome), lang)]
    if last.latency is not None:
        parts.append(latency(last.latency, lang))
    if last.reason:
        parts.append(last.reason)
    return (
        f'{_e(" · ".join(parts))}<br><small class="muted">'
        f"{_e(formats.when(when.isoformat(), lang))}</small>"
    )


# Inline, system fonts only: an external stylesheet or font would be a request to the
# internet. Colours always come with a symbol and a word, for colour-blind readers.
CSS: Final = """
:root {
  --ink: #1d2733; --muted: #5b6673; --line: #d8dee6; --soft: #f4f6f9; --accent: #0b5394;
  --ok: #17663a; --ok-bg: #e3f4e8; --ok-cell: #2f9e5d;
  --degraded: #7a4f00; --degraded-bg: #fff1cc; --degraded-cell: #e3a21a;
  --down: #a9231b; --down-bg: #fbe4e1; --down-cell: #d2372b;
  --maintenance: #1f4e8c; --maintenance-bg: #e2ebf8; --maintenance-cell: #7d9fd3;
  --unknown: #4f5b67; --unknown-bg: #e9edf1; --unknown-cell: #d3d9e0;
}
* { box-sizing: border-box; }
body { margin: 0; background: #e9edf2; color: var(--ink);
  font: 14px/1.45 "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
.page { max-width: 1080px; margin: 20px auto; background: #fff; padding: 26px 34px 20px;
  box-shadow: 0 1px 4px rgba(0, 0, 0, .12); border-radius: 6px; }
header.top { display: flex; justify-content: space-between; align-items: flex-start; gap: 16px;
  border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 16px; }
h1 { margin: 0 0 4px; font-size: 24px; line-height: 1.2; }
h2 { margin: 0; font-size: 17px; }
.meta, .legend, .desc, .muted { color: var(--muted); }
.meta { margin: 0; font-size: 13px; }
.langs a { color: var(--accent); margin-left: 10px; font-size: 13px; }
.langs a.current { color: var(--ink); font-weight: 600; text-decoration: none; }
.overall { border-radius: 6px; padding: 12px 16px; font-size: 17px; font-weight: 600;
  margin-bottom: 18px; border: 1px solid transparent; }
.overall small { display: block; font-size: 13px; font-weight: 400; }
section.flow { border: 1px solid var(--line); border-left-width: 6px; border-radius: 6px;
  padding: 12px 16px 6px; margin-bottom: 14px; }
.flow-head { display: flex; align-items: center; gap: 12px; }
.desc { margin: 2px 0 0; font-size: 13px; }
.note { margin: 8px 0 0; padding: 6px 10px; border-radius: 4px; font-size: 13px; }
.note.now { background: var(--maintenance-bg); color: var(--maintenance); font-weight: 600; }
.note.next { background: var(--soft); color: var(--muted); }
table.dests { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: 13px; }
.dests th, .dests td { padding: 7px 8px; border-top: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
.dests th { color: var(--muted); font-weight: 600; font-size: 12px; border-top: 0; }
table.dests { table-layout: fixed; }
.dests th.c-name { width: 17%; } .dests th.c-state { width: 15%; }
.dests th.c-bar { width: 280px; } .dests th.num { width: 9%; }
.dests td.name { overflow-wrap: anywhere; }
.dests td.name { font-weight: 600; }
.dests .num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.dests td.last { font-size: 12px; }
.badge { display: inline-block; white-space: nowrap; border-radius: 999px; padding: 2px 10px;
  font-weight: 600; font-size: 12px; }
.sym { display: inline-block; min-width: 1em; text-align: center; font-weight: 700; }
.cells { display: flex; gap: 2px; }
.cell { display: inline-block; width: 9px; height: 20px; border-radius: 2px; }
.axis { display: flex; justify-content: space-between; font-size: 10px; color: var(--muted);
  width: 262px; }
.state-ok.badge, .state-ok.overall { background: var(--ok-bg); color: var(--ok); }
.state-degraded.badge, .state-degraded.overall { background: var(--degraded-bg);
  color: var(--degraded); }
.state-down.badge, .state-down.overall { background: var(--down-bg); color: var(--down); }
.state-maintenance.badge, .state-maintenance.overall { background: var(--maintenance-bg);
  color: var(--maintenance); }
.state-unknown.badge, .state-unknown.overall { background: var(--unknown-bg);
  color: var(--unknown); }
section.state-ok { border-left-color: var(--ok-cell); }
section.state-degraded { border-left-color: var(--degraded-cell); }
section.state-down { border-left-color: var(--down-cell); }
section.state-maintenance { border-left-color: var(--maintenance-cell); }
section.state-unknown { border-left-color: var(--unknown-cell); }
.cell.state-ok { background: var(--ok-cell); }
.cell.state-degraded { background: var(--degraded-cell); }
.cell.state-down { background: var(--down-cell); }
.cell.state-maintenance { background: var(--maintenance-cell); }
.cell.state-unknown { background: var(--unknown-cell); }
.legend { font-size: 12px; margin: 16px 0 0; border-top: 1px solid var(--line); }
.legend p { margin: 8px 0 0; }
@media (max-width: 760px) { .page { padding: 14px; } .dests .bar { display: none; } }
"""
