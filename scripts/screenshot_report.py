"""Render a monthly report to HTML and take a PNG screenshot of it with headless Chromium.

    python scripts/screenshot_report.py                      # the sample, en and da, into docs/
    python scripts/screenshot_report.py report.json --lang da --out /tmp/report.png

Needs Debian's `chromium` (``apt-get install -y chromium``). Chromium runs with a throwaway
profile and with background networking, component updates and sync off, so taking a
screenshot talks to nobody; the page itself names no URL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import get_args

from probe.report.render import Lang, render

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "report" / "sample-2026-10.json"
DOCS = ROOT / "docs"
# A4 proportions (210 x 297) at about 150 dpi: the whole first page of the report.
WINDOW = (1240, 1754)


def chromium_command() -> str | None:
    """The Chromium executable on PATH, under either of its Debian/Ubuntu names."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_args(binary: str, profile: Path) -> list[str]:
    """Headless flags that keep Chromium quiet: no GPU, no first run, no calls home."""
    return [
        binary,
        "--headless",
        "--no-sandbox",  # we run as root in a container, where the sandbox cannot start
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]


def screenshot(html_file: Path, png: Path, *, window: tuple[int, int] = WINDOW) -> None:
    """Write a PNG of `html_file` as Chromium draws it; raises if none comes out."""
    binary = chromium_command()
    if binary is None:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="probe-chromium-") as profile:
        args = chromium_args(binary, Path(profile))
        args += [f"--window-size={window[0]},{window[1]}", f"--screenshot={png}"]
        subprocess.run(  # noqa: S603 - a fixed executable and our own arguments
            [*args, html_file.resolve().as_uri()], check=True, capture_output=True, timeout=120
        )
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=SAMPLE, help="report JSON")
    parser.add_argument("--lang", choices=get_args(Lang), help="one language (default: both)")
    parser.add_argument("--out", type=Path, help="PNG path (only with --lang)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    langs: tuple[Lang, ...] = (args.lang,) if args.lang else get_args(Lang)
    if args.out and len(langs) != 1:
        parser.error("--out needs --lang")
    with tempfile.TemporaryDirectory(prefix="probe-report-") as tmp:
        for lang in langs:
            html_file = Path(tmp) / f"report-{lang}.html"
            html_file.write_text(render(report, fmt="html", lang=lang), encoding="utf-8")
            png = args.out or DOCS / f"report-{report['month']}-{lang}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            screenshot(html_file, png)
            print(f"{png} ({png.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
