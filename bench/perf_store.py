"""Row 6: store write throughput, batched, on SQLite and PostgreSQL.

In this process: `open_store(url)` with the config's defaults (flush_interval 0.2 s,
batch_size 2000) and a spool directory, as the daemon opens it, `start()`, then
`add_result` for N results (200 flows x 2 destinations, one slot per minute going back in
time, 99% delivered with a latency, the rest spread over the other outcomes), in chunks of
1,000 with an `await asyncio.sleep(0)` between chunks, as fast as the producer can. Each
result is appended to the spool file by `add_result`, and each batch commits its spool
mark with its rows, as in the daemon. The clock stops when `backlog` is 0, which happens
after the last batch's transaction committed (results, rollups, incidents, spool mark).
results/s = N / that time.

Two producers are measured:
- ``burst``: all N enqueued at once-ish (the loop above);
- ``paced``: 2,000 results every 50 ms (40,000/s offered), closer to a daemon resolving
  a steady stream.

Each database is fresh: SQLite a temp file (migrated by `open_store`), PostgreSQL a new
database `bench_perf_store` created with `createdb` and upgraded with `probe db upgrade`.
`--no-spool` (`python -m bench.perf_store`) leaves the spool out, as the runs up to
commit e2c5be9 did.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.perf_common import PROBE, RowResult, loadavg, say, write_yaml
from probe.model import Outcome, Result, new_probe_id

PG_DB = "bench_perf_store"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"


def _results(n: int) -> list[Result]:
    rng = random.Random(7)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    out = []
    per_slot = 400
    bad = [Outcome.LATE, Outcome.LOST, Outcome.SEND_ERROR, Outcome.OBSERVE_ERROR]
    slots = (n + per_slot - 1) // per_slot
    for i in range(n):
        # Oldest first, as a daemon resolves them (the derivation reads slot order, and a
        # result behind its pair's watermark rewinds the pair: see probe/store/incidents.py).
        slot = now - timedelta(minutes=slots - i // per_slot)
        k = i % per_slot
        outcome = Outcome.DELIVERED if rng.random() < 0.99 else rng.choice(bad)
        latency = (
            rng.lognormvariate(-1.0, 0.6) if outcome in (Outcome.DELIVERED, Outcome.LATE) else None
        )
        out.append(
            Result(
                probe_id=new_probe_id(),
                flow=f"flow-{k // 2:03d}",
                destination="ab"[k % 2],
                outcome=outcome,
                latency=latency,
                latency_clock="monotonic" if latency is not None else None,
                duplicates=0,
                reason=None if outcome is Outcome.DELIVERED else "timeout",
                slot=slot,
                resolved_at=slot + timedelta(seconds=1),
                span=60.0,
            )
        )
    return out


async def _measure(
    url: str, n: int, *, paced: bool, batch_size: int, spool: Path | None
) -> dict[str, Any]:
    from probe.store import open_store

    store = await open_store(url, flush_interval=0.2, batch_size=batch_size, spool=spool)
    store.start()
    items = _results(n)
    try:
        t0 = time.perf_counter()
        step = 2000 if paced else 1000
        for i in range(0, n, step):
            for r in items[i : i + step]:
                store.add_result(r)
            await asyncio.sleep(0.05 if paced else 0)
        enqueued = time.perf_counter() - t0
        while store.backlog:  # noqa: ASYNC110 - the store has no event for "flushed"
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
    finally:
        await store.close()
    return {"n": n, "seconds": elapsed, "enqueue_s": enqueued, "per_s": n / elapsed}


def _pg_reset() -> None:
    base = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(["dropdb", *base, "--if-exists", PG_DB], check=True, capture_output=True)
    subprocess.run(["createdb", *base, PG_DB], check=True, capture_output=True)


def _pg_upgrade(work: Path) -> None:
    cfg = write_yaml(work / "pg.yaml", {"store": {"url": PG_URL}})
    subprocess.run([PROBE, "db", "upgrade", "-c", str(cfg)], check=True, capture_output=True)


def measure_all(
    n: int,
    *,
    batch_size: int = 2000,
    producers: tuple[bool, ...] = (False, True),
    spool: bool = True,
) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="perf-store-") as tmp:
        work = Path(tmp)
        for db in ("sqlite", "postgresql"):
            for paced in producers:
                if db == "sqlite":
                    path = work / f"store-{paced}.db"
                    url = f"sqlite+aiosqlite:///{path}"
                else:
                    _pg_reset()
                    _pg_upgrade(work)
                    url = PG_URL
                spool_dir = work / f"spool-{db}-{paced}" if spool else None
                r = asyncio.run(
                    _measure(url, n, paced=paced, batch_size=batch_size, spool=spool_dir)
                )
                r |= {"db": db, "producer": "paced" if paced else "burst",
                      "batch_size": batch_size, "spool": spool, "load": loadavg()}  # fmt: skip
                say(f"  row 6: {db:10} {r['producer']:5} batch {batch_size}"
                    f"{'' if spool else ', no spool'}: {n} results in "
                    f"{r['seconds']:.2f}s = {r['per_s']:,.0f}/s (load {r['load']})")  # fmt: skip
                out.append(r)
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", PG_DB],
                   capture_output=True)  # fmt: skip
    return out


def main() -> None:
    """Run the store measurement alone."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--paced", action="store_true", help="also the paced producer")
    parser.add_argument("--no-spool", action="store_true", help="no spool file (not as run)")
    args = parser.parse_args()
    producers = (False, True) if args.paced else (False,)
    measure_all(args.n, batch_size=args.batch_size, producers=producers, spool=not args.no_spool)


def row6(*, quick: bool) -> RowResult:
    n = 3_000 if quick else 20_000
    runs = measure_all(n, producers=(False,) if quick else (False, True))
    worst = min(r["per_s"] for r in runs)
    notes = [
        f"{r['db']} {r['producer']} (batch_size {r['batch_size']}, spool): {r['n']:,} results in "
        f"{r['seconds']:.2f}s = {r['per_s']:,.0f} results/s (load {r['load']})"
        for r in runs
    ]
    name = "Store write throughput, batched (worst of SQLite/PostgreSQL x burst/paced)"
    return RowResult(6, name,
                     worst, "results/s", ">= 20,000 results/s", worst >= 20_000, notes=notes,
                     details={"runs": runs})  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
