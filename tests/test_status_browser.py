"""The status page in a real browser: Debian's headless Chromium, driven by Playwright.

- A flow the simulator breaks turns red on the open page without a reload, and a visitor
  who follows it gets a pop-up (the page's ``Notification`` calls are recorded).
- An incident opened and updated with ``probe incident`` appears with its timeline, again
  without a reload.
- axe-core finds no serious or critical violation on the status page (healthy and with an
  incident, in Danish and English), the history page, and the report's HTML.

Chromium is ``/usr/bin/chromium``; axe-core is ``PROBE_AXE_JS`` (default
`AXE_DEFAULT`, from ``npm install axe-core@4``). Without either the tests are skipped,
unless ``PROBE_REQUIRE_CHROMIUM`` is set. ``PROBE_SCREENSHOTS=docs`` writes the screenshots
``docs/status-{da,en}-{healthy,incident}.png``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from probe.report.render import render
from tests.helpers import wait_for
from tests.test_status_live import DOWN, landscape

CHROMIUM = Path("/usr/bin/chromium")
AXE_DEFAULT = "/tmp/axe/node_modules/axe-core/axe.min.js"
AXE = Path(os.environ.get("PROBE_AXE_JS", AXE_DEFAULT))
DOCS = Path(__file__).resolve().parent.parent / "docs"
SAMPLE = Path(__file__).parent / "data" / "report" / "sample-2026-10.json"
SLOW = 60_000  # ms: a busy machine is slow

# Records every pop-up the page asks for, and still makes it.
RECORD_NOTIFICATIONS = """
window.__notifications = [];
const Real = window.Notification;
window.Notification = new Proxy(Real, {
  construct(target, args) {
    window.__notifications.push({title: args[0], body: (args[1] || {}).body || ""});
    return Reflect.construct(target, args);
  },
});
"""
HEALTHY = "#overall[data-state='ok']"
AXE_RUN = """async () => {
  const found = await axe.run(document, {resultTypes: ["violations"]});
  return found.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}));
}"""


def _need(path: Path, what: str) -> None:
    if not path.exists():
        if os.environ.get("PROBE_REQUIRE_CHROMIUM"):
            pytest.fail(f"PROBE_REQUIRE_CHROMIUM is set but {path} is missing ({what})")
        pytest.skip(f"{path} is missing ({what})")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _need(CHROMIUM, "apt-get install chromium")
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield found
        finally:
            await found.close()


async def _context(browser: Browser, base: str, **options: Any) -> BrowserContext:
    context = await browser.new_context(
        base_url=base, viewport={"width": 1100, "height": 900}, **options
    )
    context.set_default_timeout(SLOW)
    return context


async def _live(page: Page, path: str) -> float:
    """Open ``path``, wait until the script follows the event stream; when it loaded."""
    await page.goto(path)
    await page.wait_for_selector("html[data-live='on']", state="attached")
    return float(await page.evaluate("window.probeStatusLoadedAt"))


async def _evaluate(page: Page, expression: str) -> bool:
    """``expression`` in the page, as the test's own code (the page's policy forbids eval,
    which Playwright's ``wait_for_function`` needs)."""
    return bool(await page.evaluate(expression))


async def _down(base: str) -> bool:
    """Whether the API says `DOWN` is down, since a known time (so the page says so too)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        flows = (await client.get("/api/v1/flows")).json()["flows"]
    pair = next(d for f in flows if f["name"] == DOWN[0] for d in f["destinations"])
    return bool(pair["state"] == "down" and pair["down_since"])


def _row(flow: str, dest: str) -> str:
    return f'tr.dest[data-flow="{flow}"][data-destination="{dest}"]'


@pytest.mark.slow
@pytest.mark.e2e
async def test_a_broken_flow_turns_red_without_reload_and_pops_up(
    tmp_path: Path, browser: Browser
) -> None:
    async with landscape(tmp_path) as (daemon, broken, _):
        assert daemon.server is not None
        context = await _context(browser, daemon.server.url)
        await context.grant_permissions(["notifications"], origin=daemon.server.url)
        await context.add_init_script(RECORD_NOTIFICATIONS)
        page = await context.new_page()
        loaded = await _live(page, "/?lang=da")
        await page.wait_for_selector(HEALTHY)
        follow = page.locator("#follow-gs-orders")
        assert await follow.get_attribute("aria-pressed") == "false"
        await follow.click()
        assert await follow.get_attribute("aria-pressed") == "true"
        status = await page.locator("#popups-state").inner_text()
        assert status == "Pop-op-beskeder er slået til for de integrationer, du følger."
        await broken.stop()
        row = page.locator(_row(*DOWN))
        await page.wait_for_selector(_row(*DOWN) + '[data-state="down"]')
        assert await row.locator(".badge").inner_text() == "\u2715 Nede"
        await expect(row.locator(".since")).to_have_text(re.compile(r"^siden \d"), timeout=SLOW)
        await wait_for(lambda: _evaluate(page, "window.__notifications.length > 0"),
                       limit=60, what="a pop-up")  # fmt: skip
        overall = await page.locator("#overall .text").inner_text()
        assert overall == "En eller flere integrationer er nede"
        flow_badge = page.locator('section[data-flow="gs-orders"] .flow-head .badge')
        assert await flow_badge.inner_text() == "\u2715 Nede"
        assert await page.evaluate("window.probeStatusLoadedAt") == loaded, "it reloaded"
        popups = await page.evaluate("window.__notifications")
        assert popups[0]["title"] == "Laboratorieordrer har skiftet tilstand"
        assert popups[0]["body"].startswith("Labkas ordremodtagelse: Nede")
        assert all("Laboratorieordrer" in p["title"] for p in popups), "only followed flows"
        # The choice is kept: after a reload (which the marker sees) it still follows.
        await page.reload()
        assert await page.evaluate("window.probeStatusLoadedAt") != loaded
        assert await page.locator("#follow-gs-orders").get_attribute("aria-pressed") == "true"
        await context.close()


async def _cli(*args: str, body: str) -> str:
    """``python -m probe ARGS`` with ``body`` on standard input; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(body.encode()), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


@pytest.mark.slow
@pytest.mark.e2e
async def test_an_incident_from_the_cli_appears_with_its_timeline(
    tmp_path: Path, browser: Browser
) -> None:
    async with landscape(tmp_path) as (daemon, _, _):
        assert daemon.server is not None
        context = await _context(browser, daemon.server.url)
        page = await context.new_page()
        loaded = await _live(page, "/?lang=en")
        config = str(tmp_path / "probe.yaml")
        notice = await _cli(
            "incident", "open", "-c", config, "--title", "Lab orders do not reach Labka",
            "--flows", "gs-orders", "--body", "-", body="We are *looking* into it.",
        )  # fmt: skip
        article = page.locator(f"#notice-{notice}")
        await article.wait_for()
        assert await article.locator("h3").inner_text() == "Lab orders do not reach Labka"
        assert "Investigating" in await article.locator(".ntags").inner_text()
        await _cli(
            "incident", "update", notice, "-c", config, "--state", "identified",
            "--body", "-", body="The **order queue** is stuck.",
        )  # fmt: skip
        entries = article.locator("ol.timeline > li")
        await expect(entries).to_have_count(2, timeout=SLOW)
        newest, oldest = await entries.nth(0).inner_text(), await entries.nth(1).inner_text()
        assert "Identified" in newest
        assert "The order queue is stuck." in newest
        assert await entries.nth(0).locator("strong").nth(1).inner_text() == "order queue"
        assert "Investigating" in oldest
        assert "We are looking into it." in oldest
        mark = page.locator(f'section[data-flow="gs-orders"] a[href="#notice-{notice}"]')
        assert await mark.inner_text() == "Incident: Lab orders do not reach Labka (Identified)"
        assert await page.evaluate("window.probeStatusLoadedAt") == loaded, "it reloaded"
        await context.close()


async def _axe(page: Page, what: str) -> None:
    _need(AXE, "npm install axe-core@4, or set PROBE_AXE_JS")
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate(AXE_RUN)
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    assert not bad, f"{what}: {bad}"


async def _shot(page: Page, name: str) -> None:
    if os.environ.get("PROBE_SCREENSHOTS") == "docs":
        await page.screenshot(path=str(DOCS / name), full_page=True)


@pytest.mark.slow
@pytest.mark.e2e
async def test_the_pages_pass_axe_in_both_languages(tmp_path: Path, browser: Browser) -> None:
    _need(AXE, "npm install axe-core@4, or set PROBE_AXE_JS")
    async with landscape(tmp_path) as (daemon, broken, _):
        assert daemon.server is not None
        # bypass_csp: axe is injected by the test; the page itself allows only its own script.
        context = await _context(browser, daemon.server.url, bypass_csp=True)
        page = await context.new_page()
        for lang in ("en", "da"):
            await _live(page, f"/?lang={lang}")
            await page.wait_for_selector(HEALTHY)
            await _shot(page, f"status-{lang}-healthy.png")
            await _axe(page, f"the healthy status page ({lang})")
        config = str(tmp_path / "probe.yaml")
        notice = await _cli(
            "incident", "open", "-c", config, "--title", "Lab orders do not reach Labka",
            "--flows", "gs-orders", "--body", "-",
            body="Labka has received no orders since the morning. We are looking into it.",
        )  # fmt: skip
        await _cli(
            "incident", "update", notice, "-c", config, "--state", "identified",
            "--body", "-", body="The engine's **order queue** is stuck; restarting it.",
        )  # fmt: skip
        await broken.stop()
        base = daemon.server.url
        await wait_for(lambda: _down(base), limit=60, what=f"{DOWN} down")
        for lang in ("en", "da"):
            await _live(page, f"/?lang={lang}")
            await page.wait_for_selector(_row(*DOWN) + '[data-state="down"]')
            await page.locator(f"#notice-{notice}").wait_for()
            await _shot(page, f"status-{lang}-incident.png")
            await _axe(page, f"the status page with an incident ({lang})")
            await page.goto(f"/history?lang={lang}")
            await page.locator(f"#notice-{notice}").wait_for()
            await _axe(page, f"the history page ({lang})")
        await context.close()


@pytest.mark.parametrize("lang", ["en", "da"])
async def test_the_report_passes_axe(browser: Browser, lang: Any) -> None:
    _need(AXE, "npm install axe-core@4, or set PROBE_AXE_JS")
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await page.set_content(
        render(json.loads(SAMPLE.read_text(encoding="utf-8")), fmt="html", lang=lang)
    )
    assert await page.locator("html").get_attribute("lang") == lang
    await _axe(page, f"the report ({lang})")
    await context.close()
