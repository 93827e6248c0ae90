"""The report as one self-contained HTML page for a hospital management.

The page is opened from an email on a network without internet, and printed: styles and
charts are inline, and it names no URL, script or image. Flow, destination and
maintenance names come from user config, so every string from the report goes through
`html.escape` (`_e`) before it reaches the page.
"""

from __future__ import annotations

from html import escape

from probe.report.models import Incident, MonthlyReport, ReportRow
from probe.report.render import formats, svg
from probe.report.render.formats import DASH
from probe.report.render.i18n import Lang, cause, label
from probe.report.render.style import CSS
from probe.report.render.timeline import explanation_html, written_section
from probe.report.render.wording import (
    DEFINITIONS,
    PARTIAL_MARK,
    change,
    coverage,
    coverage_detail,
    destination,
    incident_end,
    not_measured,
    optional_duration,
    optional_percent,
    partial_note,
    period_line,
    probe_faults,
    report_partial_note,
    row_title,
)


def _e(text: object) -> str:
    """Escape for both element content and quoted attribute values."""
    return escape(str(text), quote=True)


def to_html(report: MonthlyReport, lang: Lang) -> str:
    """The whole page: header, verdict tiles, summary table, one section per row."""
    month = formats.month_name(report.month, lang)
    title = f"{label('title', lang)} {DASH} {month}"
    body = [
        '<header class="report">',
        f'<p class="kicker">{_e(label("title", lang))}</p>',
        f"<h1>{_e(month)}</h1>",
        f'<p class="meta">{_e(period_line(report, lang))}</p>',
        "</header>",
        _banner(report, lang),
        _tiles(report, lang),
        _summary(report, lang),
        _definitions(lang),
        written_section(report, lang),
        *(_section(row, index, report, lang) for index, row in enumerate(report.rows, 1)),
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{_e(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        '<body>\n<main class="page">\n' + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )


def _banner(report: MonthlyReport, lang: Lang) -> str:
    """A partial month, said before any figure: the figures cover only what was measured."""
    text = report_partial_note(report, lang, name=str)
    return f'<p class="banner partial" role="note">{_e(text)}</p>' if text else ""


def _verdict(row: ReportRow) -> str:
    """The CSS class for a row's SLO verdict: met, missed or none (no data / not judged)."""
    if row.without_data or row.slo.met is None:
        return "none"
    return "met" if row.slo.met else "missed"


_SYMBOLS = {"met": "\u2713", "missed": "\u2717", "none": DASH}


def _badge(row: ReportRow, lang: Lang) -> str:
    """The SLO verdict as symbol, word and colour, so it reads without colour too."""
    verdict = _verdict(row)
    words = "no_data" if row.without_data else "not_evaluated" if verdict == "none" else verdict
    text = f"{_SYMBOLS[verdict]} {label(words, lang)}"
    return f'<span class="badge {verdict}">{_e(text)}</span>'


def _tiles(report: MonthlyReport, lang: Lang) -> str:
    """Three counts at the top: how many rows met, missed, or had no data."""
    verdicts = [_verdict(row) for row in report.rows]
    tiles = (
        ("met", label("met", lang)),
        ("missed", label("missed", lang)),
        ("none", label("no_data", lang) + " / " + label("not_evaluated", lang).lower()),
    )
    cells = [
        f'<div class="tile {kind}"><b>{_SYMBOLS[kind]} {verdicts.count(kind)}</b>{_e(text)}</div>'
        for kind, text in tiles
    ]
    return f'<div class="tiles">{"".join(cells)}</div>'


def _summary(report: MonthlyReport, lang: Lang) -> str:
    """The at-a-glance table: one line per flow and destination."""
    heads = [
        ("flow", ""),
        ("destination", ""),
        ("availability", "num"),
        ("time_availability", "num"),
        ("coverage", "num"),
        ("previous", "num"),
        ("objective", "num"),
        ("slo", ""),
        ("latency_p95", "num"),
        ("incidents", "num"),
    ]
    head = "".join(f'<th class="{cls}">{_e(label(key, lang))}</th>' for key, cls in heads)
    lines = []
    for index, row in enumerate(report.rows, 1):
        latency = row.latency_seconds
        cells = [
            f'<td><a href="#row-{index}">{_e(row.flow)}</a></td>',
            f"<td>{_e(destination(row, lang))}</td>",
            _num(optional_percent(row.availability, row, lang)),
            _num(optional_percent(row.time_availability, row, lang)),
            _coverage_cell(row, lang),
            _num(_previous_cell(row, lang)),
            _num(formats.percent(row.slo.objective, lang, trim=True)),
            f"<td>{_badge(row, lang)}</td>",
            _num(DASH if latency is None else formats.seconds(latency.p95, lang)),
            _num(DASH if row.without_data else formats.number(len(row.incidents), lang)),
        ]
        lines.append(f'<tr class="{_verdict(row)}">{"".join(cells)}</tr>')
    return (
        f"<section><h2>{_e(label('summary', lang))}</h2>"
        f'<table class="summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table>"
        f'<p class="note">{_e(label("measured_only", lang))}</p></section>'
    )


def _coverage_cell(row: ReportRow, lang: Lang) -> str:
    """The coverage, marked with a symbol and a word when the row covers part of the month."""
    mark = ""
    if row.partial:
        mark = f' <span class="mark partial">{PARTIAL_MARK} {_e(label("partial", lang))}</span>'
    return f'<td class="num">{_e(coverage(row, lang))}{mark}</td>'


def _num(text: str) -> str:
    """A right-aligned numeric cell."""
    return f'<td class="num">{_e(text)}</td>'


def _previous_cell(row: ReportRow, lang: Lang) -> str:
    previous = row.previous_month.availability
    return DASH if previous is None else formats.percent(previous, lang)


def _section(row: ReportRow, index: int, report: MonthlyReport, lang: Lang) -> str:
    """One flow and destination: key figures, charts, incidents and maintenance."""
    name = row_title(row, lang)
    badges = _badge(row, lang)
    if row.partial:
        text = f"{PARTIAL_MARK} {label('partial_month', lang)}"
        badges = f'<span class="badge partial">{_e(text)}</span> {badges}'
    head = f'<div class="flow-head"><h2>{_e(name)}</h2><span>{badges}</span></div>'
    if row.partial:
        head += f'<p class="partial-note">{_e(partial_note(row, lang))}</p>'
    if row.without_data:
        body = [f'<p class="nodata">{_e(label("no_data_note", lang))}</p>']
        if row.measurement_known:
            body.append(_measurement_line(row, lang))
    else:
        days = report.days()
        daily = row.daily_by_date()
        body = [
            _figures(row, lang),
            _outcomes(row, lang),
            _figure(
                label("daily_availability", lang),
                svg.availability_chart(
                    days, daily, objective=row.slo.objective, lang=lang, name=name
                ),
            ),
            _figure(
                label("daily_latency", lang),
                svg.latency_chart(days, daily, lang=lang, name=name),
            ),
            f"<h3>{_e(label('incidents', lang))}</h3>",
            _incidents(row, report, lang),
        ]
    body.append(_maintenance(row, lang))
    return f'<section class="flow" id="row-{index}">{head}{"".join(body)}</section>'


def _figure(caption: str, chart: str) -> str:
    return f"<figure><figcaption>{_e(caption)}</figcaption>{chart}</figure>"


def _figures(row: ReportRow, lang: Lang) -> str:
    """Eight key figures in a grid: availability, budget, trend, latency, incidents."""
    slo, lat, shift = row.slo, row.latency_seconds, change(row, lang)
    objective = formats.percent(slo.objective, lang, trim=True)
    budget = slo.error_budget_used
    over_budget = budget is not None and budget > 1
    trend, tone = (label("no_data", lang), "") if shift is None else shift
    cells = [
        _tile(
            label("availability", lang),
            optional_percent(row.availability, row, lang),
            sub=f"{label('objective_line', lang)} {objective}",
        ),
        _tile(label("time_availability", lang), optional_percent(row.time_availability, row, lang)),
        _tile(label("coverage", lang), coverage(row, lang), sub=coverage_detail(row, lang)),
        _tile(
            label("not_measured", lang),
            not_measured(row, lang),
            sub=_faults_line(row, lang),
        ),
        _tile(
            label("error_budget", lang),
            DASH if budget is None else formats.percent(budget, lang, decimals=0),
            tone="worse" if over_budget else "",
        ),
        _tile(label("previous", lang), _previous_cell(row, lang), sub=trend, tone=tone),
        _tile(
            label("latency_p95", lang),
            DASH if lat is None else formats.seconds(lat.p95, lang),
            sub=""
            if lat is None
            else f"p50 {formats.seconds(lat.p50, lang)} \u00b7 "
            f"p99 {formats.seconds(lat.p99, lang)}",
        ),
        _tile(label("incidents", lang), formats.number(len(row.incidents), lang)),
        _tile(label("mttr", lang), optional_duration(row.mttr_seconds, lang)),
        _tile(label("mtbf", lang), optional_duration(row.mtbf_seconds, lang)),
    ]
    return f'<dl class="figures">{"".join(cells)}</dl>'


def _faults_line(row: ReportRow, lang: Lang) -> str:
    faults = probe_faults(row, lang)
    return f"{label('probe_faults_short', lang)}: {faults}" if faults else ""


def _measurement_line(row: ReportRow, lang: Lang) -> str:
    """Coverage and time not measured in one line, for a row without any data."""
    parts = [
        f"{label('coverage', lang)} {coverage(row, lang)}",
        f"{label('not_measured', lang)} {not_measured(row, lang)}",
    ]
    if faults := _faults_line(row, lang):
        parts.append(faults)
    items = " \u00b7 ".join(f'<span class="item">{_e(part)}</span>' for part in parts)
    return f'<p class="outcomes">{items}</p>'


def _tile(term: str, value: str, *, sub: str = "", tone: str = "") -> str:
    """One key figure: its name, its value, and an optional smaller line under it."""
    small = f'<small class="{tone}">{_e(sub)}</small>' if sub else ""
    value_class = f' class="{tone}"' if tone and not sub else ""
    return f"<div><dt>{_e(term)}</dt><dd{value_class}>{_e(value)}{small}</dd></div>"


def _outcomes(row: ReportRow, lang: Lang) -> str:
    """Probe counts by outcome in one line, with the probes left out for maintenance."""
    parts = [f"{label('probes', lang)} {formats.number(row.probes, lang)}"]
    parts += [
        f"{cause(name, lang).lower()} {formats.number(count, lang)}" for name, count in row.outcomes
    ]
    parts.append(
        f"{label('excluded', lang).lower()} {formats.number(row.excluded_maintenance, lang)}"
    )
    if (latency := row.latency_seconds) is not None:
        objective = formats.seconds(row.slo.latency_seconds, lang, trim=True)
        maximum = DASH if latency.max is None else formats.seconds(latency.max, lang)
        parts.append(
            f"{label('latency_objective', lang).lower()} {objective}, "
            f"{label('max', lang)} {maximum}"
        )
    # Each item stays on one line, so a wrap never leaves a unit alone at a line start.
    items = " \u00b7 ".join(f'<span class="item">{_e(part)}</span>' for part in parts)
    return f'<p class="outcomes">{items}</p>'


def _incidents(row: ReportRow, report: MonthlyReport, lang: Lang) -> str:
    if not (incidents := row.incidents):
        return f'<p class="muted">{_e(label("no_incidents", lang))}</p>'
    head = "".join(
        f'<th class="{cls}">{_e(label(key, lang))}</th>'
        for key, cls in (("start", ""), ("end", ""), ("duration", "num"), ("cause", ""))
    )
    lines = [
        "<tr>"
        f"<td>{_time(item.start, formats.when(item.start, lang))}</td>"
        f"<td>{_time(item.end, formats.until(item.start, item.end, lang))}"
        f"{_why_end(item, lang)}</td>"
        + _num(optional_duration(item.duration_seconds, lang))
        + f"<td>{_e(cause(item.cause, lang))}{explanation_html(report, row, item, lang)}</td></tr>"
        for item in incidents
    ]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _why_end(item: Incident, lang: Lang) -> str:
    """A note after an incident's end when it did not end in a recovery."""
    why = incident_end(item, lang)
    return f' <small class="muted">({_e(why)})</small>' if why else ""


def _time(stamp: str, text: str) -> str:
    """A `<time>` that shows local wall-clock time but keeps the exact stamp with offset."""
    return f'<time datetime="{_e(stamp)}">{_e(text)}</time>'


def _maintenance(row: ReportRow, lang: Lang) -> str:
    """Maintenance windows, listed because their probes are left out of every figure."""
    title = f"<h3>{_e(label('maintenance', lang))}</h3>"
    if not row.maintenance:
        return f'{title}<p class="muted">{_e(label("no_maintenance", lang))}</p>'
    count = formats.number(row.excluded_maintenance, lang)
    note = f'<p class="muted">{_e(label("maintenance_note", lang, count=count))}</p>'
    head = "".join(f"<th>{_e(label(key, lang))}</th>" for key in ("name", "start", "end"))
    lines = [
        f"<tr><td>{_e(item.name)}</td>"
        f"<td>{_time(item.start, formats.when(item.start, lang))}</td>"
        f"<td>{_time(item.end, formats.until(item.start, item.end, lang))}</td></tr>"
        for item in row.maintenance
    ]
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    return title + note + table


def _definitions(lang: Lang) -> str:
    """Plain-language definitions under the summary: the readers are not SRE engineers."""
    items = "".join(f"<li>{_e(label(key, lang))}</li>" for key in DEFINITIONS)
    title = _e(label("definitions", lang))
    return f'<aside class="definitions"><b>{title}</b><ul>{items}</ul></aside>'
