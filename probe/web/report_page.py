"""``/report/{YYYY-MM}``: the monthly report as the self-contained HTML page that
``probe report --format html`` writes, in the page's language.

    GET /report/2026-10?lang=da

The status page links last month's report and this month's so far. The report comes from
the hourly rollups (`probe.report.stats.monthly_report`), as the JSON at
``/api/v1/reports/monthly/{month}`` does, and is rendered by `probe.report.render`. A month
that is not ``YYYY-MM`` is a 400 page and a store that does not answer a 503 page, both
in words. The report has no script: its policy allows none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from probe.report.render import render
from probe.report.render.i18n import Lang
from probe.report.stats import monthly_report
from probe.web.api import Api
from probe.web.page_parts import document, e, page_response
from probe.web.page_text import choose_lang

# The report styles itself inline (a <style> element) and draws its charts as inline SVG.
CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_WORDS: Final = {
    "bad_month": ("Not a month: {month}. Use YYYY-MM.", "Ikke en måned: {month}. Brug ÅÅÅÅ-MM."),
    "unavailable": (
        "The report cannot be made right now: the probe's database does not answer.",
        "Rapporten kan ikke laves lige nu: måledatabasen svarer ikke.",
    ),
}


def endpoint(api: Api) -> Callable[[Request], Awaitable[Response]]:
    """The ``/report/{month}`` handler over the daemon's store and config."""

    async def page(request: Request) -> Response:
        lang = choose_lang(request.query_params.get("lang"), request.headers.get("accept-language"))
        month = request.path_params["month"]
        context = api.context
        try:
            report = await monthly_report(context.engine, context.config, month)
        except (ValueError, OverflowError):  # overflow: a month near year 1 or 9999
            return _problem("bad_month", lang, 400, month=month)
        except SQLAlchemyError:
            return _problem("unavailable", lang, 503)
        text = render(report, fmt="html", lang=lang)
        headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
        return HTMLResponse(text, headers=headers)

    return page


def _problem(key: str, lang: Lang, status: int, **values: str) -> Response:
    english, danish = _WORDS[key]
    text = (danish if lang == "da" else english).format(**values)
    title = "Månedsrapport" if lang == "da" else "Monthly report"
    page = document([f"<h1>{e(title)}</h1><p>{e(text)}</p>"], lang, title=title, refresh=False)
    return page_response(page, status=status, script=False)
