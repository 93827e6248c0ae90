"""The written incidents in the HTML report: a section with each one's timeline, and the
note beside an automatic incident that one of them explains.

    >>> section = written_section(report, "da")           # "" for a report without notices
    >>> note = explanation_html(report, row, incident, "da")

Titles, states and flow globs are escaped (`_e`). An update's body is Markdown, rendered by
`probe.markdown.render`, which writes raw HTML in the text as text and keeps only a few
harmless tags: the body is rendered here from the Markdown, never taken as HTML from the
report, so a report file read back cannot bring a script into the page.
"""

from __future__ import annotations

from html import escape

from probe.markdown import render
from probe.report.models import Incident, MonthlyReport, ReportRow, WrittenNotice
from probe.report.render import formats
from probe.report.render.i18n import Lang, label, notice_state
from probe.report.render.wording import notice_facts, notice_heading


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def anchor(notice: WrittenNotice) -> str:
    """The id of a notice's article, for links from the incidents it explains."""
    return f"notice-{notice.id}"


def written_section(report: MonthlyReport, lang: Lang) -> str:
    """The "Written incidents" section; "" for a report made before there were any."""
    if report.notices is None:
        return ""
    title = _e(label("written_incidents", lang))
    intro = label("written_note" if report.notices else "no_written", lang)
    articles = "".join(_article(notice, lang) for notice in report.notices)
    return (
        '<section class="written" id="written" aria-labelledby="written-title">'
        f'<h2 id="written-title">{title}</h2>'
        f'<p class="note">{_e(intro)}</p>{articles}</section>'
    )


def _article(notice: WrittenNotice, lang: Lang) -> str:
    facts = " \u00b7 ".join(
        f'<span class="item">{_e(fact)}</span>' for fact in notice_facts(notice, lang)
    )
    steps = "".join(
        "<li>"
        f'<p class="when"><time datetime="{_e(update.at)}">'
        f"{_e(formats.when(update.at, lang, exact=False))}</time> "
        f"<b>{_e(notice_state(update.state, lang))}</b></p>"
        + (f'<div class="body">{render(update.body)}</div>' if update.body else "")
        + "</li>"
        for update in notice.updates
    )
    return (
        f'<article class="notice {_e(notice.kind)}" id="{anchor(notice)}">'
        f"<h3>{_e(notice_heading(notice))}</h3>"
        f'<p class="outcomes">{facts}</p>'
        f'<ol class="timeline" aria-label="{_e(label("timeline", lang))}">{steps}</ol>'
        "</article>"
    )


def explanation_html(report: MonthlyReport, row: ReportRow, item: Incident, lang: Lang) -> str:
    """Links to the written incidents that explain ``item``; "" when none does."""
    found = report.explaining(row, item)
    if not found:
        return ""
    links = "; ".join(
        f'<a href="#{anchor(notice)}">{_e(notice_heading(notice))}</a>' for notice in found
    )
    return f'<small class="explained">{_e(label("explained_by", lang))}: {links}</small>'
