"""Render a monthly report (the JSON contract) as JSON, CSV, Markdown or HTML, in da or en.

>>> text = render(report, fmt="md", lang="da")  # doctest: +SKIP

- ``json`` is the contract itself; the language does not apply.
- ``csv`` is for spreadsheets and scripts: English snake_case headers (`CSV_COLUMNS`),
  dot decimals, fractions, empty cells for null; the language does not apply either.
- ``md`` and ``html`` are for people and follow the language, numbers and dates included.
  ``html`` is one self-contained page with inline CSS and SVG, printable on A4.

A row without data is written as "No data" / "Ingen data" in every human format, never
as 100 %. Time availability covers measured time only, so every format also shows the
coverage and the time not measured, and the human ones flag a partial month and row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from probe.report.render.html import to_html
from probe.report.render.i18n import LANGS, Lang, check_lang
from probe.report.render.text import CSV_COLUMNS, to_csv, to_markdown
from probe.report.render.view import read_report

Format = Literal["json", "csv", "md", "html"]
"""An output format of `render`."""

FORMATS: Final[tuple[Format, ...]] = get_args(Format)

__all__ = ["CSV_COLUMNS", "FORMATS", "LANGS", "Format", "Lang", "render"]


def render(report: Mapping[str, Any], *, fmt: Format, lang: Lang = "en") -> str:
    """The report as text in `fmt`; `lang` applies to ``md`` and ``html``.

    Raises `ValueError` for an unknown format or language, so a CLI can pass user input
    straight through and show the message.
    """
    checked = check_lang(lang)
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=2)
    if fmt == "csv":
        return to_csv(read_report(report))
    if fmt == "md":
        return to_markdown(read_report(report), checked)
    if fmt == "html":
        return to_html(read_report(report), checked)
    raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
