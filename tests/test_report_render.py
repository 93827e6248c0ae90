"""The monthly report renderers: JSON, CSV, Markdown and HTML, in Danish and English.

The HTML page is also drawn by a real headless Chromium, as a hospital's browser would.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from probe.report.models import MonthlyReport
from probe.report.render import CSV_COLUMNS, FORMATS, LANGS, render
from probe.report.render import formats as fmt

SAMPLE = Path(__file__).parent / "data" / "report" / "sample-2026-10.json"
SCRIPT = Path(__file__).parent.parent / "scripts" / "screenshot_report.py"
Report = dict[str, Any]


@pytest.fixture
def sample() -> Report:
    data: Report = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def _section(page: str, index: int) -> str:
    """The HTML of the index-th (1-based) flow section."""
    match = re.search(rf'<section class="flow" id="row-{index}">(.*?)</section>', page, re.S)
    assert match, f"no section row-{index}"
    return match.group(1)


def _summary_line(page: str, index: int) -> str:
    """The index-th (1-based) line of the summary table's body."""
    body = re.search(r'<table class="summary">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body
    return re.findall(r"<tr.*?</tr>", body.group(1), re.S)[index - 1]


# --- every format -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("form", FORMATS)
def test_every_format_renders_the_sample(sample: Report, form: Any, lang: Any) -> None:
    text = render(sample, fmt=form, lang=lang)
    assert text.strip()
    assert "gs-adt" in text


@pytest.mark.parametrize("form", [f for f in FORMATS if f != "json"])  # json: the dict as is
def test_the_model_renders_as_the_json_it_was_read_from(sample: Report, form: Any) -> None:
    model = MonthlyReport.model_validate(sample)
    for lang in LANGS:
        assert render(model, fmt=form, lang=lang) == render(sample, fmt=form, lang=lang)


def test_a_newer_report_with_more_keys_still_renders(sample: Report) -> None:
    """A key is only ever added: a renderer reads past one it does not know."""
    sample["added"] = {"later": True}
    sample["rows"][0]["added"] = 1
    sample["rows"][0]["incidents"][0]["added"] = None
    assert "| 7 Oct 2026 02:14 | 02:51 | 37 min | Lost |" in render(sample, fmt="md")


def test_a_report_that_breaks_the_contract_is_a_value_error(sample: Report) -> None:
    sample["rows"][0]["availability"] = "high"
    with pytest.raises(ValueError, match="availability"):
        render(sample, fmt="html")


def test_json_round_trips(sample: Report) -> None:
    assert json.loads(render(sample, fmt="json")) == sample
    assert "\\u" not in render(sample, fmt="json")  # ensure_ascii=False: æøå stay readable


@pytest.mark.parametrize(
    ("form", "lang", "message"),
    [
        pytest.param("pdf", "en", "unknown report format 'pdf'", id="format"),
        pytest.param("md", "de", "unknown report language 'de'", id="language"),
    ],
)
def test_unknown_format_or_language(sample: Report, form: Any, lang: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render(sample, fmt=form, lang=lang)


# --- CSV ----------------------------------------------------------------------------------


def test_csv_has_a_header_and_one_line_per_flow_and_destination(sample: Report) -> None:
    reader = csv.DictReader(io.StringIO(render(sample, fmt="csv", lang="da")))
    rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    assert [(r["flow"], r["destination"]) for r in rows] == [
        ("gs-adt", "labka"),
        ("gs-adt", "epm3"),
        ("labka-api", ""),
    ]
    labka = rows[0]
    assert labka["month"] == "2026-10"
    assert labka["probes"] == "44640"  # no thousands separator, whatever the language
    assert labka["lost"] == "80"
    assert labka["availability"] == "0.9948"  # dot decimals, a fraction
    assert labka["slo_met"] == "false"
    assert labka["error_budget_used"] == "1.04"
    assert labka["p95"] == "1.204"
    assert labka["incidents"] == "3"
    assert labka["mttr_seconds"] == "2310"
    assert labka["previous_availability"] == "0.9987"
    assert rows[1]["previous_availability"] == ""
    assert rows[1]["mtbf_seconds"] == ""


def test_csv_leaves_a_month_without_data_empty_not_full(sample: Report) -> None:
    row = list(csv.DictReader(io.StringIO(render(sample, fmt="csv"))))[2]
    assert row["no_data"] == "true"
    assert row["availability"] == row["time_availability"] == row["slo_met"] == ""
    assert row["p50"] == row["max"] == ""


# --- Markdown -----------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table line, splitting on pipes that are not escaped."""
    assert line.startswith("|")
    assert line.endswith("|")
    return re.split(r"(?<!\\)\|", line[1:-1])


def _tables(markdown: str) -> list[list[str]]:
    """Each run of consecutive lines starting with a pipe."""
    tables: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous:
                tables.append([])
            tables[-1].append(line)
        previous = line.startswith("|")
    return tables


@pytest.mark.parametrize("lang", LANGS)
def test_markdown_tables_have_header_separator_and_even_columns(sample: Report, lang: Any) -> None:
    sample["rows"][0]["flow"] = "gs|adt"  # a pipe in a name must not add a column
    markdown = render(sample, fmt="md", lang=lang)
    tables = _tables(markdown)
    assert len(tables) >= 3  # summary, incidents, maintenance
    summary = tables[0]
    assert len(summary) == 2 + len(sample["rows"])
    for table in tables:
        width = len(_cells(table[0]))
        assert all(re.fullmatch(r" :?-{3,}:? ", cell) for cell in _cells(table[1]))
        assert all(len(_cells(line)) == width for line in table)
    assert len(_cells(summary[0])) == 9
    assert "gs\\|adt" in summary[2]


def test_markdown_labels_and_numbers_follow_the_language(sample: Report) -> None:
    english, danish = render(sample, fmt="md", lang="en"), render(sample, fmt="md", lang="da")
    assert english.startswith("# Monthly integration report")
    assert "| 99.48% |" in english
    assert "| No data |" in english
    assert "(check)" in english
    assert "44,640" in english
    assert "| 7 Oct 2026 02:14 | 02:51 | 37 min | Lost |" in english
    assert "| 99,48 % |" in danish
    assert "| Ingen data |" in danish
    assert "(tjek)" in danish
    assert "44.640" in danish
    assert "| 7. okt. 2026 02:14 | 02:51 | 37 min | Tabt |" in danish
    assert "1 t 15 min" in danish


def test_markdown_escapes_markup_in_names(sample: Report) -> None:
    sample["rows"][0]["flow"] = "<b>x</b>&*"
    markdown = render(sample, fmt="md")
    assert "<b>" not in markdown
    assert r"\<b\>x\</b\>\&\*" in markdown


# --- HTML ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_html_is_one_self_contained_page(sample: Report, lang: Any) -> None:
    page = render(sample, fmt="html", lang=lang)
    assert page.startswith("<!DOCTYPE html>")
    assert f'<html lang="{lang}">' in page
    assert '<meta charset="utf-8">' in page
    assert "@page { size: A4; margin: 15mm; }" in page
    assert "<table" in page
    lowered = page.lower()
    for outside in ("http://", "https://", "src=", "<script", "<link", "@import", "url("):
        assert outside not in lowered, outside


def test_html_draws_charts_for_every_row_with_data(sample: Report) -> None:
    page = render(sample, fmt="html")
    for index, row in enumerate(sample["rows"], 1):
        charts = _section(page, index).count("<svg")
        assert charts == (0 if row["no_data"] else 2), row["flow"]


def test_html_escapes_names_from_the_config(sample: Report) -> None:
    sample["rows"][0]["flow"] = "<b>x</b>&"
    sample["rows"][0]["maintenance"][0]["name"] = '"><script>'
    page = render(sample, fmt="html")
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in page
    assert "<script" not in page
    assert "&quot;&gt;&lt;script&gt;" in page


@pytest.mark.parametrize(("lang", "words"), [("en", "No data"), ("da", "Ingen data")])
def test_html_row_without_data_says_so_and_never_100(sample: Report, lang: Any, words: str) -> None:
    page = render(sample, fmt="html", lang=lang)
    for part in (_section(page, 3), _summary_line(page, 3)):
        assert words in part
        assert "100" not in part


def test_null_availability_is_no_data_even_without_the_flag(sample: Report) -> None:
    """A renderer must not trust a missing flag: null availability is never shown as 100 %."""
    sample["rows"][2]["no_data"] = False
    page = render(sample, fmt="html")
    assert "No data" in _summary_line(page, 3)
    assert "100" not in _section(page, 3)
    summary = _tables(render(sample, fmt="md"))[0]
    assert "| labka-api | (check) | No data | No data |" in summary[-1]


def test_html_numbers_follow_the_language(sample: Report) -> None:
    english, danish = render(sample, fmt="html", lang="en"), render(sample, fmt="html", lang="da")
    assert "99.48%" in english
    assert "44,640" in english
    assert "7 Oct 2026 02:14" in english
    assert "1 h 15 min" in english
    assert "99,48 %" in danish
    assert "44.640" in danish
    assert "7. okt. 2026 02:14" in danish
    assert "1 t 15 min" in danish
    for label in ("Tilgængelighed", "Hændelser", "Vedligehold", "Forsinkelse", "Mål opfyldt"):
        assert label in danish
    assert "Mål ikke opfyldt" in danish
    for english_only in ("Availability", "Incidents", "Maintenance", "No data"):
        assert english_only not in danish


def test_html_marks_slo_with_a_symbol_and_a_word_not_colour_alone(sample: Report) -> None:
    page = render(sample, fmt="html")
    assert '<span class="badge missed">\u2717 Objective missed</span>' in _summary_line(page, 1)
    assert '<span class="badge met">\u2713 Objective met</span>' in _summary_line(page, 2)


def test_html_chart_leaves_days_without_data_as_gaps(sample: Report) -> None:
    """Days missing from `daily`, or with null figures, are gaps: no point is drawn at 100 %."""
    row = sample["rows"][0]
    row["daily"] = [day for day in row["daily"] if day["date"] != "2026-10-15"]
    row["daily"][29]["availability"] = None  # 31 Oct: measured, but all of it in maintenance
    section = _section(render(sample, fmt="html"), 1)
    availability = section.split("<svg")[1]
    assert availability.count('class="gap"') == 2 + 1  # 15 and 31 Oct, plus the legend swatch
    assert 'class="unmeasured"' not in availability  # both days are unknown, not unmeasured
    assert availability.count("<polyline") == 2  # the line breaks at the 15th
    markers = availability.count("<circle") + availability.count("<path")
    # 31 days less 2 gaps, plus the legend's diamond and its hollow "partly measured" circle.
    assert markers == 29 + 2


# --- coverage, partial months and time not measured ---------------------------------------

_NEW_ROW_KEYS = (
    "coverage",
    "expected_slots",
    "measured_slots",
    "measured_seconds",
    "not_measured_seconds",
    "not_measured_probes",
    "partial",
    "first_measured",
)


def _old(report: Report) -> Report:
    """`report` as a producer before coverage wrote it: none of the measurement keys."""
    report.pop("partial")
    report["period"].pop("measured_until")
    for row in report["rows"]:
        for key in _NEW_ROW_KEYS:
            row.pop(key)
        for day in row["daily"]:
            day.pop("coverage")
            day.pop("not_measured_seconds")
        for incident in row["incidents"]:
            incident.pop("ended_by")
    return report


def _x(index: int) -> float:
    """The x of the index-th (0-based) day of a 31-day chart, as `svg._Plot` computes it."""
    return round(58 + (720 - 58 - 14) / 31 * (index + 0.5), 1)


def test_csv_appends_the_measurement_columns_after_the_old_ones() -> None:
    assert CSV_COLUMNS[:4] == ("month", "flow", "destination", "probes")
    assert CSV_COLUMNS.index("no_data") == 24  # where the last of the old columns was
    assert CSV_COLUMNS[25:] == _NEW_ROW_KEYS


@pytest.mark.parametrize("lang", LANGS)
def test_csv_shows_coverage_not_measured_and_partial(sample: Report, lang: Any) -> None:
    labka, epm3, api = csv.DictReader(io.StringIO(render(sample, fmt="csv", lang=lang)))
    assert (labka["coverage"], labka["not_measured_seconds"]) == ("0.9987", "3600")
    assert (labka["not_measured_probes"], labka["partial"]) == ("2", "false")
    assert (epm3["coverage"], epm3["not_measured_seconds"]) == ("0.9356", "172800")
    assert (epm3["expected_slots"], epm3["measured_slots"]) == ("44700", "41820")
    assert (epm3["not_measured_probes"], epm3["partial"]) == ("0", "true")
    assert epm3["first_measured"] == "2026-10-03T00:00:00+02:00"
    assert (api["coverage"], api["not_measured_seconds"], api["first_measured"]) == (
        "0",
        "2682000",
        "",
    )


@pytest.mark.parametrize(
    ("lang", "summary", "coverage", "not_measured", "note"),
    [
        pytest.param(
            "en",
            "| gs-adt | epm3 | 99.99% | 99.995% | 93.56% (partial) |",
            "- Coverage: 93.56% (41,820 of 44,700 scheduled probes)",
            "- Not measured: 2 d",
            "> \u25d0 Partial month: monitoring covered 93.56% of the month "
            "(first measured 3 Oct 2026 00:00).",
            id="en",
        ),
        pytest.param(
            "da",
            "| gs-adt | epm3 | 99,99 % | 99,995 % | 93,56 % (delvis) |",
            "- Dækning: 93,56 % (41.820 af 44.700 planlagte målinger)",
            "- Ikke målt: 2 d",
            "> \u25d0 Delvis måned: overvågningen dækkede 93,56 % af måneden "
            "(først målt 3. okt. 2026 00:00).",
            id="da",
        ),
    ],
)
def test_markdown_shows_coverage_not_measured_and_the_partial_row(
    sample: Report, lang: Any, summary: str, coverage: str, not_measured: str, note: str
) -> None:
    markdown = render(sample, fmt="md", lang=lang)
    table = _tables(markdown)[0]
    assert table[3].startswith(summary)
    assert "(partial)" not in table[2]
    assert "(delvis)" not in table[2]  # the whole month: no marker
    epm3 = markdown.split("## gs-adt \u2192 epm3")[1].split("\n## ")[0]
    for line in (coverage, not_measured, note):
        assert line in epm3.splitlines(), line
    labka = markdown.split("## gs-adt \u2192 labka")[1].split("\n## ")[0]
    assert "\u25d0" not in labka
    assert ("- Not measured: 1 h" if lang == "en" else "- Ikke målt: 1 t") in labka.splitlines()


@pytest.mark.parametrize(
    ("lang", "banner", "measured_only"),
    [
        pytest.param(
            "en",
            "\u25d0 Partial month: monitoring of gs-adt \u2192 epm3 covered 93.56% of the month "
            "(first measured 3 Oct 2026 00:00).",
            "Time availability is computed over measured time only",
            id="en",
        ),
        pytest.param(
            "da",
            "\u25d0 Delvis måned: overvågningen af gs-adt \u2192 epm3 dækkede 93,56 % af "
            "måneden (først målt 3. okt. 2026 00:00).",
            "Tidsbaseret tilgængelighed er kun beregnet over den målte tid",
            id="da",
        ),
    ],
)
@pytest.mark.parametrize("form", ["md", "html"])
def test_partial_month_banner_and_measured_time_only(
    sample: Report, form: Any, lang: Any, banner: str, measured_only: str
) -> None:
    text = render(sample, fmt=form, lang=lang)
    assert banner in text
    assert measured_only in text
    assert text.index(banner) < text.index(measured_only)  # the banner comes first


@pytest.mark.parametrize(
    ("lang", "coverage", "not_measured", "partial_month", "partial"),
    [
        ("en", "Coverage", "Not measured", "Partial month", "partial"),
        ("da", "Dækning", "Ikke målt", "Delvis måned", "delvis"),
    ],
)
def test_html_shows_coverage_not_measured_and_the_partial_row(
    sample: Report, lang: Any, coverage: str, not_measured: str, partial_month: str, partial: str
) -> None:
    page = render(sample, fmt="html", lang=lang)
    pct = "93.56%" if lang == "en" else "93,56 %"
    mark = f'<span class="mark partial">\u25d0 {partial}</span>'
    assert f"{pct}{mark}" in _summary_line(page, 2).replace(" <span", "<span")
    assert "partial" not in _summary_line(page, 1)
    epm3, labka = _section(page, 2), _section(page, 1)
    assert f'<span class="badge partial">\u25d0 {partial_month}</span>' in epm3
    assert f"<dt>{coverage}</dt><dd>{pct}<small" in epm3
    assert f"<dt>{not_measured}</dt><dd>2 d</dd>" in epm3
    assert 'class="badge partial"' not in labka
    assert f"<dt>{not_measured}</dt><dd>1 {'h' if lang == 'en' else 't'}<small" in labka
    faults = "Probe faults: 2" if lang == "en" else "Fejl i måleren: 2"
    assert faults in labka
    zero = "0.00%" if lang == "en" else "0,00 %"
    assert f"{coverage} {zero}" in _section(page, 3)  # no data: still says how little was measured


def test_html_chart_hatches_days_not_measured_and_never_draws_them_at_0(sample: Report) -> None:
    # A producer that wrote 0 for a day it never measured must not get a point at 0 % either.
    sample["rows"][1]["daily"][0]["availability"] = 0.0
    section = _section(render(sample, fmt="html"), 2)
    availability, latency = section.split("<svg")[1:3]
    assert availability.count('<g class="unmeasured">') == 2 + 1  # 1 and 2 Oct, and the legend
    assert latency.count('<g class="unmeasured">') == 2 + 1
    assert "<title>Not measured</title>" in availability
    assert '<text x="14" y="4">Not measured</text>' in availability  # a legend entry
    assert 'class="gap"' not in availability  # not measured is not the same as no data
    for day in (0, 1):
        assert f'cx="{_x(day)}"' not in availability
        assert f"M{_x(day)} " not in availability
    assert ">0.0%<" not in availability  # the axis was not stretched down to a 0 % point
    assert ">98.5%<" in availability


def test_html_chart_draws_a_partly_measured_day_hollow(sample: Report) -> None:
    availability = _section(render(sample, fmt="html", lang="da"), 1).split("<svg")[1]
    # 14 Oct lost an hour: its point is hollow, with the day's coverage as its tooltip.
    assert re.search(
        rf'<circle cx="{_x(13)}" cy="[\d.]+" r="3" fill="#fff" stroke="#0b5394" '
        r'stroke-width="1.5" class="partly"><title>Delvist målt: 95,83 %</title></circle>',
        availability,
    )
    assert availability.count('class="partly"') == 1 + 1  # the day, and the legend's circle
    assert '<text x="14" y="4">Delvist målt</text>' in availability


@pytest.mark.parametrize("lang", LANGS)
def test_an_old_report_without_the_new_keys_still_renders(sample: Report, lang: Any) -> None:
    old = _old(sample)
    markdown, page = render(old, fmt="md", lang=lang), render(old, fmt="html", lang=lang)
    for text in (markdown, page):
        assert "\u25d0" not in text  # unknown is not partial
        assert not re.search(r"(Coverage|Dækning):? \d", text)  # nor shown as 0 % or 100 %
    coverage = 4  # the column after time availability
    assert _cells(_tables(markdown)[0][2])[coverage] == f" {fmt.DASH} "
    assert "(partial)" not in markdown
    assert "(delvis)" not in markdown
    assert 'class="banner' not in page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _summary_line(page, 2))
    assert cells[coverage] == fmt.DASH
    availability = _section(render(old, fmt="html"), 2).split("<svg")[1]
    assert ">98.5%<" in availability
    # Without coverage, a day with no probes at all (1 and 2 Oct) still reads as not measured.
    assert availability.count('<g class="unmeasured">') == 2 + 1
    line = next(csv.DictReader(io.StringIO(render(old, fmt="csv"))))
    assert line["coverage"] == line["not_measured_probes"] == line["not_measured_seconds"] == ""
    assert (line["partial"], line["probes"]) == ("false", "44640")


@pytest.mark.parametrize(
    ("lang", "line"),
    [
        ("en", "- Probe faults (counted as not measured): 2"),
        ("da", "- Fejl i måleren (tæller som ikke målt): 2"),
    ],
)
def test_probe_faults_are_listed_as_not_measured(sample: Report, lang: Any, line: str) -> None:
    assert line in render(sample, fmt="md", lang=lang).splitlines()
    first = next(csv.DictReader(io.StringIO(render(sample, fmt="csv"))))
    assert first["not_measured_probes"] == "2"


def test_an_old_report_marks_no_incident_end(sample: Report) -> None:
    """Without "ended_by" an incident is not called open: only the contract's null says so."""
    markdown = render(_old(sample), fmt="md")
    assert "| 7 Oct 2026 02:14 | 02:51 | 37 min | Lost |" in markdown
    assert "still open" not in markdown


@pytest.mark.parametrize(
    ("lang", "stopped", "still_open"),
    [("en", "measurement stopped", "still open"), ("da", "målingen stoppede", "stadig åben")],
)
def test_incident_ends_say_when_measurement_stopped(
    sample: Report, lang: Any, stopped: str, still_open: str
) -> None:
    incidents = sample["rows"][0]["incidents"]
    incidents[0]["ended_by"] = "not_measured"
    incidents[2]["ended_by"] = None
    markdown = render(sample, fmt="md", lang=lang)
    assert f"| 02:51 ({stopped}) |" in markdown
    assert f"| 09:55 ({still_open}) |" in markdown
    assert "| 13:05:30 |" in markdown  # recovered: nothing added
    page = _section(render(sample, fmt="html", lang=lang), 1)
    assert f'<small class="muted">({stopped})</small>' in page
    assert f'<small class="muted">({still_open})</small>' in page


@pytest.mark.parametrize(
    ("lang", "banner"),
    [
        (
            "en",
            "\u25d0 Partial month: the month had not ended when the report was generated: "
            "measured until 15 Oct 2026 12:00 (47% of the month).",
        ),
        (
            "da",
            "\u25d0 Delvis måned: måneden var ikke slut, da rapporten blev dannet: "
            "målt indtil 15. okt. 2026 12:00 (47 % af måneden).",
        ),
    ],
)
def test_a_running_month_says_up_to_when_it_was_measured(
    sample: Report, lang: Any, banner: str
) -> None:
    sample["period"]["measured_until"] = "2026-10-15T12:00:00+02:00"
    sample["rows"] = [sample["rows"][0]]  # a whole row: only the month is partial
    assert banner in render(sample, fmt="md", lang=lang)
    assert banner in render(sample, fmt="html", lang=lang)


@pytest.mark.parametrize(
    ("lang", "wrong", "right"),
    [("en", "deadline", "latency objective 30 s"), ("da", "frist", "forsinkelsesmål 30 s")],
)
def test_the_latency_slo_is_an_objective_not_the_deadline(
    sample: Report, lang: Any, wrong: str, right: str
) -> None:
    """The deadline is the probe's timeout; the latency SLO is what makes a probe late."""
    page, markdown = render(sample, fmt="html", lang=lang), render(sample, fmt="md", lang=lang)
    assert wrong not in page.lower()
    assert wrong not in markdown.lower()
    assert right in _section(page, 1)
    objective = "- Latency objective: 30 s" if lang == "en" else "- Forsinkelsesmål: 30 s"
    assert objective in markdown.splitlines()


def test_danish_pages_use_no_english_measurement_words(sample: Report) -> None:
    danish = render(sample, fmt="html", lang="da") + render(sample, fmt="md", lang="da")
    for english in ("Coverage", "Not measured", "Partial", "partial)", "Probe faults", "scheduled"):
        assert english not in danish, english


# --- formatters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "english", "danish"),
    [
        pytest.param(lambda lang: fmt.percent(0.9948, lang), "99.48%", "99,48 %", id="percent"),
        pytest.param(lambda lang: fmt.percent(0.99995, lang), "99.995%", "99,995 %", id="not-100"),
        pytest.param(lambda lang: fmt.percent(1.0, lang), "100.00%", "100,00 %", id="full"),
        pytest.param(
            lambda lang: fmt.percent(0.995, lang, trim=True), "99.5%", "99,5 %", id="trim"
        ),
        pytest.param(lambda lang: fmt.number(44640, lang), "44,640", "44.640", id="thousands"),
        pytest.param(lambda lang: fmt.points(-0.0039, lang), "\u22120.39 pp", None, id="pp"),
        pytest.param(lambda lang: fmt.seconds(1.204, lang), "1.20 s", "1,20 s", id="seconds"),
        pytest.param(lambda lang: fmt.duration(2220, lang), "37 min", "37 min", id="minutes"),
        pytest.param(lambda lang: fmt.duration(4500, lang), "1 h 15 min", "1 t 15 min", id="h"),
        pytest.param(lambda lang: fmt.duration(891000, lang), "10 d 7 h", "10 d 7 t", id="days"),
        pytest.param(lambda lang: fmt.duration(86700, lang), "1 d", "1 d", id="two-units-max"),
        pytest.param(
            lambda lang: fmt.when("2026-10-07T02:14:00+02:00", lang),
            "7 Oct 2026 02:14",
            "7. okt. 2026 02:14",
            id="datetime",
        ),
        pytest.param(
            lambda lang: fmt.when("2026-05-01T00:00:00+02:00", lang),
            "1 May 2026 00:00",
            "1. maj 2026 00:00",
            id="maj-no-full-stop",
        ),
        pytest.param(lambda lang: fmt.month_name("2026-10", lang), "October 2026", "oktober 2026"),
    ],
)
def test_formats(call: Callable[[Any], str], english: str, danish: str | None) -> None:
    assert call("en") == english
    if danish is not None:
        assert call("da") == danish


def test_times_keep_their_own_offset() -> None:
    """Wall-clock time as written: the report is already in its time zone, never converted."""
    assert fmt.when("2026-10-28T08:40:00+01:00", "en") == "28 Oct 2026 08:40"
    assert fmt.until("2026-10-19T13:02:00+02:00", "2026-10-19T13:05:30+02:00", "en") == "13:05:30"


# --- a real browser -----------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)


@pytest.fixture
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("PROBE_REQUIRE_CHROMIUM"):
            pytest.fail(f"PROBE_REQUIRE_CHROMIUM is set but {reason}")
        pytest.skip(reason)
    return binary


@pytest.mark.parametrize("lang", LANGS)
def test_chromium_draws_the_page(sample: Report, chromium: str, tmp_path: Path, lang: Any) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps(sample), encoding="utf-8")
    png = tmp_path / f"report-{lang}.png"
    subprocess.run(
        [sys.executable, str(SCRIPT), str(report), "--lang", lang, "--out", str(png)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert png.is_file()
    assert png.stat().st_size > 10_000
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    page = tmp_path / "report.html"
    page.write_text(render(sample, fmt="html", lang=lang), encoding="utf-8")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    tags = _Tags()
    tags.feed(dom)
    assert tags.seen.count("svg") == 4  # two charts for each of the two rows with data
    assert tags.seen.count("table") >= 1
    assert "gs-adt" in dom
