"""`probe.store.rows`: the one mapping between the store's values and its table rows.

Each mapping must name every column of its table (a column added to `probe.store.tables`
and forgotten here fails at once), and a result must come back from its row as it went in,
through the real store (`probe.store.queries` reads it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from probe.model import Outcome, Result, Sighting
from probe.store import ProbeRow, SentRow, open_store, queries
from probe.store.rows import (
    derived_of,
    probe_row,
    result_of,
    result_row,
    sent_row,
    sighting_row,
)
from probe.store.tables import probes, results, sightings

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
CLAIM = ProbeRow("PR1", "gs-adt", T0, T0, T0 + timedelta(seconds=5), "a")
SENT = SentRow("PR1", T0 + timedelta(milliseconds=3), None, "ACK AA")
SEEN = Sighting("PR1", "labka", T0 + timedelta(seconds=0.1), 0.0, 2, T0, node="a")
RESULT = Result(
    "PR1", "gs-adt", "labka", Outcome.LATE, 40.5, "destination", 1, None, T0,
    T0 + timedelta(seconds=41), mismatch="PID-5", maintenance=True, span=30.0, adhoc=False,
)  # fmt: skip


@pytest.mark.parametrize(
    ("row", "columns"),
    [
        pytest.param(result_row(RESULT), set(results.c.keys()), id="result"),
        pytest.param(sighting_row(SEEN), set(sightings.c.keys()) - {"id"}, id="sighting"),
        pytest.param(probe_row(CLAIM) | sent_row(SENT), set(probes.c.keys()), id="probe"),
    ],
)
def test_a_row_names_every_column_of_its_table(row: dict[str, object], columns: set[str]) -> None:
    assert set(row) == columns


def test_a_result_comes_back_from_its_row() -> None:
    assert result_of(result_row(RESULT)) == RESULT
    assert result_row(RESULT)["outcome"] == "late"  # the column holds the plain value


def test_what_the_derivation_reads_of_a_result() -> None:
    derived = derived_of(RESULT)
    assert (derived.flow, derived.destination, derived.slot, derived.outcome) == (
        "gs-adt", "labka", T0, "late",
    )  # fmt: skip
    assert (derived.latency, derived.maintenance, derived.span, derived.reason) == (
        40.5, True, 30.0, None,
    )  # fmt: skip


async def test_a_stored_result_reads_back_as_it_was_written(store_url: str) -> None:
    store = await open_store(store_url, flush_interval=0.05)
    store.start()
    try:
        assert await store.claim(CLAIM)
        store.add_result(RESULT)
        for _ in range(100):
            async with store.engine.connect() as conn:
                page = await queries.results_page(
                    conn, "gs-adt", start=T0, end=T0 + timedelta(hours=1), limit=10
                )
            if page.results:
                break
            await asyncio.sleep(0.05)
        assert page.results == [RESULT]
        assert not page.more
    finally:
        await store.close()
