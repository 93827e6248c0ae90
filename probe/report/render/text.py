"""The report as CSV (for spreadsheets and scripts) and as Markdown (for tickets and wikis).

CSV is machine-friendly on purpose, whatever the language: English snake_case headers,
dot decimals, fractions rather than percentages, empty cells for null, ``true``/``false``
for booleans, and a check's empty destination left empty. Columns added later go at the
end, so a script that reads columns by position keeps working. Markdown is for people and
follows the language like the HTML page does.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Final

from probe.report.models import OUTCOMES, Incident, MonthlyReport, ReportRow, WrittenNotice
from probe.report.render import formats
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, cause, label, notice_state
from probe.report.render.wording import (
    DEFINITIONS,
    change,
    coverage,
    coverage_detail,
    destination,
    explanation_note,
    incident_end,
    not_measured,
    notice_facts,
    notice_heading,
    optional_duration,
    optional_percent,
    partial_note,
    period_line,
    probe_faults,
    report_partial_note,
    row_title,
)

CSV_COLUMNS: Final = (
    "month",
    "flow",
    "destination",
    "probes",
    *OUTCOMES,
    "excluded_maintenance",
    "availability",
    "time_availability",
    "slo_objective",
    "slo_latency_seconds",
    "slo_met",
    "error_budget_used",
    "p50",
    "p95",
    "p99",
    "max",
    "incidents",
    "mttr_seconds",
    "mtbf_seconds",
    "previous_availability",
    "no_data",
    "coverage",
    "expected_slots",
    "measured_slots",
    "measured_seconds",
    "not_measured_seconds",
    "not_measured_probes",
    "partial",
    "first_measured",
)
"""The CSV header, in order. Latencies and durations are in seconds.

``coverage`` is a 0..1 fraction, ``not_measured_probes`` the results the prober itself
failed; both, and the slot and second counts, are empty for a report that predates them.
"""


def to_csv(report: MonthlyReport) -> str:
    """One line per flow and destination under a header line of `CSV_COLUMNS`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        latency = row.latency_seconds
        values: dict[str, object] = {
            "month": report.month,
            "flow": row.flow,
            "destination": row.destination,
            "probes": row.probes,
            **dict(row.outcomes),
            "excluded_maintenance": row.excluded_maintenance,
            "availability": row.availability,
            "time_availability": row.time_availability,
            "slo_objective": row.slo.objective,
            "slo_latency_seconds": row.slo.latency_seconds,
            "slo_met": row.slo.met,
            "error_budget_used": row.slo.error_budget_used,
            "p50": latency and latency.p50,
            "p95": latency and latency.p95,
            "p99": latency and latency.p99,
            "max": latency and latency.max,
            "incidents": len(row.incidents),
            "mttr_seconds": row.mttr_seconds,
            "mtbf_seconds": row.mtbf_seconds,
            "previous_availability": row.previous_month.availability,
            "no_data": row.without_data,
            "coverage": row.coverage,
            "expected_slots": row.expected_slots,
            "measured_slots": row.measured_slots,
            "measured_seconds": row.measured_seconds,
            "not_measured_seconds": row.not_measured_seconds,
            "not_measured_probes": row.not_measured_probes,
            "partial": row.partial,
            "first_measured": row.first_measured,
        }
        writer.writerow([_plain(values[column]) for column in CSV_COLUMNS])
    return out.getvalue()


def _plain(value: object) -> str:
    """A CSV cell: no thousands separators, dot decimals, whole numbers without ``.0``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# CommonMark lets any ASCII punctuation be escaped with a backslash. These are the ones that
# could start markup, raw HTML or an entity, or split a table cell, in a configured name.
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|&~])")


def md_escape(text: str) -> str:
    """`text` as literal Markdown on one line: safe in a table cell or a heading."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def to_markdown(report: MonthlyReport, lang: Lang) -> str:
    """A title, the period, a summary table, then each row's figures and incidents."""
    lines = [
        f"# {label('title', lang)} {DASH} {formats.month_name(report.month, lang)}",
        "",
        period_line(report, lang),
        "",
    ]
    banner = report_partial_note(report, lang, name=md_escape)
    if banner:
        lines += [f"> {banner}", ""]
    lines += [
        f"## {label('summary', lang)}",
        "",
        *_summary_table(report, lang),
        "",
        label("measured_only", lang),
        "",
        f"## {label('definitions', lang)}",
        "",
        *(f"- {label(key, lang)}" for key in DEFINITIONS),
        *_written(report, lang),
    ]
    for row in report.rows:
        details = _row_details(row, lang, report)
        lines += ["", f"## {md_escape(row_title(row, lang))}", "", *details]
    return "\n".join(lines) + "\n"


def met_symbol(row: ReportRow, lang: Lang) -> str:
    """``✓``, ``✗``, ``No data``, or a dash when the SLO was not evaluated."""
    if row.without_data:
        return label("no_data", lang)
    if row.slo.met is None:
        return DASH
    return "\u2713" if row.slo.met else "\u2717"


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line(header), line(align), *(line(cells) for cells in rows)]


def _summary_table(report: MonthlyReport, lang: Lang) -> list[str]:
    keys = ("flow", "destination", "availability", "time_availability", "coverage")
    header = [label(key, lang) for key in (*keys, "objective", "met", "latency_p95", "incidents")]
    body = []
    for row in report.rows:
        latency = row.latency_seconds
        body.append(
            [
                md_escape(row.flow),
                md_escape(destination(row, lang)),
                optional_percent(row.availability, row, lang),
                optional_percent(row.time_availability, row, lang),
                _coverage_cell(row, lang),
                formats.percent(row.slo.objective, lang, trim=True),
                met_symbol(row, lang),
                DASH if latency is None else formats.seconds(latency.p95, lang),
                DASH if row.without_data else formats.number(len(row.incidents), lang),
            ]
        )
    align = ["---", "---", "---:", "---:", "---:", "---:", ":---:", "---:", "---:"]
    return _table(header, align, body)


def _coverage_cell(row: ReportRow, lang: Lang) -> str:
    """The coverage, with a word after it when the row covers only part of the month."""
    text = coverage(row, lang)
    return f"{text} ({label('partial', lang)})" if row.partial else text


def _measurement(row: ReportRow, lang: Lang) -> list[str]:
    """Coverage, time not measured and probe faults, as list items; none in an old report."""
    if not row.measurement_known:
        return []
    detail = coverage_detail(row, lang)
    lines = [
        f"- {label('coverage', lang)}: {coverage(row, lang)}" + (f" ({detail})" if detail else "")
    ]
    lines.append(f"- {label('not_measured', lang)}: {not_measured(row, lang)}")
    faults = probe_faults(row, lang)
    if faults:
        lines.append(f"- {label('probe_faults', lang)}: {faults}")
    return lines


def _row_details(row: ReportRow, lang: Lang, report: MonthlyReport) -> list[str]:
    head = [f"> {partial_note(row, lang)}", ""] if row.partial else []
    if row.without_data:
        measured = _measurement(row, lang)
        return [*head, label("no_data_note", lang), *(["", *measured] if measured else [])]
    lines = [*head, f"- {label('probes', lang)}: {formats.number(row.probes, lang)}"]
    outcomes = ", ".join(
        f"{cause(name, lang).lower()} {formats.number(count, lang)}" for name, count in row.outcomes
    )
    lines.append(f"- {label('outcomes', lang)}: {outcomes}")
    if (latency := row.latency_seconds) is not None:
        values = [("p50", latency.p50), ("p95", latency.p95), ("p99", latency.p99)]
        if latency.max is not None:
            values.append((label("max", lang), latency.max))
        text = ", ".join(f"{name} {formats.seconds(value, lang)}" for name, value in values)
        lines.append(f"- {label('latency', lang)}: {text}")
    objective = formats.seconds(row.slo.latency_seconds, lang, trim=True)
    lines.append(f"- {label('latency_objective', lang)}: {objective}")
    lines += _measurement(row, lang)
    for key, value in (("mttr", row.mttr_seconds), ("mtbf", row.mtbf_seconds)):
        lines.append(f"- {label(key, lang)}: {optional_duration(value, lang)}")
    shift = change(row, lang)
    if shift is None or row.previous_month.availability is None:
        lines.append(f"- {label('previous', lang)}: {label('no_data', lang)}")
    else:
        previous = formats.percent(row.previous_month.availability, lang)
        lines.append(f"- {label('previous', lang)}: {previous} ({shift[0]})")
    lines += ["", f"### {label('incidents', lang)}", ""]
    lines += _incident_table(row, lang, report)
    lines += ["", f"### {label('maintenance', lang)}", ""]
    lines += _maintenance_table(row, lang)
    return lines


def _incident_table(row: ReportRow, lang: Lang, report: MonthlyReport) -> list[str]:
    if not row.incidents:
        return [label("no_incidents", lang)]
    header = [label(key, lang) for key in ("start", "end", "duration", "cause")]
    body = [
        [
            formats.when(item.start, lang),
            _incident_end(item, lang),
            optional_duration(item.duration_seconds, lang),
            md_escape(_cause_and_note(row, item, lang, report)),
        ]
        for item in row.incidents
    ]
    return _table(header, ["---", "---", "---:", "---"], body)


def _cause_and_note(row: ReportRow, item: Incident, lang: Lang, report: MonthlyReport) -> str:
    """The cause, and the written incidents that explain it (a Markdown table cell)."""
    note = explanation_note(report.explaining(row, item), lang)
    return f"{cause(item.cause, lang)} ({note})" if note else cause(item.cause, lang)


def _incident_end(item: Incident, lang: Lang) -> str:
    end, why = formats.until(item.start, item.end, lang), incident_end(item, lang)
    return f"{end} ({why})" if why else end


def _maintenance_table(row: ReportRow, lang: Lang) -> list[str]:
    """The windows left out of the figures, under a line saying how many probes that was."""
    if not row.maintenance:
        return [label("no_maintenance", lang)]
    count = formats.number(row.excluded_maintenance, lang)
    header = [label(key, lang) for key in ("name", "start", "end")]
    body = [
        [
            md_escape(item.name),
            formats.when(item.start, lang),
            formats.until(item.start, item.end, lang),
        ]
        for item in row.maintenance
    ]
    return [label("maintenance_note", lang, count=count), "", *_table(header, ["---"] * 3, body)]


# What could start a block when it opens a line: a heading, a list item, a setext line.
_MD_BLOCK: Final = re.compile(r"^([#+=-])|^(\d+)([.)])")


def md_text(text: str) -> list[str]:
    """Plain text (several lines) as literal Markdown in a block quote, its line breaks kept:
    nothing in it is read as markup, a link or HTML."""
    lines = [line.strip() for line in text.split("\n")]
    out = []
    for index, line in enumerate(lines):
        if not line:
            out.append(">")
            continue
        escaped = _MD_BLOCK.sub(_escape_block, _MD_SPECIAL.sub(r"\\\1", line))
        more = index + 1 < len(lines) and lines[index + 1]
        out.append(f"> {escaped}" + ("\\" if more else ""))  # a backslash: a hard break
    return out


def _escape_block(found: re.Match[str]) -> str:
    if found.group(1):
        return "\\" + found.group(1)
    return f"{found.group(2)}\\{found.group(3)}"


def _written(report: MonthlyReport, lang: Lang) -> list[str]:
    """The written incidents and announcements, each with its timeline; none in a report
    made before they were."""
    if report.notices is None:
        return []
    intro = label("written_note" if report.notices else "no_written", lang)
    lines = ["", f"## {label('written_incidents', lang)}", "", intro]
    for notice in report.notices:
        lines += ["", f"### {md_escape(notice_heading(notice))}", ""]
        lines += [f"- {md_escape(fact)}" for fact in notice_facts(notice, lang)]
        lines += _timeline(notice, lang)
    return lines


def _timeline(notice: WrittenNotice, lang: Lang) -> list[str]:
    lines = ["", f"{label('timeline', lang)}:"]
    for update in notice.updates:
        when = f"{formats.when(update.at, lang, exact=False)} {DASH} "
        lines += ["", f"**{md_escape(when + notice_state(update.state, lang))}**"]
        if update.body_text:
            lines += ["", *md_text(update.body_text)]
    return lines
