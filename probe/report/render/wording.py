"""Phrases that the Markdown and the HTML report share, so both word things the same way."""

from __future__ import annotations

from probe.report.render import formats
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, label
from probe.report.render.view import Report, Row


def period_line(report: Report, lang: Lang) -> str:
    """``Period: 1 Oct 2026 00:00 - 1 Nov 2026 00:00 (745 hours). Times in ...``."""
    parts = []
    if report.period_start and report.period_end:
        span = f"{formats.when(report.period_start, lang)} {DASH} "
        span += formats.when(report.period_end, lang)
        if report.period_hours is not None:
            span += f" ({formats.number(report.period_hours, lang)} {label('hours', lang)})"
        parts.append(f"{label('period', lang)}: {span}.")
    if report.timezone:
        parts.append(f"{label('timezone', lang)} {report.timezone}.")
    if report.generated_at:
        parts.append(
            f"{label('generated', lang)} {formats.when(report.generated_at, lang, exact=False)}."
        )
    return " ".join(parts)


def row_title(row: Row, lang: Lang) -> str:
    """``gs-adt → labka``, or ``labka-api (check)`` for a check without a destination."""
    if not row.destination:
        return f"{row.flow} {label('check', lang)}"
    return f"{row.flow} \u2192 {row.destination}"


def destination(row: Row, lang: Lang) -> str:
    """The destination as shown to people: ``(check)`` when there is none."""
    return row.destination or label("check", lang)


def optional_percent(value: float | None, row: Row, lang: Lang) -> str:
    """A percentage, or ``No data`` for a row without data (never 100 %)."""
    if row.no_data or value is None:
        return label("no_data", lang)
    return formats.percent(value, lang)


def optional_duration(value: float | None, lang: Lang) -> str:
    """A duration, or a dash when there is none (MTTR and MTBF without incidents)."""
    return DASH if value is None else formats.duration(value, lang)


def change(row: Row, lang: Lang) -> tuple[str, str] | None:
    """The change against the previous month as text with an arrow, and its tone.

    The tone is ``better``, ``worse`` or ``same``; None when either month has no figure.
    """
    if row.no_data or row.availability is None or row.previous_availability is None:
        return None
    delta = row.availability - row.previous_availability
    shown = round(delta * 100, 2)
    if shown == 0:
        return f"= {label('unchanged', lang)}", "same"
    arrow, tone = ("\u25b2", "better") if shown > 0 else ("\u25bc", "worse")
    return f"{arrow} {formats.points(delta, lang)}", tone
