"""Arrival times as destinations report them: ``parse_time("2026-11-26T10:00:00Z")``.

Shared by every transport that reads a destination's own clock (an HTTP reply's
``time_field``, an SQL ``time_column``), so that no transport imports another.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """ISO 8601 text (naive means UTC) or epoch seconds; anything else is ignored."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):  # beyond the platform's dates, or NaN
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
