"""Durations as operators write them: ``500ms``, ``30s``, ``5m``, ``1h``, ``90d``, ``1h30m``.

Every duration is bounded, so none can overflow a ``timedelta`` or a timer later, or make a
loop spin: from `MIN_DURATION` (1ms) to `MAX_DURATION` (366d), `Interval` (a time
between repeated actions) from `MIN_INTERVAL` (10ms), and `LongDuration` up to
`MAX_LONG_DURATION` (3660d).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MIN_DURATION = 0.001  # 1ms: a shorter timeout or window means nothing to a probe
MIN_INTERVAL = 0.01  # 10ms: a shorter interval, poll or flush is a busy loop
MAX_DURATION = 366 * 86400.0  # 366d: a year, leap or not; far below timedelta's limit
MAX_LONG_DURATION = 10 * MAX_DURATION  # 3660d: ten years of raw results, or of maintenance


def parse_duration(
    value: object,
    *,
    allow_zero: bool = False,
    minimum: float = MIN_DURATION,
    maximum: float = MAX_DURATION,
) -> float:
    """Return seconds. ``parse_duration("1h30m") == 5400.0``; a bare number is seconds.

    Outside ``minimum`` to ``maximum`` it raises ``ValueError``, such as "invalid duration
    '400d': must be at most 366d".

    >>> parse_duration("500ms")
    0.5
    """
    seconds = _seconds(value)
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:  # NaN
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    if seconds > maximum:  # also a number of digits beyond any float, read as infinity
        raise ValueError(f"invalid duration {value!r}: must be at most {format_duration(maximum)}")
    if 0 < seconds < minimum:
        raise ValueError(f"invalid duration {value!r}: must be at least {format_duration(minimum)}")
    return seconds


def _seconds(value: object) -> float:
    """The seconds ``value`` spells, unbounded; ``ValueError`` if it spells none."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float, e.g. a YAML number of 400 digits
            seconds = float("inf")
        if seconds in (float("inf"), float("-inf")):
            raise ValueError(f"invalid duration {value!r}")
        return seconds
    if isinstance(value, str) and value.strip():
        return _spelled(value)
    raise ValueError(f"invalid duration {value!r}: use e.g. 30s")


def _spelled(value: str) -> float:
    """``"1h30m"`` as 5400.0: number-unit parts, one after another, nothing else."""
    text = value.strip()
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 90d"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: ``format_duration(90) == "90s"``, ``0.25 -> "250ms"``."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, parsed from ``30s``-style text; 1ms to 366d."""

Interval = Annotated[float, BeforeValidator(partial(parse_duration, minimum=MIN_INTERVAL))]
"""Like `Duration`, for the time between repeated actions (an interval, a poll): 10ms to 366d."""

DurationOrZero = Annotated[
    float, BeforeValidator(partial(parse_duration, allow_zero=True, minimum=0.0))
]
"""Like `Duration`, but from ``0`` (an offset, a delay that may be none): 0 to 366d."""

LongDuration = Annotated[float, BeforeValidator(partial(parse_duration, maximum=MAX_LONG_DURATION))]
"""Like `Duration`, up to `MAX_LONG_DURATION` (3660d) rather than 366d: a retention, a
one-off maintenance window."""
