"""Render a monthly report (the JSON contract) as JSON, CSV, Markdown or HTML, in da or en.

>>> text = render(report, fmt="md", lang="da")  # doctest: +SKIP

`report` is a `probe.report.models.MonthlyReport`, or a dict of the JSON contract (a report
file read back), which is read into one; the renderers read nothing else.

- ``json`` is the contract itself; the language does not apply.
- ``csv`` is for spreadsheets and scripts: English snake_case headers (`CSV_COLUMNS`),
  dot decimals, fractions, empty cells for null; the language does not apply either.
- ``md`` and ``html`` are for people and follow the language, numbers and dates included.
  ``html`` is one self-contained page with inline CSS and SVG, printable on A4.

``md`` and ``html`` list the written incidents and announcements (``notices``) with their
timelines, and note beside each automatic incident the ones that explain it. A body is
Markdown: ``md`` shows its plain text, escaped; ``html`` renders it through
`probe.markdown`, never taking HTML from the report. CSV has no per-row place for them.

A row without data is written as "No data" / "Ingen data" in every human format, never
as 100 %. Time availability covers measured time only, so every format also shows the
coverage and the time not measured, and the human ones flag a partial month and row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from probe.report.models import MonthlyReport
from probe.report.render.html import to_html
from probe.report.render.i18n import LANGS, Lang, check_lang
from probe.report.render.text import CSV_COLUMNS, to_csv, to_markdown

Format = Literal["json", "csv", "md", "html"]
"""An output format of `render`."""

FORMATS: Final[tuple[Format, ...]] = get_args(Format)

__all__ = ["CSV_COLUMNS", "FORMATS", "LANGS", "Format", "Lang", "render"]


def render(report: MonthlyReport | Mapping[str, Any], *, fmt: Format, lang: Lang = "en") -> str:
    """The report as text in `fmt`; `lang` applies to ``md`` and ``html``.

    Raises `ValueError` for an unknown format or language, so a CLI can pass user input
    straight through and show the message (and a `pydantic.ValidationError`, also a
    `ValueError`, for a dict that is not a report). ``json`` writes a dict as it is.
    """
    checked = check_lang(lang)
    if fmt == "json":
        data = report.model_dump(mode="json") if isinstance(report, MonthlyReport) else report
        return json.dumps(data, ensure_ascii=False, indent=2)
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    model = report if isinstance(report, MonthlyReport) else MonthlyReport.model_validate(report)
    if fmt == "csv":
        return to_csv(model)
    if fmt == "md":
        return to_markdown(model, checked)
    return to_html(model, checked)
