"""Written incidents and announcements, and planned maintenance, as HTML.

    >>> notices_section(board, "da")       # the top of the status page
    '<section class="notices" data-part="notices" ...'
    >>> notice_article(notice, config=config, tz=tz, lang="en", flows=["gs-adt"])
    '<article class="notice kind-incident state-identified" id="notice-3" ...'

Each notice shows its kind and state as words (never by colour alone), the flows it
affects by their display names, and its timeline newest first, with times in the config's
zone. A body is Markdown from an operator, rendered by `probe.markdown.render`, which
removes anything active (scripts, event handlers, ``javascript:`` links).

The section carries ``data-notices``, the ids and update times of the active notices as the
event stream sends them (`signature`): when the stream says otherwise, the page's script
fetches the page again and swaps this section (``data-part``) in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from probe.config.models import Config
from probe.markdown import render as markdown
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang
from probe.store.notices import Notice
from probe.web.board import Board, Planned
from probe.web.page_parts import e, name_of, time_tag, when
from probe.web.page_text import t


def signature(notices: Iterable[Notice], tz: ZoneInfo) -> str:
    """The active notices as the event stream names them: ``id@updated_at`` each."""
    return " ".join(f"{n.id}@{iso(n.updated_at, tz)}" for n in notices)


def iso(moment: datetime, tz: ZoneInfo) -> str:
    """A time as the API writes it: ISO 8601 with the config zone's offset."""
    return moment.astimezone(tz).isoformat()


def notices_section(board: Board, lang: Lang) -> str:
    """Active notices, written announcements to come, and planned maintenance."""
    tz, flows = board.tz, [f.name for f in board.snapshot.flows]
    items = [
        *(notice_article(n, config=board.config, tz=tz, lang=lang, flows=flows)
          for n in board.notices),
        *(notice_article(n, config=board.config, tz=tz, lang=lang, flows=flows, upcoming=True)
          for n in board.upcoming),
        *(planned_article(p, config=board.config, tz=tz, lang=lang) for p in board.planned),
    ]  # fmt: skip
    marker = f'data-part="notices" data-notices="{e(signature(board.notices, tz))}"'
    if not items:
        return f"<div {marker}></div>"
    return (
        f'<section class="notices" {marker} aria-labelledby="notices-h">'
        f'<h2 id="notices-h">{e(t("notices", lang))}</h2>{"".join(items)}</section>'
    )


def notice_article(
    notice: Notice,
    *,
    config: Config,
    tz: ZoneInfo,
    lang: Lang,
    flows: Sequence[str],
    upcoming: bool = False,
) -> str:
    """One notice with its tags, what it affects, when, and its timeline newest first."""
    ident = f"notice-{notice.id}"
    state = "upcoming" if upcoming else notice.state
    meta = [
        _affects(notice, config, lang, flows),
        t("opened", lang, time=when(notice.created_at, tz, lang)),
    ]
    if len(notice.updates) > 1:
        meta.append(t("last_update", lang, time=when(notice.updated_at, tz, lang)))
    if notice.starts_at is not None:
        meta.append(t("from", lang, time=when(notice.starts_at, tz, lang)))
    if notice.ends_at is not None:
        meta.append(t("until", lang, time=when(notice.ends_at, tz, lang)))
    return (
        f'<article class="notice kind-{e(notice.kind)} state-{e(notice.state)}" id="{ident}" '
        f'aria-labelledby="{ident}-h"><h3 id="{ident}-h">{e(notice.title)}</h3>'
        f'<p class="ntags">{_tag(notice.kind, t(notice.kind, lang))}'
        f"{_state_tag(state, lang)}</p>"
        f'<p class="nmeta">{" · ".join(e(m) for m in meta)}</p>'
        f"{timeline(notice, tz=tz, lang=lang)}</article>"
    )


def timeline(notice: Notice, *, tz: ZoneInfo, lang: Lang) -> str:
    """The updates newest first: when, the state they set, and what was said."""
    entries = []
    for update in reversed(notice.updates):
        body = f'<div class="nbody">{markdown(update.body)}</div>' if update.body else ""
        entries.append(
            f'<li><p class="when">{time_tag(update.at, tz, lang)} · '
            f"<strong>{e(_state_word(update.state, lang))}</strong></p>{body}</li>"
        )
    return f'<ol class="timeline" aria-label="{e(t("timeline", lang))}">{"".join(entries)}</ol>'


def planned_article(planned: Planned, *, config: Config, tz: ZoneInfo, lang: Lang) -> str:
    """A maintenance window from the config, as an announcement."""
    state = "in_progress" if planned.active else "upcoming"
    start = when(planned.start, tz, lang)
    span = t("span", lang, start=start, dash=DASH, end=_end(planned, tz, lang))
    names = ", ".join(name_of(config, flow, lang) for flow in planned.flows)
    title = f"{t('planned', lang)} \u201c{planned.name}\u201d"
    return (
        f'<article class="notice kind-planned state-{state}"><h3>{e(title)}</h3>'
        f'<p class="ntags">{_tag("planned", t("planned", lang))}{_state_tag(state, lang)}</p>'
        f'<p class="nmeta">{e(span)} · {e(t("affects", lang, flows=names))}</p></article>'
    )


def flow_marks(board: Board, flow: str, lang: Lang) -> str:
    """A line on a flow for each active written incident that names it."""
    return "".join(
        f'<p class="note incident"><a href="#notice-{n.id}">'
        f"{e(t('flow_incident', lang, title=n.title, state=_state_word(n.state, lang)))}</a></p>"
        for n in board.incidents_for(flow)
    )


def _tag(kind: str, text: str) -> str:
    return f'<span class="ntag kind-{e(kind)}">{e(text)}</span>'


def _state_tag(state: str, lang: Lang) -> str:
    return f'<span class="ntag st-{e(state)}">{e(_state_word(state, lang))}</span>'


def _state_word(state: str, lang: Lang) -> str:
    try:
        return t(state, lang)
    except KeyError:  # a state this version does not know: as stored
        return state


def _affects(notice: Notice, config: Config, lang: Lang, flows: Sequence[str]) -> str:
    if not notice.flows:
        return t("affects_all", lang)
    matched = [name_of(config, flow, lang) for flow in flows if notice.affects(flow)]
    return t("affects", lang, flows=", ".join(matched or notice.flows))


def _end(planned: Planned, tz: ZoneInfo, lang: Lang) -> str:
    start, end = planned.start.astimezone(tz), planned.end.astimezone(tz)
    return f"{end:%H:%M}" if start.date() == end.date() else when(planned.end, tz, lang)
