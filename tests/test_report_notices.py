"""Written incidents in the monthly report, matched to the automatic ones by flow and time.

Real results go through the real store (a SQLite file and the real PostgreSQL), which
derives the automatic incidents; the notices are written through `probe.store.notices`.
October 2026 in Copenhagen is CEST (UTC+2) before the 25th, so local 12:00 is 10:00Z.

The automatic incidents (10-minute slots, each run ends at the next delivered slot):

- gs-adt/labka: lost 3 Oct 12:00-12:20, so 12:00 to 12:30;
- labka-api (a check): send_error 3 Oct 12:10, so 12:10 to 12:20;
- gs-adt/epm3: lost 5 Oct 03:00 (03:00 to 03:10) and 10 Oct 08:00-08:10 (08:00 to 08:20).

The notices, and what each must explain:

- 1, an incident about ``gs-*`` from 3 Oct 12:05 to 12:40: the labka incident only, not the
  labka-api one at the same time (another flow);
- 2, an incident about ``gs-adt`` from 5 Oct 03:30 to 04:00: nothing (epm3's incident ended
  at 03:10);
- 3, an announcement about every flow for 10 Oct 07:50 to 09:00, written on 1 Oct: the epm3
  incident of the 10th;
- 4, an incident about ``labka-api`` on 20 Oct: nothing (its incident was on the 3rd);
- 5, an incident of September: not in the report at all.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from markdown_it import MarkdownIt
from playwright.async_api import async_playwright

from probe.config.models import Config
from probe.model import Outcome, Result
from probe.report.models import MonthlyReport
from probe.report.render import render
from probe.report.stats import build_report
from probe.store import create_engine, open_store
from probe.store.notices import open_notice, resolve_notice, update_notice

CPH = ZoneInfo("Europe/Copenhagen")
STEP = timedelta(minutes=10)
NOW = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
SCRIPT_TITLE = "Labka <script>alert(1)</script> & co"
SCRIPT_BODY = "**Queue** stuck. <script>alert('x')</script> [see](javascript:alert(2))"

CONFIG = Config.model_validate(
    {
        "timezone": "Europe/Copenhagen",
        "flows": [
            {
                "name": "gs-adt",
                "interval": "10m",
                "source": {"type": "mllp", "host": "127.0.0.1", "port": 2575},
                "destinations": [
                    {"name": "labka", "type": "mllp", "listen": "127.0.0.1:2576"},
                    {"name": "epm3", "type": "mllp", "listen": "127.0.0.1:2577"},
                ],
            },
            {
                "name": "labka-api",
                "interval": "10m",
                "source": {"type": "http", "url": "http://127.0.0.1:8080/health"},
            },
        ],
    }
)


def at(day: int, hour: int, minute: int, *, month: int = 10) -> datetime:
    """Copenhagen wall-clock time, as UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=CPH).astimezone(UTC)


BAD = {
    ("gs-adt", "labka"): {at(3, 12, m): "lost" for m in (0, 10, 20)},
    ("labka-api", ""): {at(3, 12, 10): "send_error"},
    ("gs-adt", "epm3"): {at(5, 3, 0): "lost", at(10, 8, 0): "lost", at(10, 8, 10): "lost"},
}


def _results() -> list[Result]:
    found = []
    slot = at(3, 0, 0)
    while slot < at(11, 0, 0):
        for (flow, destination), bad in BAD.items():
            outcome = Outcome(bad.get(slot, "delivered"))
            good = outcome is Outcome.DELIVERED
            found.append(
                Result(
                    probe_id=f"P{slot:%m%d%H%M}{flow[0]}{destination[:1]}",
                    flow=flow,
                    destination=destination,
                    outcome=outcome,
                    latency=0.2 if good else None,
                    latency_clock="monotonic" if good else None,
                    duplicates=0,
                    reason=None if good else outcome.value,
                    slot=slot,
                    resolved_at=slot + timedelta(minutes=1),
                    span=STEP.total_seconds(),
                )
            )
        slot += STEP
    return found


async def _scenario(url: str) -> dict[str, Any]:
    """Results and notices stored; the October report as JSON."""
    store = await open_store(url, flush_interval=0.05, batch_size=500)
    store.start()
    try:
        for result in _results():
            store.add_result(result)
    finally:
        await store.close(flush_timeout=120)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            one = await open_notice(
                conn, kind="incident", title=SCRIPT_TITLE, flows=["gs-*"],
                body="We are looking into it.", now=at(3, 12, 5),
            )  # fmt: skip
            await update_notice(
                conn, one.id, state="identified", body=SCRIPT_BODY, now=at(3, 12, 15)
            )
            await resolve_notice(conn, one.id, body="", now=at(3, 12, 40))
            two = await open_notice(
                conn, kind="incident", title="GS slow", flows=["gs-adt"], body="", now=at(5, 3, 30)
            )
            await resolve_notice(conn, two.id, body="Fine again.", now=at(5, 4, 0))
            await open_notice(
                conn, kind="announcement", title="EPM3 upgrade, tonight; be patient", flows=[],
                body="EPM3 is upgraded.\n\n- step one\n- step two", now=at(1, 9, 0),
                starts_at=at(10, 7, 50), ends_at=at(10, 9, 0),
            )  # fmt: skip
            four = await open_notice(
                conn, kind="incident", title="Labka API", flows=["labka-api"], body="Slow.",
                now=at(20, 10, 0),
            )  # fmt: skip
            await resolve_notice(conn, four.id, now=at(20, 11, 0))
            five = await open_notice(
                conn, kind="incident", title="September", flows=["*"], body="Old.",
                now=at(20, 10, 0, month=9),
            )  # fmt: skip
            await resolve_notice(conn, five.id, now=at(21, 10, 0, month=9))
        return await build_report(engine, CONFIG, "2026-10", now=NOW)
    finally:
        await engine.dispose()


@pytest.fixture
async def report(store_url: str) -> dict[str, Any]:
    return await _scenario(store_url)


def _incident_starts(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {
        (r["flow"], r["destination"]): [i["start"] for i in r["incidents"]] for r in report["rows"]
    }


def test_the_automatic_incidents_are_what_the_scenario_says(report: dict[str, Any]) -> None:
    """A guard on the scenario, so that the matches below mean what they say."""
    assert _incident_starts(report) == {
        ("gs-adt", "epm3"): ["2026-10-05T03:00:00+02:00", "2026-10-10T08:00:00+02:00"],
        ("gs-adt", "labka"): ["2026-10-03T12:00:00+02:00"],
        ("labka-api", ""): ["2026-10-03T12:10:00+02:00"],
    }


def test_notices_list_the_month_and_explain_by_flow_and_time(report: dict[str, Any]) -> None:
    notices = report["notices"]
    assert [(n["id"], n["kind"], n["title"]) for n in notices] == [
        (1, "incident", SCRIPT_TITLE),
        (2, "incident", "GS slow"),
        (3, "announcement", "EPM3 upgrade, tonight; be patient"),
        (4, "incident", "Labka API"),
    ]  # in the order they began; September's is not in October's report
    explains = {n["id"]: n["explains"] for n in notices}
    assert explains == {
        1: [{"flow": "gs-adt", "destination": "labka", "start": "2026-10-03T12:00:00+02:00"}],
        2: [],  # the same flow, after the incident ended
        3: [{"flow": "gs-adt", "destination": "epm3", "start": "2026-10-10T08:00:00+02:00"}],
        4: [],  # the right flow, another day
    }
    one = notices[0]
    assert one["state"] == "resolved"
    assert one["flows"] == ["gs-*"]
    assert (one["created_at"], one["resolved_at"]) == (
        "2026-10-03T12:05:00+02:00",
        "2026-10-03T12:40:00+02:00",
    )
    assert [(u["at"], u["state"]) for u in one["updates"]] == [
        ("2026-10-03T12:05:00+02:00", "investigating"),
        ("2026-10-03T12:15:00+02:00", "identified"),
        ("2026-10-03T12:40:00+02:00", "resolved"),
    ]
    assert one["updates"][1]["body"] == SCRIPT_BODY
    assert one["updates"][1]["body_text"] == (
        "Queue stuck. <script>alert('x')</script> [see](javascript:alert(2))"
    )  # plain text: the markup gone, the rest as it was written (escaped where shown)
    three = notices[2]
    assert (three["starts_at"], three["ends_at"]) == (
        "2026-10-10T07:50:00+02:00",
        "2026-10-10T09:00:00+02:00",
    )
    assert three["state"] == "active"
    assert three["resolved_at"] is None
    assert three["updates"][0]["body_text"] == "EPM3 is upgraded.\n\n- step one\n- step two"
    model = MonthlyReport.model_validate(report)
    assert model.model_dump(mode="json") == report
    labka = next(r for r in model.rows if r.destination == "labka")
    assert [n.id for n in model.explaining(labka, labka.incidents[0])] == [1]


def _md_section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize(
    ("lang", "title", "note", "state"),
    [
        pytest.param("en", "Written incidents", "Written incident", "Identified", id="en"),
        pytest.param("da", "Beskrevne hændelser", "Beskrevet hændelse", "Årsag fundet", id="da"),
    ],
)
def test_markdown_lists_them_as_text_and_notes_the_explained_incident(
    report: dict[str, Any], lang: Any, title: str, note: str, state: str
) -> None:
    text = render(report, fmt="md", lang=lang)
    written = _md_section(text, title)
    assert "### Labka \\<script\\>alert(1)\\</script\\> \\& co (#1)" in written
    assert f"{state}**" in written
    assert "> \\*\\*" not in written  # the plain text, not the Markdown source
    assert (
        "> Queue stuck. \\<script\\>alert('x')\\</script\\> \\[see\\](javascript:alert(2))"
        in written
    )
    assert "> \\- step one\\" in written  # a list item of the text, kept as text
    # Rendered as CommonMark, raw HTML allowed: still no tag from a body or a title.
    html = MarkdownIt("commonmark").render(text)
    assert "<script" not in html
    assert "<a href" not in html
    rows = text.split("\n## gs-adt \u2192 labka\n", 1)[1].split("\n## ", 1)[0]
    assert f"({note}: Labka \\<script\\>alert(1)\\</script\\> \\& co (#1))" in rows
    epm3 = text.split("\n## gs-adt \u2192 epm3\n", 1)[1].split("\n## ", 1)[0]
    assert f"({note}: EPM3 upgrade, tonight; be patient (#3))" in epm3
    assert epm3.count(f"({note}:") == 1  # the 5 Oct incident is not explained by #2
    assert f"({note}:" not in _md_section(
        text, "labka-api (check)" if lang == "en" else "labka-api (tjek)"
    )


def _html_section(page: str, index: int) -> str:
    return page.split(f'<section class="flow" id="row-{index}">', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize(
    ("lang", "title", "note"),
    [
        pytest.param("en", "Written incidents", "Written incident", id="en"),
        pytest.param("da", "Beskrevne hændelser", "Beskrevet hændelse", id="da"),
    ],
)
def test_html_renders_the_timeline_safely_and_links_the_explained_incident(
    report: dict[str, Any], lang: Any, title: str, note: str
) -> None:
    page = render(report, fmt="html", lang=lang)
    assert not re.search(r"<script", page, re.I)
    assert 'href="javascript' not in page  # the refused link stays as its text
    assert "[see](javascript:alert(2))" in page
    assert f'<h2 id="written-title">{title}</h2>' in page
    article = page.split('<article class="notice incident" id="notice-1">', 1)[1].split(
        "</article>"
    )[0]
    assert "<h3>Labka &lt;script&gt;alert(1)&lt;/script&gt; &amp; co (#1)</h3>" in article
    assert "<strong>Queue</strong> stuck. &lt;script&gt;alert('x')&lt;/script&gt;" in article
    assert article.count("<li>") == 3
    announcement = page.split('id="notice-3">', 1)[1].split("</article>")[0]
    assert "<li>step one</li>" in announcement
    epm3, labka, check = (_html_section(page, i) for i in (1, 2, 3))
    assert f'{note}: <a href="#notice-1">Labka &lt;script&gt;' in labka
    assert f'{note}: <a href="#notice-3">EPM3 upgrade, tonight; be patient (#3)</a>' in epm3
    assert epm3.count('class="explained"') == 1
    assert "explained" not in check
    assert 'href="#notice-2"' not in page
    assert 'href="#notice-4"' not in page


def test_a_report_from_before_notices_has_no_such_section(report: dict[str, Any]) -> None:
    older = {key: value for key, value in report.items() if key != "notices"}
    assert MonthlyReport.model_validate(older).notices is None
    for lang, words in (("en", "Written incidents"), ("da", "Beskrevne hændelser")):
        assert words not in render(older, fmt="md", lang=lang)
        assert words not in render(older, fmt="html", lang=lang)
    empty = {**report, "notices": []}
    assert "No incidents or announcements were written this month." in render(empty, fmt="md")
    assert "Der blev ikke skrevet nogen" in render(empty, fmt="html", lang="da")
    assert 'class="explained"' not in render(empty, fmt="html")


def test_csv_keeps_its_columns(report: dict[str, Any]) -> None:
    """Written incidents are not per row: the CSV does not change."""
    plain = {key: value for key, value in report.items() if key != "notices"}
    assert render(report, fmt="csv") == render(plain, fmt="csv")


CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(os.environ.get("PROBE_AXE_JS", "/tmp/axe/node_modules/axe-core/axe.min.js"))


@pytest.mark.parametrize("lang", ["en", "da"])
async def test_the_report_with_written_incidents_passes_axe(
    report: dict[str, Any], lang: Any, store_url: str
) -> None:
    """axe-core in headless Chromium: no serious or critical violation (as
    tests/test_status_browser.py checks the report without notices)."""
    if "postgresql" in store_url:
        pytest.skip("the page is the same from either store")
    for path, what in ((CHROMIUM, "apt-get install chromium"), (AXE, "npm install axe-core@4")):
        if not path.exists():
            if os.environ.get("PROBE_REQUIRE_CHROMIUM"):
                pytest.fail(f"PROBE_REQUIRE_CHROMIUM is set but {path} is missing ({what})")
            pytest.skip(f"{path} is missing ({what})")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            page = await (await browser.new_context(bypass_csp=True)).new_page()
            await page.set_content(render(report, fmt="html", lang=lang))
            await page.add_script_tag(path=str(AXE))
            found = await page.evaluate(
                """async () => (await axe.run(document, {resultTypes: ["violations"]}))
                .violations.map((v) => ({id: v.id, impact: v.impact,
                  nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))"""
            )
        finally:
            await browser.close()
    assert [v for v in found if v["impact"] in ("serious", "critical")] == []
