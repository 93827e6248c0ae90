"""The events of ``/maintenance.ics``: the configured maintenance windows and announcements.

    >>> events = maintenance_events(config, flows, now=now, lang="da", host="drift.example.org")

A recurring window (weekly, monthly) is expanded into its occurrences from `CALENDAR_BEFORE`
ago to `CALENDAR_AHEAD` ahead, each a VEVENT in UTC, rather than written as an RRULE: its
start is local wall-clock time, which an RRULE could only carry with a VTIMEZONE, and
"day 31 means the month's last day" has no RRULE. An occurrence's UID is the window's name
and its start, so it stays the same from one download to the next while the config does.
An announcement not ended (`probe.store.notices`) is an event from its ``starts_at`` (or
when it was written) to its ``ends_at``, or an instant when it has no end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

from probe import markdown
from probe.config.models import Config, FlowSpec
from probe.config.people import display_name
from probe.config.windows import covers, occurrences
from probe.report.render.i18n import Lang, label, notice_kind
from probe.store.notices import Notice
from probe.web.ical import Event, utc

CALENDAR_BEFORE: Final = timedelta(days=30)
CALENDAR_AHEAD: Final = timedelta(days=90)

# key: (English, Danish)
_WORDS: Final[dict[str, tuple[str, str]]] = {
    "calendar": ("Planned maintenance", "Planlagt vedligehold"),
    "summary": ("Planned maintenance: {name}", "Planlagt vedligehold: {name}"),
    "covers": ("Affects: {flows}.", "Berører: {flows}."),
    "no_flow": ("No configured integration.", "Ingen konfigureret integration."),
    "left_out": (
        "Test messages in this window are left out of availability and incidents.",
        "Testbeskeder i vinduet holdes uden for tilgængelighed og hændelser.",
    ),
}


def _word(key: str, lang: Lang, **values: object) -> str:
    english, danish = _WORDS[key]
    return (danish if lang == "da" else english).format(**values)


def calendar_name(lang: Lang) -> str:
    """The calendar's name, as a calendar client shows it."""
    return _word("calendar", lang)


def maintenance_events(
    config: Config, flows: Sequence[FlowSpec], *, now: datetime, lang: Lang, host: str
) -> list[Event]:
    """Every occurrence of every maintenance window near ``now``, in config order."""
    tz = ZoneInfo(config.timezone)
    start, end = now - CALENDAR_BEFORE, now + CALENDAR_AHEAD
    events: list[Event] = []
    seen: set[str] = set()
    for window in config.maintenance:
        names = [
            display_name(config.display, f.name, lang) for f in flows if covers(window, f.name)
        ]
        affects = _word("covers", lang, flows=", ".join(names)) if names else _word("no_flow", lang)
        description = f"{affects}\n{_word('left_out', lang)}"
        for begin, finish in occurrences(window, start, end, tz):
            uid = f"maintenance-{quote(window.name, safe='')}-{utc(begin)}@{host}"
            while uid in seen:  # two windows of one name starting at once: keep both
                uid = "x" + uid
            seen.add(uid)
            events.append(
                Event(
                    uid=uid,
                    start=begin,
                    end=finish,
                    summary=_word("summary", lang, name=window.name),
                    description=description,
                    categories=(label("maintenance", lang),),
                )
            )
    return events


def announcement_events(
    notices: Sequence[Notice], *, lang: Lang, host: str, link: Callable[[int], str]
) -> list[Event]:
    """The announcements as events; ``link(id)`` is the address of one on the status page."""
    events = []
    for notice in notices:
        if notice.kind != "announcement":
            continue
        url = link(notice.id)
        text = markdown.plain(notice.body)
        events.append(
            Event(
                uid=f"notice-{notice.id}@{host}",
                start=notice.starts_at or notice.created_at,
                end=notice.ends_at,
                summary=notice.title,
                description=f"{text}\n\n{url}" if text else url,
                url=url,
                categories=(notice_kind(notice.kind, lang),),
            )
        )
    return events
