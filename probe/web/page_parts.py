"""The pieces the status page and the history page are built of, and their frame.

    >>> document(["<p>hi</p>"], "da", title="Integrationsstatus", data={"lang": "da"})
    '<!DOCTYPE html>\\n<html lang="da">...'

Self-contained: the stylesheet (`static/status.css`) and the script (`static/status.js`)
are inline, so the page works on a hospital network without internet, and every response
carries a strict Content-Security-Policy (`CSP`) that allows exactly that stylesheet and
that script by their SHA-256 hashes, and nothing from anywhere else. The script only
enhances: with JavaScript off, ``<noscript><meta http-equiv="refresh"></noscript>``
reloads the page every `REFRESH_SECONDS`.

Names come from the config and text from operators, so every string goes through `e`
(`html.escape`); the only markup not made here is a notice body, which
`probe.markdown.render` has sanitised.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from html import escape
from importlib import resources
from typing import Final
from zoneinfo import ZoneInfo

from starlette.responses import HTMLResponse

from probe.config.models import Config
from probe.config.people import display_name
from probe.report.render import formats
from probe.report.render.i18n import Lang
from probe.web.page_text import t
from probe.web.status import State

REFRESH_SECONDS: Final = 30
_STATIC = resources.files("probe.web") / "static"
CSS: Final = (_STATIC / "status.css").read_text(encoding="utf-8")
SCRIPT: Final = (_STATIC / "status.js").read_text(encoding="utf-8")

SYMBOLS: Final = {
    State.OK: "\u2713",
    State.DEGRADED: "!",
    State.DOWN: "\u2715",
    State.MAINTENANCE: "\u2699",
    State.UNKNOWN: "?",
}


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _policy(*, script: bool) -> str:
    scripts = _hash(SCRIPT) if script else "'none'"
    return (
        f"default-src 'none'; style-src {_hash(CSS)}; script-src {scripts}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


CSP: Final = _policy(script=True)
"""The status page's policy: its own stylesheet and script, and requests to itself only."""
CSP_NO_SCRIPT: Final = _policy(script=False)


def e(text: object) -> str:
    """Escape for element content and quoted attribute values alike."""
    return escape(str(text), quote=True)


def page_response(text: str, *, status: int = 200, script: bool = True) -> HTMLResponse:
    """A page with its Content-Security-Policy, never cached (it is the state *now*)."""
    headers = {
        "Content-Security-Policy": CSP if script else CSP_NO_SCRIPT,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(text, status_code=status, headers=headers)


def document(
    body: list[str],
    lang: Lang,
    *,
    title: str,
    data: Mapping[str, object] | None = None,
    refresh: bool = True,
) -> str:
    """The whole page around ``body``; with ``data`` it carries the script, which reads
    ``data`` (the words and settings it needs) from a JSON block, never run as code.
    With ``refresh`` it reloads itself every `REFRESH_SECONDS` when the script cannot run."""
    reload = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    head = [
        "<!DOCTYPE html>",
        f'<html lang="{e(lang)}">',
        '<head>\n<meta charset="utf-8">',
        *([f"<noscript>{reload}</noscript>" if data is not None else reload] if refresh else []),
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>",
        '<body>\n<main class="page">',
    ]
    tail = ["</main>"]
    if data is not None:
        # "<" escaped: the JSON can never close its element, whatever a name contains.
        blob = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
        tail.append(f'<script type="application/json" id="status-data">{blob}</script>')
        tail.append(f"<script>{SCRIPT}</script>")
    return "\n".join([*head, *body, *tail, "</body>\n</html>\n"])


def badge(state: State, lang: Lang) -> str:
    """A state as a symbol *and* a word *and* a colour, never by colour alone."""
    return (
        f'<span class="badge state-{state}"><span class="sym" aria-hidden="true">'
        f'{SYMBOLS[state]}</span> <span class="word">{e(t(str(state), lang))}</span></span>'
    )


def when(moment: datetime, tz: ZoneInfo, lang: Lang, *, exact: bool = False) -> str:
    """A time in the config's zone: ``7 Oct 2026 02:14`` (da: ``7. okt. 2026 02:14``)."""
    return formats.when(moment.astimezone(tz).isoformat(), lang, exact=exact)


def time_tag(moment: datetime, tz: ZoneInfo, lang: Lang) -> str:
    """`when` in a ``<time>`` element that carries the exact instant."""
    local = moment.astimezone(tz)
    return f'<time datetime="{e(local.isoformat())}">{e(when(moment, tz, lang))}</time>'


def months(lang: Lang) -> list[str]:
    """The month names as `formats.day` abbreviates them, for the script's times."""
    return [formats.day(date(2000, m, 1), lang).split(" ")[1] for m in range(1, 13)]


def name_of(config: Config, key: str, lang: Lang) -> str:
    """What people read for a flow or ``flow/destination`` (a check: the flow's name)."""
    return display_name(config.display, key, lang)


def destination_name_of(config: Config, flow: str, dest: str, lang: Lang) -> str:
    """What people read for a destination: its ``display:`` name, else its own name."""
    key = f"{flow}/{dest}"
    return name_of(config, key, lang) if key in config.display else dest


def description_of(config: Config, key: str, lang: Lang, fallback: str = "") -> str:
    """The ``display:`` description in ``lang``, else ``fallback`` (the flow's own)."""
    found = config.display.get(key)
    text = found.description.get(lang) if found is not None else None
    return text or fallback


def named(shown: str, technical: str) -> str:
    """A display name with the technical name small beside it, when they differ."""
    if not technical or shown == technical:
        return e(shown)
    return f'{e(shown)} <small class="tech">{e(technical)}</small>'


def language_links(lang: Lang, path: str) -> str:
    links = []
    for code, name in (("en", "English"), ("da", "Dansk")):
        current = ' aria-current="page" class="current"' if code == lang else ""
        links.append(
            f'<a href="{e(path)}?lang={code}" hreflang="{code}" lang="{code}"{current}>{name}</a>'
        )
    return f'<nav class="langs" aria-label="{e(t("languages", lang))}">{" ".join(links)}</nav>'
