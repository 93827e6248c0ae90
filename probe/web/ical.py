"""A small iCalendar writer (RFC 5545) for a published calendar of events in UTC.

    >>> text = calendar([Event(uid="maintenance-tuesday-patch-20261006T040000Z@drift.example.org",
    ...                        start=start, end=end, summary="Planned maintenance: tuesday-patch")],
    ...                 name="Planned maintenance", stamp=now)

The venv has no iCalendar library, and the part needed is small, so it is written out
here, rule by rule:

- every content line ends in CRLF, and a line longer than 75 octets is folded: CRLF and
  one space, never inside a UTF-8 sequence (3.1);
- TEXT values escape backslash, semicolon and comma with a backslash, and a line break as
  ``\\n``; other control characters, which TEXT cannot hold, are dropped (3.3.11);
- times are UTC DATE-TIME values, ``20261006T040000Z`` (3.3.5, form #2), so no VTIMEZONE
  is needed;
- each VEVENT has UID and DTSTAMP (3.6.1); the calendar has VERSION and PRODID (3.7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

MEDIA_TYPE: Final = "text/calendar; charset=utf-8"
PRODID: Final = "-//dataflow-probe//maintenance//EN"
LINE_OCTETS: Final = 75
CRLF: Final = "\r\n"
# Calendar clients re-read a subscription this often (RFC 7986 REFRESH-INTERVAL, and
# Outlook's X-PUBLISHED-TTL).
REFRESH: Final = timedelta(hours=1)
# TEXT holds any character but the controls; HTAB stays (3.3.11), line breaks become \n.
_CONTROLS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_NOT_URI: Final = re.compile("[\x00-\x20\x7f]")  # a URI has no controls and no spaces


@dataclass(frozen=True, slots=True)
class Event:
    """One VEVENT. Without ``end`` the event is an instant at ``start`` (3.6.1)."""

    uid: str
    start: datetime
    end: datetime | None
    summary: str
    description: str = ""
    url: str = ""
    categories: tuple[str, ...] = ()


def escape_text(text: str) -> str:
    """A TEXT value: ``a, b; c\\d`` is ``a\\, b\\; c\\\\d``; line breaks are ``\\n``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    for char in ("\\", ";", ","):
        text = text.replace(char, "\\" + char)
    return text.replace("\n", "\\n")


def utc(moment: datetime) -> str:
    """An aware time as a UTC DATE-TIME: ``20261006T040000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def fold(line: str) -> str:
    """One content line, folded to at most 75 octets a line, each ending in CRLF."""
    out: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > LINE_OCTETS:
            out.append(current + CRLF)
            current, size = " ", 1  # the space that marks a continuation counts too
        current += char
        size += width
    out.append(current + CRLF)
    return "".join(out)


def calendar(
    events: Sequence[Event], *, name: str, stamp: datetime, description: str = ""
) -> bytes:
    """The VCALENDAR with ``events`` in order, as UTF-8 bytes; ``stamp`` is every DTSTAMP
    (when this copy of the calendar was made, as METHOD:PUBLISH has it)."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"NAME:{escape_text(name)}",
        f"X-WR-CALNAME:{escape_text(name)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:PT{_hours(REFRESH)}H",
        f"X-PUBLISHED-TTL:PT{_hours(REFRESH)}H",
    ]
    if description:
        lines.append(f"X-WR-CALDESC:{escape_text(description)}")
    for event in events:
        lines += _event(event, stamp)
    lines.append("END:VCALENDAR")
    return "".join(fold(line) for line in lines).encode("utf-8")


def _event(event: Event, stamp: datetime) -> Iterable[str]:
    yield "BEGIN:VEVENT"
    yield f"UID:{escape_text(event.uid)}"
    yield f"DTSTAMP:{utc(stamp)}"
    yield f"DTSTART:{utc(event.start)}"
    if event.end is not None:
        yield f"DTEND:{utc(event.end)}"
    yield f"SUMMARY:{escape_text(event.summary)}"
    if event.description:
        yield f"DESCRIPTION:{escape_text(event.description)}"
    if event.categories:
        yield "CATEGORIES:" + ",".join(escape_text(c) for c in event.categories)
    if event.url:
        yield f"URL:{_NOT_URI.sub('', event.url)}"  # a URI: no TEXT escaping (3.3.13)
    yield "STATUS:CONFIRMED"
    yield "TRANSP:OPAQUE"
    yield "END:VEVENT"


def _hours(span: timedelta) -> int:
    return int(span.total_seconds() // 3600)
