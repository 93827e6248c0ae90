"""The spool: what a dead process spooled is replayed once, in order, and never doubled.

A "crash" here stops a store's tasks and closes its spool file without deleting it, as
`kill -9` would leave it; the lock goes with the file descriptor. A store that cannot
reach its database is a real engine pointed at a closed port.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from probe.errors import StoreError
from probe.model import Outcome, Result, Sighting, new_probe_id
from probe.store import ProbeRow, SentRow, Store, create_engine, open_store
from probe.store.spool import BadRecord, Spool, UnknownVersion, decode, encode, read
from probe.store.tables import probes, results, sightings, spool_marks
from tests.helpers import closed_port, wait_for

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _claim(flow: str, slot: datetime, probe_id: str | None = None) -> ProbeRow:
    return ProbeRow(probe_id or new_probe_id(), flow, slot, slot, slot + timedelta(seconds=5), "a")


def _result(row: ProbeRow, outcome: Outcome = Outcome.DELIVERED) -> Result:
    return Result(
        probe_id=row.probe_id,
        flow=row.flow,
        destination="labka",
        outcome=outcome,
        latency=0.1 if outcome is Outcome.DELIVERED else None,
        latency_clock="monotonic" if outcome is Outcome.DELIVERED else None,
        duplicates=0,
        reason=None,
        slot=row.slot_at,
        resolved_at=row.slot_at + timedelta(seconds=1),
    )


def _sighting(row: ProbeRow) -> Sighting:
    return Sighting(row.probe_id, "labka", row.slot_at + timedelta(seconds=0.1), 0.0)


async def _crash(store: Store) -> None:
    """Stop as `kill -9` would: no flush, the spool file stays, its lock goes."""
    for task in store._tasks:
        task.cancel()
    await asyncio.gather(*store._tasks, return_exceptions=True)
    assert store.spool is not None
    assert store.spool._fd is not None
    os.close(store.spool._fd)
    store.spool._fd = None
    for fd in store.spool._orphans.values():
        os.close(fd)
    store.spool._orphans.clear()
    await store.engine.dispose()


def _offline_store(spool: Path) -> Store:
    """A started store that never reaches its database: everything stays in its spool."""
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/none"
    store = Store(create_engine(dead), flush_interval=3600, batch_size=10_000,
                  spool=Spool(spool, node="a"), node="a")  # fmt: skip
    store.start()
    return store


async def _counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            async def count(table: object) -> int:
                query = select(func.count()).select_from(table)  # type: ignore[arg-type]
                return int((await conn.execute(query)).scalar_one())

            return await count(probes), await count(sightings), await count(results)
    finally:
        await engine.dispose()


def test_records_round_trip() -> None:
    row = _claim("gs-adt", T0)
    items = [
        row,
        SentRow(row.probe_id, T0, None, "ACK AA Ææ"),
        _sighting(row),
        _result(row),
        _result(row, Outcome.LOST),
    ]
    for item in items:
        line = encode(item)
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert decode(line) == item


def test_a_torn_last_line_and_a_bad_line_are_skipped_and_counted(tmp_path: Path) -> None:
    a, b = _claim("f", T0), _claim("f", T0 + timedelta(seconds=1))
    path = tmp_path / "spool-x.jsonl"
    path.write_bytes(encode(a) + b"{not json}\n" + encode(b) + encode(_result(a))[:20])
    skipped: list[str] = []
    found = list(read(path, 0, skipped=skipped.append))
    assert [s.item for s in found] == [a, b]
    assert found[-1].end == len(encode(a)) + len(b"{not json}\n") + len(encode(b))
    assert skipped == ["spool_damaged", "spool_torn"]  # never skipped without a count


def test_records_carry_a_version_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    row = _claim("f", T0)
    assert json.loads(encode(row))["v"] == 1
    newer = json.loads(encode(row)) | {"v": 2}
    with pytest.raises(UnknownVersion, match="version 2; this daemon reads 1"):
        decode(json.dumps(newer).encode())
    path = tmp_path / "spool-x.jsonl"
    path.write_bytes(encode(row) + json.dumps(newer).encode() + b"\n")
    with pytest.raises(UnknownVersion):
        list(read(path, 0))  # refused, not skipped: a newer daemon replays it


def _damaged(change: dict[str, object], *, drop: tuple[str, ...] = ()) -> bytes:
    """The record of a result, changed: ``change`` set, ``drop`` taken out."""
    record = json.loads(encode(_result(_claim("f", T0)))) | change
    return json.dumps({k: v for k, v in record.items() if k not in drop}).encode() + b"\n"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        pytest.param(_damaged({}, drop=("flow",)), "invalid 'result' record: flow: Field required",
                     id="missing-field"),
        pytest.param(_damaged({}, drop=("flow", "slot")),
                     "invalid 'result' record: flow: Field required; slot: Field required",
                     id="missing-fields"),
        pytest.param(_damaged({"duplicates": "0"}),
                     "invalid 'result' record: duplicates: Input should be a valid integer",
                     id="wrong-type"),
        pytest.param(_damaged({"colour": "red"}),
                     "invalid 'result' record: colour: Extra inputs are not permitted",
                     id="unknown-field"),
        pytest.param(_damaged({"outcome": "fine"}),
                     "invalid 'result' record: outcome: Input should be 'delivered', 'late', "
                     "'lost', 'send_error' or 'observe_error'", id="unknown-outcome"),
        pytest.param(_damaged({"k": "ack"}),
                     "invalid 'ack' record: Input tag 'ack' found using 'k' does not match any "
                     "of the expected tags: 'claim', 'sent', 'sighting', 'result'",
                     id="unknown-kind"),
        pytest.param(_damaged({}, drop=("k",)),
                     "invalid 'untyped' record: Unable to extract tag using discriminator 'k'",
                     id="no-kind"),
        pytest.param(b"{not json}\n", "not JSON: b'{not json}\\n'", id="not-json"),
        pytest.param(b"[1, 2]\n", "not a JSON object: b'[1, 2]\\n'", id="not-an-object"),
    ],
)  # fmt: skip
def test_a_damaged_record_is_refused_with_what_is_wrong(line: bytes, error: str) -> None:
    with pytest.raises(BadRecord) as refused:
        decode(line)
    assert str(refused.value) == error


def test_a_record_missing_a_field_is_reported_and_counted_never_dropped_silently(
    tmp_path: Path,
) -> None:
    a, b = _claim("f", T0), _claim("f", T0 + timedelta(seconds=1))
    path = tmp_path / "spool-x.jsonl"
    path.write_bytes(encode(a) + _damaged({}, drop=("flow",)) + encode(b))
    skipped: list[str] = []
    with capture_logs() as logs:
        found = list(read(path, 0, skipped=skipped.append))
    assert [s.item for s in found] == [a, b]  # the rest is read
    assert skipped == ["spool_damaged"]  # counted (probe_store_dropped_total)
    bad = [e for e in logs if e["event"] == "spool_bad_record"]
    assert [(e["log_level"], e["file"], e["error"]) for e in bad] == [
        ("error", "spool-x.jsonl", "invalid 'result' record: flow: Field required")
    ]
    assert bad[0]["at"] == len(encode(a)) + len(_damaged({}, drop=("flow",)))


def test_records_of_earlier_daemons_are_read() -> None:
    """Written before versions, before ``span`` and ``adhoc``, by the hand-written encoder
    (offsets as ``+00:00``): all version 1."""
    lines = [
        b'{"k":"claim","probe_id":"PR1","flow":"f","slot_at":"2026-11-26T08:00:00+00:00",'
        b'"claimed_at":"2026-11-26T08:00:00+00:00","deadline_at":"2026-11-26T08:00:05+00:00",'
        b'"node":"a"}\n',
        b'{"k":"sighting","probe_id":"PR1","destination":"labka",'
        b'"seen_at":"2026-11-26T08:00:00.100000+00:00","count":1,"arrived_at":null}\n',
        b'{"k":"result","probe_id":"PR1","flow":"f","destination":"labka",'
        b'"outcome":"delivered","latency":0.1,"latency_clock":"monotonic","duplicates":0,'
        b'"reason":null,"slot":"2026-11-26T08:00:00+00:00",'
        b'"resolved_at":"2026-11-26T08:00:01+00:00","mismatch":null,"maintenance":false,"v":1}\n',
    ]
    row = _claim("f", T0, "PR1")
    assert [decode(line) for line in lines] == [row, _sighting(row), _result(row)]


async def test_a_newer_daemons_record_stops_the_replay_of_its_file_and_loses_nothing(
    store_url: str, tmp_path: Path
) -> None:
    """What comes before it is replayed; the file is kept whole, for a daemon that reads
    version 2, and replaying it again writes nothing twice."""
    spool = tmp_path / "spool"
    spool.mkdir()
    rows = [_claim("gs-adt", T0 + timedelta(seconds=i)) for i in range(3)]
    newer = json.dumps(json.loads(encode(_result(rows[0]))) | {"v": 2}).encode() + b"\n"
    orphan = spool / "spool-newer-1.jsonl"
    orphan.write_bytes(encode(rows[0]) + encode(rows[1]) + newer + encode(rows[2]))
    whole = orphan.read_bytes()
    for _ in range(2):  # a restart tries again, from the committed mark
        store = await open_store(store_url, flush_interval=0.05, spool=spool, node="a")
        store.start()
        with capture_logs() as logs:
            assert await store.recover() == 0  # the file is not replayed
        await store.close()
        refused = [e for e in logs if e["event"] == "spool_not_replayed"]
        assert [(e["log_level"], e["file"], e["error"]) for e in refused] == [
            ("error", orphan.name, "spool record version 2; this daemon reads 1")
        ]
        assert orphan.read_bytes() == whole
        assert await _counts(store_url) == (2, 0, 0)


async def test_a_torn_tail_is_cut_at_start_and_counted(store_url: str, tmp_path: Path) -> None:
    """A record cut short by a crash is cut off the orphan before the replay, so appends
    never follow half a line, and the cut is counted."""
    spool = tmp_path / "spool"
    spool.mkdir()
    rows = [_claim("gs-adt", T0 + timedelta(seconds=i)) for i in range(3)]
    orphan = spool / "spool-dead-1.jsonl"
    orphan.write_bytes(b"".join(encode(r) for r in rows) + encode(_result(rows[0]))[:30])
    store = await open_store(store_url, flush_interval=0.05, spool=spool, node="a")
    drops: list[str] = []
    store.on_drop = drops.append
    store.start()
    assert orphan.read_bytes() == b"".join(encode(r) for r in rows)
    assert drops == ["spool_torn"]
    assert await store.recover() == 3
    await store.close()
    assert await _counts(store_url) == (3, 0, 0)


async def test_crash_replays_only_what_was_not_committed(store_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = await open_store(store_url, flush_interval=0.05, spool=spool, node="a")
    first.start()
    rows = [_claim("gs-adt", T0 + timedelta(seconds=i)) for i in range(120)]
    for row in rows[:100]:
        assert await first.claim(row)
        first.add_sighting(_sighting(row))
        first.add_result(_result(row))
    await wait_for(lambda: not first.backlog, limit=10, every=0.05)
    first.flush_interval = 3600  # what follows stays in the spool only
    first.batch_size = 10_000
    # Not a wait for an event: its short wait (0.05 s) times out before this sleep ends, and
    # the write loop is then waiting on the long interval.
    await asyncio.sleep(0.1)
    for row in rows[100:]:
        assert await first.claim(row)
        first.add_sighting(_sighting(row))
        first.add_result(_result(row))
    assert await _counts(store_url) == (120, 100, 100)
    await _crash(first)

    second = await open_store(store_url, flush_interval=0.05, spool=spool, node="a")
    second.start()
    replayed = await second.recover()
    assert replayed == 40  # 20 sightings and 20 results, not the 200 already committed
    await second.close()
    # Sightings have no unique key: a second copy of any would show here.
    assert await _counts(store_url) == (120, 120, 120)
    assert not list(spool.glob("spool-*a*")), "a committed spool is deleted"


# A killed process leaves a connection unclosed: that is the point here, not a leak.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_interrupted_replay_is_finished_without_doubles(
    store_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    offline = _offline_store(spool)
    rows = [_claim("gs-adt", T0 + timedelta(seconds=i)) for i in range(300)]
    for row in rows:
        assert await offline.claim(row)  # taken locally: the database is away
        offline.record_sent(SentRow(row.probe_id, row.slot_at, None, "ACK AA"))
        offline.add_sighting(_sighting(row))
        offline.add_result(_result(row))
    assert offline.offline
    assert offline.offline_claims == 300
    await _crash(offline)

    replaying = await open_store(store_url, flush_interval=0.05, batch_size=7, spool=spool)
    replaying.start()
    task = asyncio.create_task(replaying.recover())
    engine = create_engine(store_url)
    try:
        mark = 0
        while mark == 0 and not task.done():
            await asyncio.sleep(0.005)
            async with engine.connect() as conn:
                query = select(func.max(spool_marks.c.position))
                mark = (await conn.execute(query)).scalar_one() or 0
    finally:
        await engine.dispose()
    assert not task.done(), "the replay finished before it could be interrupted"
    task.cancel()  # killed mid-replay, maybe mid-transaction
    await asyncio.gather(task, return_exceptions=True)
    await _crash(replaying)
    # As the kill would, drop what the dead replay held. The cancelled statement's cursor
    # sits in a reference cycle with its traceback, and a SQLite connection closed with a
    # live statement keeps its write lock until the cycle is collected: without this the
    # next store could wait for a collection of the oldest generation (it hung 2 in 20).
    del task
    gc.collect()
    partial = await _counts(store_url)
    assert 0 < partial[0] < 300 or 0 < partial[2] < 300, partial

    last = await open_store(store_url, flush_interval=0.05, spool=spool)
    last.start()
    await last.recover()
    await last.close()
    assert await _counts(store_url) == (300, 300, 300)
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(probes.c.probe_id, probes.c.sent_at))).all()
    finally:
        await engine.dispose()
    assert {r.probe_id for r in stored} == {r.probe_id for r in rows}
    assert all(r.sent_at is not None for r in stored)


async def test_a_slot_a_peer_claimed_during_the_outage_is_not_doubled(
    store_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    offline = _offline_store(spool)
    mine = [_claim("gs-adt", T0 + timedelta(seconds=i)) for i in range(3)]
    for row in mine:
        assert await offline.claim(row)
        offline.add_result(_result(row, Outcome.LOST))
    await _crash(offline)

    peer = await open_store(store_url, flush_interval=0.05)
    peer.start()
    theirs = _claim("gs-adt", mine[1].slot_at)  # the peer reached the database
    assert await peer.claim(theirs)
    peer.add_result(_result(theirs))
    await peer.close()

    replaying = await open_store(store_url, flush_interval=0.05, spool=spool)
    replaying.start()
    await replaying.recover()
    await replaying.close()
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(probes.c.probe_id))).scalars().all()
            done = (await conn.execute(select(results.c.probe_id, results.c.outcome))).all()
    finally:
        await engine.dispose()
    assert sorted(stored) == sorted([mine[0].probe_id, theirs.probe_id, mine[2].probe_id])
    # The peer's result stands for that slot; our dropped probe left no result behind.
    assert Counter(r.outcome for r in done) == {"lost": 2, "delivered": 1}
    assert {r.probe_id for r in done} == set(stored)


async def test_without_local_claims_a_slot_is_refused_while_the_database_is_away(
    tmp_path: Path,
) -> None:
    """`store.local_claims: false` (daemons sharing a store): no slot is claimed without
    the database, so none is probed twice; the runner skips it with reason ``store``."""
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/none"
    store = Store(create_engine(dead), flush_interval=3600, batch_size=10_000,
                  spool=Spool(tmp_path / "spool", node="a"), node="a",
                  local_claims=False)  # fmt: skip
    store.start()
    for second in range(3):
        with pytest.raises(StoreError, match="cannot claim slot"):
            await store.claim(_claim("gs-adt", T0 + timedelta(seconds=second)))
    assert store.offline
    assert store.offline_claims == 0
    await _crash(store)
