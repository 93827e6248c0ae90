"""Numbers, percentages, durations and dates written the Danish or the English way.

Small hand-written formatters instead of `locale`: the report must look the same on every
server, and a container seldom has a Danish locale installed. Times are shown as the
wall-clock time they carry; their UTC offset is kept, never converted, because the report
is already in its configured time zone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from probe.report.render.i18n import Lang

_MONTHS_EN: Final = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTHS_DA: Final = [
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
]
# Danish abbreviations take a full stop, except "maj", which is not abbreviated.
_ABBR_DA: Final = [m if len(m) <= 3 else m[:3] + "." for m in _MONTHS_DA]
_MINUS: Final = "\u2212"  # a real minus sign, as wide as a plus, for typeset numbers
DASH: Final = "\u2013"  # shown for a value that does not apply


def number(value: float, lang: Lang, *, decimals: int = 0) -> str:
    """`value` with thousands separators: ``44,640.5`` (en) or ``44.640,5`` (da)."""
    text = f"{abs(value):,.{decimals}f}"
    if lang == "da":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return (_MINUS + text) if value < 0 and text.strip("0.,") else text


def percent(fraction: float, lang: Lang, *, decimals: int = 2, trim: bool = False) -> str:
    """A 0..1 fraction as a percentage: ``99.48%`` (en) or ``99,48 %`` (da).

    A fraction below 1 never prints as 100: more decimals are added instead, so 0.99995
    shows as ``99.995%``. With `trim`, trailing zeros go (an objective reads ``99.5%``).
    """
    value = fraction * 100
    while fraction < 1 and round(value, decimals) >= 100 and decimals < 6:
        decimals += 1
    text = number(value, lang, decimals=decimals)
    if trim and decimals:
        text = text.rstrip("0").rstrip(",.")
    return f"{text} %" if lang == "da" else f"{text}%"


def points(delta_fraction: float, lang: Lang) -> str:
    """A change between two fractions in percentage points, signed: ``+0.12 pp``."""
    value = round(delta_fraction * 100, 2)
    sign = "+" if value > 0 else ""
    unit = "pct.-point" if lang == "da" else "pp"
    return f"{sign}{number(value, lang, decimals=2)} {unit}"


def seconds(value: float, lang: Lang, *, trim: bool = False) -> str:
    """A latency in seconds with precision that suits its size: ``0.41 s``, ``28.3 s``.

    With `trim`, a whole number goes without decimals (a configured deadline: ``30 s``).
    """
    decimals = 2 if value < 10 else 1 if value < 100 else 0
    if trim and float(value).is_integer():
        decimals = 0
    return f"{number(value, lang, decimals=decimals)} s"


def duration(total_seconds: float, lang: Lang) -> str:
    """A duration in its two largest units: ``37 min``, ``1 h 15 min`` (da: ``1 t 15 min``).

    Two units are what a reader takes in at a glance; the rest is rounded away.
    """
    remaining = round(total_seconds)
    if remaining <= 0:
        return "0 s"
    hour = "t" if lang == "da" else "h"
    parts: list[str] = []
    for unit, size in (("d", 86400), (hour, 3600), ("min", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count and len(parts) < 2:
            parts.append(f"{number(count, lang)} {unit}")
        elif parts:
            # Stop after the first unit below the largest one, even when it is zero,
            # so 1 d 0 h 5 min reads "1 d", not "1 d 5 min".
            break
    return " ".join(parts)


def month_name(month: str, lang: Lang) -> str:
    """A ``YYYY-MM`` month in words: ``October 2026`` (en) or ``oktober 2026`` (da)."""
    year, number_ = (int(part) for part in month.split("-"))
    names = _MONTHS_DA if lang == "da" else _MONTHS_EN
    return f"{names[number_ - 1]} {year}"


def day(value: date, lang: Lang) -> str:
    """A date: ``7 Oct 2026`` (en) or ``7. okt. 2026`` (da)."""
    if lang == "da":
        return f"{value.day}. {_ABBR_DA[value.month - 1]} {value.year}"
    return f"{value.day} {_MONTHS_EN[value.month - 1][:3]} {value.year}"


def when(stamp: str, lang: Lang, *, exact: bool = True) -> str:
    """An ISO 8601 time as ``7 Oct 2026 02:14`` (en) or ``7. okt. 2026 02:14`` (da).

    `exact` shows seconds when there are any; without it the time is cut to the minute.
    """
    moment = datetime.fromisoformat(stamp)
    return f"{day(moment.date(), lang)} {clock(moment) if exact else f'{moment:%H:%M}'}"


def clock(moment: datetime) -> str:
    """``02:14``, or ``13:05:30`` when the seconds are not zero (they add up in durations)."""
    return f"{moment:%H:%M:%S}" if moment.second else f"{moment:%H:%M}"


def until(start: str, end: str, lang: Lang) -> str:
    """The end of a span: only the clock time when it ends on the day it started."""
    first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return clock(last) if first.date() == last.date() else when(end, lang)
