"""``probe report``: exit 0 ok, 2 bad arguments or config, 3 store unreachable."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

from probe.config.loader import LoadedConfig
from probe.errors import StoreError
from probe.report.models import MonthlyReport
from probe.report.render import render
from probe.report.stats import Month, monthly_report
from probe.store import open_store, safe_url

EXIT_OK, EXIT_ARGS, EXIT_STORE = 0, 2, 3


def run_report(
    loaded: LoadedConfig,
    *,
    month: str,
    fmt: Literal["json", "csv", "md", "html"],
    lang: Literal["da", "en"],
    output: str | None,
) -> int:
    try:
        Month.parse(month, ZoneInfo(loaded.config.timezone))
    except ValueError:
        print(f"error: invalid month {month!r}: use YYYY-MM", file=sys.stderr)
        return EXIT_ARGS
    try:
        report = asyncio.run(_build(loaded, month))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORE
    text = render(report, fmt=fmt, lang=lang)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        write_atomically(Path(output), text)
    return EXIT_OK


async def _build(loaded: LoadedConfig, month: str) -> MonthlyReport:
    url = loaded.config.store.url
    store = await open_store(url)
    try:
        return await monthly_report(store.engine, loaded.config, month)
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot read {safe_url(url)}: {type(exc).__name__}") from exc
    finally:
        await store.close()


def write_atomically(path: Path, text: str) -> None:
    """Write next to the target and rename over it: readers see the old file or the new."""
    handle, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
