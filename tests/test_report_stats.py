"""The monthly report against a known month, on a real SQLite file and the real PostgreSQL.

The scenario (October 2026 in Copenhagen, 745 hours: daylight saving ends on the 25th) is
a plain list of results. Every expectation is computed from that list here, in plain
Python, by the definitions in `probe.report.stats`; no report, rollup or sketch code is used
to compute what the report should say.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from probe.config.models import Config
from probe.model import Outcome, Result
from probe.report.models import OUTCOMES, Incident, MonthlyReport, ReportRow
from probe.report.render import render
from probe.report.stats import build_report
from probe.store import create_engine, open_store
from probe.store.housekeeping import rebuild_rollups
from probe.store.sketch import Sketch
from probe.store.tables import incidents, rollups

CONTRACT = Path(__file__).parent.parent / "docs" / "report-json.md"
CPH = ZoneInfo("Europe/Copenhagen")
STEP = timedelta(minutes=10)
NOW = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # a fixed time after the month


def at(day: int, hour: int, minute: int, *, month: int = 10, fold: int = 0) -> datetime:
    """A local wall-clock time in Copenhagen (``fold=1``: the second 02:xx on 25 Oct), as UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=CPH, fold=fold).astimezone(UTC)


START = at(1, 0, 0)  # 2026-09-30T22:00Z
END = at(1, 0, 0, month=11)  # 2026-10-31T23:00Z
SLOTS = [START + i * STEP for i in range(4470)]  # one probe per 10 minutes: 745 h x 6

CONFIG = Config.model_validate(
    {
        "timezone": "Europe/Copenhagen",
        "maintenance": [
            {
                "name": "tuesday-patch",
                "flows": ["gs-*"],
                "weekly": {"day": "tuesday", "start": "06:00", "duration": "1h"},
            }
        ],
        "flows": [
            {
                "name": "gs-adt",
                "interval": "10m",
                "slo": {"latency": "30s", "objective": 0.995},
                "source": {"type": "mllp", "host": "127.0.0.1", "port": 2575},
                "destinations": [
                    {"name": "labka", "type": "mllp", "listen": "127.0.0.1:2576"},
                    {
                        "name": "epm3",
                        "type": "mllp",
                        "listen": "127.0.0.1:2577",
                        "slo": {"latency": "60s"},
                    },
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

# The maintenance windows of October, as the report must list them (06:00 local both sides
# of the DST change: 04:00Z before it, 05:00Z after).
WINDOWS = [
    ("2026-10-06T06:00:00+02:00", "2026-10-06T07:00:00+02:00"),
    ("2026-10-13T06:00:00+02:00", "2026-10-13T07:00:00+02:00"),
    ("2026-10-20T06:00:00+02:00", "2026-10-20T07:00:00+02:00"),
    ("2026-10-27T06:00:00+01:00", "2026-10-27T07:00:00+01:00"),
]


@dataclass(frozen=True, slots=True)
class Shot:
    """One result of the scenario."""

    flow: str
    destination: str
    slot: datetime
    outcome: str
    latency: float | None
    maintenance: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.flow, self.destination)

    @property
    def good(self) -> bool:
        return self.outcome == "delivered"


def in_maintenance(flow: str, slot: datetime) -> bool:
    """Tuesday 06:00-07:00 local for gs-* (plain wall-clock arithmetic, no report code)."""
    local = slot.astimezone(CPH)
    return flow.startswith("gs-") and local.weekday() == 1 and local.hour == 6


def _run(first: datetime, outcomes: list[str]) -> dict[datetime, tuple[str, float | None]]:
    return {first + k * STEP: (outcome, None) for k, outcome in enumerate(outcomes)}


# Bad (or late) results in October, by destination; every other slot is delivered.
LABKA = {
    # Incident 1: 30 min of lost (02:10, 02:20, 02:30; good again at 02:40).
    **_run(at(7, 2, 10), ["lost"] * 3),
    # Incident 2: 1 h of send_error (13:00-13:50; good again at 14:00).
    **_run(at(19, 13, 0), ["send_error"] * 6),
    # Incident 3 crosses the DST change: 02:30 CEST (00:30Z) to 03:30 CET (02:30Z), 2 h of
    # real time though the wall clock moves 1 h; its cause is its first bad outcome.
    **_run(at(25, 2, 30), ["observe_error"] * 2 + ["lost"] * 10),
    # Isolated bad results: each an incident up to the next good slot.
    at(3, 12, 0): ("late", 45.25),  # the month's maximum latency
    at(28, 8, 40): ("late", 31.7),
    at(30, 10, 0): ("lost", None),
}
EPM3 = {
    at(1, 0, 0): ("lost", None),  # continues an incident from 30 Sep 23:50
    # Lost just before the 13 Oct window: the incident runs through it to 07:00.
    **_run(at(13, 5, 40), ["lost"] * 2),
    at(21, 15, 0): ("lost", None),
    at(25, 2, 30, fold=1): ("late", 75.0),  # the second 02:30 of the DST night
    at(31, 23, 50): ("lost", None),  # the month's last slot; good again on 1 Nov 00:00
}


def _scenario() -> list[Shot]:
    shots: list[Shot] = []

    def add(dest: str, slot: datetime, outcome: str, latency: float | None, flow: str = "") -> None:
        flow = flow or "gs-adt"
        maintenance = in_maintenance(flow, slot)
        if maintenance:
            # What the runner measured inside the window: losses and slow deliveries that
            # must leave no trace in counts, latencies or incidents.
            outcome, latency = ("lost", None) if slot.minute % 20 == 0 else ("delivered", 99.9)
        shots.append(Shot(flow, dest, slot, outcome, latency, maintenance))

    # September (the previous month), up to the last slot before local midnight.
    for k in range(24):
        slot = at(30, 20, 0, month=9) + k * STEP
        add(
            "labka",
            slot,
            "lost" if k in (3, 6, 23) else "delivered",
            None if k in (3, 6, 23) else 0.3,
        )
    for k in range(12):
        slot = at(30, 22, 0, month=9) + k * STEP
        add("epm3", slot, "lost" if k == 11 else "delivered", None if k == 11 else 0.6)
    for k in range(3):
        add("", at(30, 12, 0, month=9) + k * STEP, "delivered", 0.05 + k * 0.01, flow="labka-api")
    # October.
    for i, slot in enumerate(SLOTS):
        outcome, latency = LABKA.get(slot, ("delivered", 0.2 + (i % 97) * 0.01))
        add("labka", slot, outcome, latency)
        outcome, latency = EPM3.get(slot, ("delivered", 0.5 + (i % 89) * 0.02))
        add("epm3", slot, outcome, latency)
    # November: local midnight belongs to the next month.
    for k in range(2):
        add("labka", END + k * STEP, "delivered", 0.3)
        add("epm3", END + k * STEP, "delivered", 0.6)
    add("", END, "delivered", 0.07, flow="labka-api")
    return sorted(shots, key=lambda s: (s.slot, s.flow, s.destination))


SHOTS = _scenario()


def _results(shots: list[Shot]) -> list[Result]:
    return [
        Result(
            probe_id=f"P{s.slot:%Y%m%d%H%M}{'C' if s.flow == 'labka-api' else 'G'}",
            flow=s.flow,
            destination=s.destination,
            outcome=Outcome(s.outcome),
            latency=s.latency,
            latency_clock="monotonic" if s.latency is not None else None,
            duplicates=0,
            reason=None if s.good else s.outcome,
            slot=s.slot,
            resolved_at=s.slot + timedelta(minutes=5),
            maintenance=s.maintenance,
            span=STEP.total_seconds(),
        )
        for s in shots
    ]


# --- expectations, from the scenario alone -------------------------------------------------


def _local_iso(moment: datetime) -> str:
    return moment.astimezone(CPH).isoformat(timespec="seconds")


def _exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def _latencies(shots: list[Shot]) -> list[float]:
    return [
        s.latency
        for s in shots
        if not s.maintenance and s.outcome in ("delivered", "late") and s.latency is not None
    ]


def _expected_incidents(key: tuple[str, str]) -> list[dict[str, Any]]:
    """Runs of bad results (maintenance skipped), first bad slot to next good slot, clipped."""
    runs: list[list[Any]] = []  # [start, end or None, cause]
    current: list[Any] | None = None
    for shot in SHOTS:
        if shot.key != key or shot.maintenance:
            continue
        if not shot.good and current is None:
            current = [shot.slot, None, shot.outcome]
            runs.append(current)
        elif shot.good and current is not None:
            current[1] = shot.slot
            current = None
    found = []
    for start, end, cause in runs:
        lo, hi = max(start, START), min(end or END, END)
        if hi > lo:
            found.append(
                {
                    "start": _local_iso(lo),
                    "end": _local_iso(hi),
                    "duration_seconds": (hi - lo).total_seconds(),
                    "cause": cause,
                    "ended_by": None if end is None else "recovered",
                    "open": end is None or end > END,
                }
            )
    return found


def _percentiles(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        name: pytest.approx(_exact_quantile(values, q), rel=0.01)
        for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
    }


def _expected_row(key: tuple[str, str], objective: float, latency_slo: float) -> dict[str, Any]:
    mine = [s for s in SHOTS if s.key == key]
    month = [s for s in mine if START <= s.slot < END]
    counted = [s for s in month if not s.maintenance]
    outcomes = Counter(s.outcome for s in counted)
    availability = outcomes["delivered"] / len(counted) if counted else None
    before = [s for s in mine if s.slot < START and not s.maintenance]
    found = _expected_incidents(key)
    # Time on the 10-minute grid: every incident and window boundary lies on a slot.
    spans = [(datetime.fromisoformat(i["start"]), datetime.fromisoformat(i["end"])) for i in found]
    open_slots = [t for t in SLOTS if not in_maintenance(key[0], t)]
    down_slots = [t for t in open_slots if any(lo <= t < hi for lo, hi in spans)]
    open_seconds = 600 * len(open_slots)
    down_seconds = 600 * len(down_slots)
    values = _latencies(month)
    no_data = not month
    days = []
    day = date(2026, 10, 1)
    while day <= date(2026, 10, 31):
        today = [s for s in month if s.slot.astimezone(CPH).date() == day]
        today_counted = [s for s in today if not s.maintenance]
        today_good = sum(s.good for s in today_counted)
        slots = [t for t in SLOTS if t.astimezone(CPH).date() == day]
        days.append(
            {
                "date": day.isoformat(),
                "probes": len(today),
                "availability": today_good / len(today_counted) if today_counted else None,
                "latency_seconds": _percentiles(_latencies(today)),
                "coverage": len(today) / len(slots),
                "not_measured_seconds": 600.0 * (len(slots) - len(today)),
            }
        )
        day += timedelta(days=1)
    latency = _percentiles(values)
    if latency is not None:
        latency["max"] = max(values)
    return {
        "flow": key[0],
        "destination": key[1],
        "probes": len(month),
        "outcomes": {o.value: outcomes[o.value] for o in Outcome},
        "excluded_maintenance": len(month) - len(counted),
        "availability": availability,
        "time_availability": None
        if no_data
        else pytest.approx((open_seconds - down_seconds) / open_seconds, rel=1e-12),
        "slo": {
            "objective": objective,
            "latency_seconds": latency_slo,
            "met": None if availability is None else availability >= objective,
            "error_budget_used": None
            if availability is None
            else pytest.approx((1 - availability) / (1 - objective), rel=1e-12),
        },
        "latency_seconds": latency,
        "incidents": found,
        "mttr_seconds": sum(i["duration_seconds"] for i in found) / len(found) if found else None,
        "mtbf_seconds": pytest.approx((open_seconds - down_seconds) / len(found), rel=1e-12)
        if found
        else None,
        "previous_month": {
            "availability": sum(s.good for s in before) / len(before) if before else None
        },
        "maintenance": [
            {"name": "tuesday-patch", "start": s, "end": e}
            for s, e in WINDOWS
            if key[0] == "gs-adt"
        ],
        "no_data": no_data,
        "daily": days,
        # Every slot of the month is in the scenario for gs-adt; labka-api has none.
        "expected_slots": len(SLOTS),
        "measured_slots": len(month),
        "coverage": len(month) / len(SLOTS),
        "measured_seconds": 600.0 * len(month),
        "not_measured_seconds": 600.0 * (len(SLOTS) - len(month)),
        "not_measured_probes": 0,
        "first_measured": _local_iso(START) if month else None,
        "partial": False,
    }


EXPECTED = {
    ("gs-adt", "labka"): _expected_row(("gs-adt", "labka"), 0.995, 30.0),
    ("gs-adt", "epm3"): _expected_row(("gs-adt", "epm3"), 0.995, 60.0),
    ("labka-api", ""): _expected_row(("labka-api", ""), 0.995, 30.0),
}


# --- the store, written through the real path -----------------------------------------------


async def _write(url: str, results: list[Result], *, batch_size: int = 500) -> None:
    store = await open_store(url, flush_interval=0.05, batch_size=batch_size)
    store.start()
    try:
        for result in results:
            store.add_result(result)
    finally:
        await store.close(flush_timeout=120)
    assert store.backlog == 0


async def _report(url: str, month: str = "2026-10") -> dict[str, Any]:
    engine = create_engine(url)
    try:
        return await build_report(engine, CONFIG, month, now=NOW)
    finally:
        await engine.dispose()


async def _derived_tables(url: str) -> tuple[list[Any], list[Any]]:
    engine = create_engine(url)
    columns = [c for c in incidents.c if c.name != "id"]
    try:
        async with engine.connect() as conn:
            hours = (
                await conn.execute(
                    select(rollups).order_by(rollups.c.flow, rollups.c.destination, rollups.c.hour)
                )
            ).fetchall()
            found = (
                await conn.execute(
                    select(*columns).order_by(
                        incidents.c.flow, incidents.c.destination, incidents.c.start_at
                    )
                )
            ).fetchall()
    finally:
        await engine.dispose()
    return [tuple(r) for r in hours], [tuple(r) for r in found]


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["flow"], r["destination"]): r for r in report["rows"]}


# --- the tests ------------------------------------------------------------------------------


def test_the_report_counts_every_outcome() -> None:
    assert tuple(outcome.value for outcome in Outcome) == OUTCOMES


def test_the_models_hold_every_key_the_contract_documents() -> None:
    """docs/report-json.md and `probe.report.models` name the same keys."""
    text = CONTRACT.read_text(encoding="utf-8")

    def keys(section: str) -> set[str]:
        """The keys in the first column of the table under ``## section``."""
        body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
        return {re.split(r"[.\[]", key)[0] for key in re.findall(r"^\| `([^`]+)`", body, re.M)}

    assert keys("Top level") == set(MonthlyReport.model_fields)
    assert keys("A row") | {"flow", "destination"} == set(ReportRow.model_fields)
    assert keys("An incident") == set(Incident.model_fields)


def test_the_scenario_is_what_it_claims() -> None:
    """Guards on the scenario itself, so the expectations below mean what they say."""
    assert timedelta(hours=745) == END - START
    assert START + len(SLOTS) * STEP == END
    assert at(25, 2, 30) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert at(25, 2, 30, fold=1) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    maintenance = [s for s in SHOTS if s.maintenance and START <= s.slot < END]
    assert len(maintenance) == 2 * 4 * 6  # 2 destinations x 4 Tuesdays x 6 slots
    assert {s.slot.astimezone(UTC).hour for s in maintenance} == {4, 5}  # moves in UTC
    assert not any((s.destination == "labka" and s.slot in LABKA) for s in maintenance)
    assert not any((s.destination == "epm3" and s.slot in EPM3) for s in maintenance)
    # With the store's default batch of 500 results, the DST-night incident on labka is
    # open when one batch ends and closed by the next.
    first_bad = SHOTS.index(next(s for s in SHOTS if s.slot == at(25, 2, 30)))
    boundary = SHOTS[(first_bad // 500 + 1) * 500]
    assert at(25, 2, 30) < boundary.slot < at(25, 2, 30) + 12 * STEP
    # The exact percentiles are where the sketch says they are, within its 1%.
    for key in EXPECTED:
        values = _latencies([s for s in SHOTS if s.key == key and START <= s.slot < END])
        sketch = Sketch.of(values)
        for q in (0.5, 0.95, 0.99):
            if values:
                assert sketch.quantile(q) == pytest.approx(_exact_quantile(values, q), rel=0.01)


def test_the_expectations_hold_the_known_incidents() -> None:
    """Spot checks of the independent expectations against numbers worked out by hand."""
    labka = EXPECTED[("gs-adt", "labka")]
    assert [
        (i["start"], i["end"], i["duration_seconds"], i["cause"]) for i in labka["incidents"]
    ] == [
        ("2026-10-03T12:00:00+02:00", "2026-10-03T12:10:00+02:00", 600, "late"),
        ("2026-10-07T02:10:00+02:00", "2026-10-07T02:40:00+02:00", 1800, "lost"),
        ("2026-10-19T13:00:00+02:00", "2026-10-19T14:00:00+02:00", 3600, "send_error"),
        ("2026-10-25T02:30:00+02:00", "2026-10-25T03:30:00+01:00", 7200, "observe_error"),
        ("2026-10-28T08:40:00+01:00", "2026-10-28T08:50:00+01:00", 600, "late"),
        ("2026-10-30T10:00:00+01:00", "2026-10-30T10:10:00+01:00", 600, "lost"),
    ]
    assert labka["probes"] == 4470
    assert labka["excluded_maintenance"] == 24
    assert labka["outcomes"] == {
        "delivered": 4446 - 24, "late": 2, "lost": 14, "send_error": 6, "observe_error": 2,
    }  # fmt: skip
    assert labka["slo"]["met"] is False  # 4422 / 4446 < 0.995
    assert labka["latency_seconds"]["max"] == 45.25
    assert labka["previous_month"]["availability"] == 21 / 24
    epm3 = EXPECTED[("gs-adt", "epm3")]
    assert [
        (i["start"], i["end"], i["duration_seconds"], i["cause"]) for i in epm3["incidents"]
    ] == [
        ("2026-10-01T00:00:00+02:00", "2026-10-01T00:10:00+02:00", 600, "lost"),
        ("2026-10-13T05:40:00+02:00", "2026-10-13T07:00:00+02:00", 4800, "lost"),
        ("2026-10-21T15:00:00+02:00", "2026-10-21T15:10:00+02:00", 600, "lost"),
        ("2026-10-25T02:30:00+01:00", "2026-10-25T02:40:00+01:00", 600, "late"),
        ("2026-10-31T23:50:00+01:00", "2026-11-01T00:00:00+01:00", 600, "lost"),
    ]
    # 4800 s of incident, 3600 s of it inside the window: 1200 s count as down time.
    down = 600 + 1200 + 600 + 600 + 600
    assert epm3["time_availability"] == (741 * 3600 - down) / (741 * 3600)
    assert epm3["mtbf_seconds"] == (741 * 3600 - down) / 5
    assert epm3["slo"]["met"] is True
    assert epm3["previous_month"]["availability"] == 11 / 12
    oct25 = next(d for d in labka["daily"] if d["date"] == "2026-10-25")
    assert oct25["probes"] == 150  # 25 hours
    assert oct25["availability"] == 138 / 150


async def test_monthly_report_matches_the_scenario(store_url: str) -> None:
    """Correctness: every number of the report, then a rebuild and a replay change nothing."""
    results = _results(SHOTS)
    await _write(store_url, results)
    report = await _report(store_url)

    assert report["month"] == "2026-10"
    assert report["timezone"] == "Europe/Copenhagen"
    assert report["generated_at"] == "2026-11-02T07:00:00+01:00"
    assert report["period"] == {
        "start": "2026-10-01T00:00:00+02:00",
        "end": "2026-11-01T00:00:00+01:00",
        "hours": 745,
        "measured_until": "2026-11-01T00:00:00+01:00",
    }
    assert report["partial"] is False
    rows = _rows(report)
    assert rows.keys() == EXPECTED.keys()
    for key, expected in EXPECTED.items():
        row = rows[key]
        assert row.keys() == expected.keys(), key
        assert row["incidents"] == expected["incidents"], key  # first: the likeliest culprit
        for name, value in expected.items():
            assert row[name] == value, (key, name)
    check = rows[("labka-api", "")]
    assert check["no_data"] is True
    assert check["availability"] is None
    # The contract reads back into its models unchanged: the renderers' one input.
    assert MonthlyReport.model_validate(report).model_dump(mode="json") == report

    # Rebuilt from raw rows, rollups and incidents give the identical report.
    tables = await _derived_tables(store_url)
    assert await rebuild_rollups(store_url) == len(SHOTS)
    assert await _report(store_url) == report
    assert await _derived_tables(store_url) == tables

    # A replay of every result (as after a restart) changes no number.
    await _write(store_url, results)
    assert await _report(store_url) == report
    assert await _derived_tables(store_url) == tables


DST_DAY = [s for s in SHOTS if at(25, 0, 0) <= s.slot < at(26, 0, 0)]  # 25 h, one incident
DST_INCIDENT = {
    "start": "2026-10-25T02:30:00+02:00",
    "end": "2026-10-25T03:30:00+01:00",
    "duration_seconds": 7200,
    "cause": "observe_error",
    "ended_by": "recovered",
    "open": False,
}


async def test_an_incident_spanning_two_batches_is_closed_once(store_url: str) -> None:
    """An incident still open when a batch is written is closed by a later batch, which
    also holds more results for the same flow and destination after the good one."""
    middle = at(25, 2, 30) + 5 * STEP  # inside the DST-night incident
    first = _results([s for s in DST_DAY if s.slot < middle])
    rest = _results([s for s in DST_DAY if s.slot >= middle])
    await _write(store_url, first)
    await _write(store_url, rest)
    incremental = _rows(await _report(store_url))[("gs-adt", "labka")]
    assert incremental["incidents"] == [DST_INCIDENT]
    assert incremental["mttr_seconds"] == 7200
    _, found = await _derived_tables(store_url)
    labka = [row for row in found if row[1] == "labka"]
    # (flow, destination, start_at, last_bad_at, end_at, cause, bad_results, ended_by)
    assert labka == [
        (
            "gs-adt",
            "labka",
            at(25, 2, 30),
            at(25, 2, 30) + 11 * STEP,
            at(25, 2, 30) + 12 * STEP,
            "observe_error",
            12,
            "recovered",
        )
    ]
    await rebuild_rollups(store_url)
    assert _rows(await _report(store_url))[("gs-adt", "labka")] == incremental


async def test_a_replay_within_one_batch_counts_once(store_url: str) -> None:
    """A result written twice before a flush (replayed while the first is still queued) is
    one result: the rollups and incidents must count it once, as the raw rows do."""
    once = _results(DST_DAY)
    await _write(store_url, [r for result in once for r in (result, result)], batch_size=5000)
    incremental = _rows(await _report(store_url))[("gs-adt", "labka")]
    assert incremental["probes"] == 150  # the 25 hours of 25 October, once each
    assert incremental["outcomes"] == {
        "delivered": 138, "late": 0, "lost": 10, "send_error": 0, "observe_error": 2,
    }  # fmt: skip
    assert incremental["incidents"] == [DST_INCIDENT]
    _, found = await _derived_tables(store_url)
    assert [row[-2] for row in found if row[1] == "labka"] == [12]  # bad_results
    assert await rebuild_rollups(store_url) == len(once)
    assert _rows(await _report(store_url))[("gs-adt", "labka")] == incremental


async def test_march_2026_has_743_hours(store_url: str) -> None:
    """Daylight saving starts on 29 March: the month is one hour short."""
    report = await _report(store_url, "2026-03")
    assert report["period"] == {
        "start": "2026-03-01T00:00:00+01:00",
        "end": "2026-04-01T00:00:00+02:00",
        "hours": 743,
        "measured_until": "2026-04-01T00:00:00+02:00",
    }
    assert all(row["no_data"] and row["availability"] is None for row in report["rows"])
    assert [d["date"] for d in report["rows"][0]["daily"]][-3:] == [
        "2026-03-29",
        "2026-03-30",
        "2026-03-31",
    ]


async def test_monitoring_that_began_on_the_3rd_is_a_partial_month(store_url: str) -> None:
    """Monitoring from 3 October: the two days before are not measured, not available.
    Coverage says so, the row and the report are partial, and time availability is over
    the measured time only (one lost slot of 10 minutes)."""
    begin = at(3, 0, 0)
    shots = [s for s in SHOTS if s.key == ("gs-adt", "labka") and begin <= s.slot < END]
    await _write(store_url, _results(shots))
    row = _rows(await _report(store_url))[("gs-adt", "labka")]
    measured = [s for s in shots if not s.maintenance]
    bad = [s for s in measured if not s.good]
    assert row["measured_slots"] == len(shots) == len(SLOTS) - 2 * 144
    assert row["coverage"] == len(shots) / len(SLOTS)
    assert row["not_measured_seconds"] == 2 * 86400
    assert row["first_measured"] == "2026-10-03T00:00:00+02:00"
    assert row["partial"] is True
    assert row["time_availability"] == 1 - len(bad) / len(measured)
    assert row["availability"] == sum(s.good for s in measured) / len(measured)
    first_days = row["daily"][:3]
    assert [d["coverage"] for d in first_days] == [0.0, 0.0, 1.0]
    assert [d["availability"] for d in first_days[:2]] == [None, None]

    # Every format says the same, in Danish and in English: the coverage, the partial
    # month, and that time availability is over measured time only.
    report = await _report(store_url)
    share = len(shots) / len(SLOTS)  # 93.56 %
    assert json.loads(render(report, fmt="json")) == report
    (csv_row,) = [r for r in csv.DictReader(io.StringIO(render(report, fmt="csv")))
                  if r["destination"] == "labka"]  # fmt: skip
    assert float(csv_row["coverage"]) == pytest.approx(share)
    assert csv_row["partial"] == "true"
    assert float(csv_row["not_measured_seconds"]) == 2 * 86400
    words = {
        "en": ("Partial month", "Coverage", "93.56", "measured time only"),
        "da": ("Delvis måned", "Dækning", "93,56", "kun beregnet over den målte tid"),
    }
    for lang, (partial, coverage, percent, measured_only) in words.items():
        for fmt in ("md", "html"):
            text = render(report, fmt=fmt, lang=lang)  # type: ignore[arg-type]
            for word in (partial, coverage, percent, measured_only):
                assert word in text, (lang, fmt, word)
