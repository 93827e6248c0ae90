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
    assert len(_cells(summary[0])) == 8
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
    section = _section(render(sample, fmt="html"), 1)
    availability = section.split("<svg")[1]
    assert availability.count('class="gap"') == 2 + 1  # 15 and 31 Oct, plus the legend swatch
    assert availability.count("<polyline") == 2  # the line breaks at the 15th
    markers = availability.count("<circle") + availability.count("<path")
    assert markers == 29 + 1  # 31 days less 2 gaps, plus the legend's diamond


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
