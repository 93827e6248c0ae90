"""Phrases that the Markdown and the HTML report share, so both word things the same way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from probe.report.models import Incident, MonthlyReport, ReportRow, WrittenNotice
from probe.report.render import formats
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, label, notice_kind, notice_state


def period_line(report: MonthlyReport, lang: Lang) -> str:
    """``Period: 1 Oct 2026 00:00 - 1 Nov 2026 00:00 (745 hours). Times in ...``."""
    parts = []
    if (period := report.period) is not None:
        span = f"{formats.when(period.start, lang)} {DASH} {formats.when(period.end, lang)}"
        span += f" ({formats.number(period.hours, lang)} {label('hours', lang)})"
        parts.append(f"{label('period', lang)}: {span}.")
    if report.timezone:
        parts.append(f"{label('timezone', lang)} {report.timezone}.")
    if report.generated_at:
        parts.append(
            f"{label('generated', lang)} {formats.when(report.generated_at, lang, exact=False)}."
        )
    return " ".join(parts)


def row_title(row: ReportRow, lang: Lang) -> str:
    """``gs-adt → labka``, or ``labka-api (check)`` for a check without a destination."""
    if not row.destination:
        return f"{row.flow} {label('check', lang)}"
    return f"{row.flow} \u2192 {row.destination}"


def destination(row: ReportRow, lang: Lang) -> str:
    """The destination as shown to people: ``(check)`` when there is none."""
    return row.destination or label("check", lang)


def optional_percent(value: float | None, row: ReportRow, lang: Lang) -> str:
    """A percentage, or ``No data`` for a row without data (never 100 %)."""
    if row.without_data or value is None:
        return label("no_data", lang)
    return formats.percent(value, lang)


def optional_duration(value: float | None, lang: Lang) -> str:
    """A duration, or a dash when there is none (MTTR and MTBF without incidents)."""
    return DASH if value is None else formats.duration(value, lang)


def change(row: ReportRow, lang: Lang) -> tuple[str, str] | None:
    """The change against the previous month as text with an arrow, and its tone.

    The tone is ``better``, ``worse`` or ``same``; None when either month has no figure.
    """
    previous = row.previous_month.availability
    if row.without_data or row.availability is None or previous is None:
        return None
    delta = row.availability - previous
    shown = round(delta * 100, 2)
    if shown == 0:
        return f"= {label('unchanged', lang)}", "same"
    arrow, tone = ("\u25b2", "better") if shown > 0 else ("\u25bc", "worse")
    return f"{arrow} {formats.points(delta, lang)}", tone


DEFINITIONS: Final = ("def_availability", "def_time", "def_coverage", "def_incident", "def_budget")
"""The label keys of the plain-language definitions, in the order both formats show them."""

PARTIAL_MARK: Final = "\u25d0"  # a half-filled circle: half of the month measured


def coverage(row: ReportRow, lang: Lang) -> str:
    """The share of the month's scheduled probes that were measured, or a dash if unknown."""
    return DASH if row.coverage is None else formats.percent(row.coverage, lang)


def coverage_detail(row: ReportRow, lang: Lang) -> str:
    """``41,820 of 44,700 scheduled probes``, or "" when the report does not say."""
    if row.measured_slots is None or row.expected_slots is None:
        return ""
    measured = formats.number(row.measured_slots, lang)
    return label(
        "coverage_of", lang, measured=measured, expected=formats.number(row.expected_slots, lang)
    )


def not_measured(row: ReportRow, lang: Lang) -> str:
    """The time not measured as a duration (``2 d``), or a dash if unknown."""
    return optional_duration(row.not_measured_seconds, lang)


def probe_faults(row: ReportRow, lang: Lang) -> str:
    """``2``: results the prober itself failed (counted as not measured); "" when none."""
    if not row.not_measured_probes:
        return ""
    return formats.number(row.not_measured_probes, lang)


def partial_note(row: ReportRow, lang: Lang) -> str:
    """``◐ Partial month: monitoring covered 93.56% of the month (first measured ...)``."""
    text = f"{PARTIAL_MARK} {label('partial_month', lang)}"
    if row.coverage is not None:
        share = formats.percent(row.coverage, lang)
        text += f": {label('covered_share', lang, share=share)}"
    if row.first_measured:
        first = formats.when(row.first_measured, lang, exact=False)
        text += f" ({label('first_measured', lang).lower()} {first})"
    return text + "."


def report_partial_note(report: MonthlyReport, lang: Lang, *, name: Callable[[str], str]) -> str:
    """The banner of a partial month, or "" for a whole one; `name` escapes row titles.

    ``◐ Partial month: monitoring of gs-adt → epm3 covered 93.56% of the month (first
    measured 3 Oct 2026 00:00).`` A month still running says up to when it was measured.
    """
    if not report.partial and not any(row.partial for row in report.rows):
        return ""
    clauses = []
    running = _elapsed_share(report)
    if running is not None and report.period and report.period.measured_until:
        until = formats.when(report.period.measured_until, lang, exact=False)
        share = formats.percent(running, lang, decimals=0)
        clauses.append(label("month_running", lang, until=until, share=share))
    for row in report.rows:
        if not row.partial or row.coverage is None:
            continue
        share = formats.percent(row.coverage, lang)
        clause = label("covered_share_of", lang, row=name(row_title(row, lang)), share=share)
        if row.first_measured:
            first = formats.when(row.first_measured, lang, exact=False)
            clause += f" ({label('first_measured', lang).lower()} {first})"
        clauses.append(clause)
    if not clauses:
        clauses.append(label("partly_unmeasured", lang))
    return f"{PARTIAL_MARK} {label('partial_month', lang)}: {'; '.join(clauses)}."


def _elapsed_share(report: MonthlyReport) -> float | None:
    """The share of the month up to `measured_until`, when that is before the month's end."""
    period = report.period
    if period is None or not period.measured_until:
        return None
    start, end = datetime.fromisoformat(period.start), datetime.fromisoformat(period.end)
    until = datetime.fromisoformat(period.measured_until)
    if until >= end or end <= start:
        return None
    return max(0.0, (until - start) / (end - start))


def incident_end(item: Incident, lang: Lang) -> str:
    """Why an incident's end is where it is, when that is not a recovery: "" otherwise."""
    if item.ongoing:
        return label("ended_open", lang)
    if item.ended_by == "not_measured":
        return label("ended_not_measured", lang)
    return ""


def notice_heading(notice: WrittenNotice) -> str:
    """``Labka receives nothing (#17)``: the number the notes beside incidents refer to."""
    return f"{notice.title} (#{notice.id})"


def notice_facts(notice: WrittenNotice, lang: Lang) -> list[str]:
    """``Incident · Resolved``, what it affects, and when it was opened and closed.

    An announcement not ended shows no state: "active" would be wrong once its planned end
    has passed, and its planned span says when it is for."""
    kind = notice_kind(notice.kind, lang)
    if notice.kind == "incident" or notice.resolved_at is not None:
        kind += f" \u00b7 {notice_state(notice.state, lang)}"
    flows = ", ".join(notice.flows) if notice.flows else label("all_flows", lang)
    facts = [kind, f"{label('affects', lang)}: {flows}"]
    if notice.starts_at is not None or notice.ends_at is not None:
        began = notice.starts_at or notice.created_at
        end = DASH if notice.ends_at is None else formats.until(began, notice.ends_at, lang)
        start = formats.when(began, lang, exact=False)
        facts.append(label("planned_span", lang, start=start, end=end, dash=DASH))
    facts.append(f"{label('opened', lang)}: {formats.when(notice.created_at, lang, exact=False)}")
    if notice.resolved_at is not None:
        closed = formats.when(notice.resolved_at, lang, exact=False)
        facts.append(f"{label('closed', lang)}: {closed}")
    elif notice.ends_at is None:
        facts.append(f"{label('closed', lang)}: {label('still_open', lang)}")
    return facts


def explanation_note(notices: list[WrittenNotice], lang: Lang) -> str:
    """``Written incident: Labka receives nothing (#17)``, or "" when none explains it."""
    if not notices:
        return ""
    return f"{label('explained_by', lang)}: " + "; ".join(notice_heading(n) for n in notices)
