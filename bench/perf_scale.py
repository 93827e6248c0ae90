"""Rows 4, 5 and 7: 5,000 flows x 3 destinations: RSS, /metrics scrape time, start-up.

Every flow is an MLLP source (its own connection) to the simulator's HL7 engine, which
forwards each message to three MLLP destinations `a`, `b`, `c`: three listener ports of
the daemon, each shared by all 5,000 flows. Real `probe run` and `probe sim` processes.

- Row 7 (start-up to first probe): every flow at interval 1 s, so the first slot comes at
  most 1 s after the scheduler starts. Measured from spawning `probe run` to the first
  probe's arrival at the simulator's engine (its truth log), and to /readyz answering 200.
  Stopped after that.
- Rows 4 and 5: every flow at interval 60 s (1 probe/min each, 83 probes/s on average,
  all 5,000 in the same second: slots are aligned). The daemon is started just after a
  minute boundary; RSS and five /metrics scrapes are taken while idle (before the first
  slot), then RSS is sampled every 0.5 s through ``bursts`` minute boundaries (and one
  scrape 20 s after each boundary).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.perf_common import (
    LOCALHOST,
    Procs,
    RowResult,
    free_port,
    http_get,
    loadavg,
    py_spy,
    rss_mb,
    say,
    sqlite_counts,
    start_probe,
    start_sim,
    wait_ready,
    write_yaml,
)

FLOWS = 5000
DESTS = ("a", "b", "c")


def _configs(
    work: Path, *, flows: int, interval: str, truth: bool = False
) -> tuple[Path, Path, int, int]:
    engine, metrics = free_port(), free_port()
    listeners = {d: free_port() for d in DESTS}
    sim = {
        "seed": 1,
        "truth": str(work / "truth.jsonl") if truth else None,
        "engine": {"listen": f"{LOCALHOST}:{free_port()}"},
        "mllp_engine": {"listen": f"{LOCALHOST}:{engine}", "encoding": "utf-8"},
        "destinations": {
            d: {"kind": "mllp", "target": f"{LOCALHOST}:{port}", "delay": {"fixed": "20ms"}}
            for d, port in listeners.items()
        },
    }
    probe = {
        "store": {"url": f"sqlite+aiosqlite:///{work / 'probe.db'}"},
        "server": {"listen": f"{LOCALHOST}:{metrics}"},
        "shutdown_grace": "5s",
        "defaults": {"timeout": "30s", "send_timeout": "20s"},
        "flows": [
            {
                "name": f"flow-{i:05d}",
                "interval": interval,
                "source": {"type": "mllp", "host": LOCALHOST, "port": engine,
                           "message": "adt_a08"},
                "destinations": [
                    {"name": d, "type": "mllp", "listen": f"{LOCALHOST}:{port}"}
                    for d, port in listeners.items()
                ],
            }
            for i in range(flows)
        ],
    }  # fmt: skip
    return (
        write_yaml(work / "sim.yaml", sim),
        write_yaml(work / "probe.yaml", probe),
        engine,
        metrics,
    )


def _first_arrival(truth: Path) -> float | None:
    """When the simulator's engine received the first probe (the truth log's first line).

    Independent of how the store queues its writes (claims may sit in the spool)."""
    try:
        with truth.open() as lines:
            line = lines.readline()
    except OSError:
        return None
    if not line.endswith("\n"):
        return None
    return float(json.loads(line)["received_at"])


def _first_claim(db: Path) -> float | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT min(claimed_at) FROM probes").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if not row or row[0] is None:
        return None
    value = row[0]
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace(" ", "T"))
        if parsed.tzinfo is None:
            from datetime import UTC

            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return float(value)


def startup(*, flows: int = FLOWS) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="perf-start-") as tmp, Procs(Path(tmp)) as procs:
        work = Path(tmp)
        sim_cfg, probe_cfg, engine, metrics = _configs(work, flows=flows, interval="1s", truth=True)
        start_sim(procs, sim_cfg, engine)
        daemon = start_probe(procs, probe_cfg)
        spawned = daemon.started
        ready: float | None = None
        first: float | None = None
        deadline = time.monotonic() + 60
        while first is None and time.monotonic() < deadline:
            daemon.check()
            first = _first_arrival(work / "truth.jsonl") or _first_claim(work / "probe.db")
            if ready is None:
                try:
                    status, _ = http_get(f"http://{LOCALHOST}:{metrics}/readyz", timeout=0.5)
                    if status == 200:
                        ready = time.time()
                except OSError:
                    pass
            time.sleep(0.01)
        rss = rss_mb(daemon.pid)
        return {
            "first_probe_s": (first - spawned) if first else float("nan"),
            "ready_s": (ready - spawned) if ready else float("nan"),
            "rss_mb": rss,
        }


def _scrape_time(port: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    _, body = http_get(f"http://{LOCALHOST}:{port}/metrics", timeout=60)
    return time.perf_counter() - t0, len(body)


def load_run(*, bursts: int, flows: int = FLOWS, profile: Path | None = None) -> dict[str, Any]:
    # Start just after a minute boundary, so there is an idle stretch before the first slot.
    wait = (62 - time.time() % 60) % 60
    if wait > 50:  # already just past a boundary
        wait = 0.0
    say(f"  rows 4/5: waiting {wait:.0f}s for a minute boundary before starting")
    time.sleep(wait)
    with tempfile.TemporaryDirectory(prefix="perf-scale-") as tmp, Procs(Path(tmp)) as procs:
        work = Path(tmp)
        sim_cfg, probe_cfg, engine, metrics = _configs(work, flows=flows, interval="60s")
        sim = start_sim(procs, sim_cfg, engine)
        daemon = start_probe(procs, probe_cfg)
        ready = wait_ready(daemon, metrics)
        time.sleep(3)
        idle_rss = rss_mb(daemon.pid)
        idle_scrapes = [_scrape_time(metrics) for _ in range(5)]
        idle_rss_after = rss_mb(daemon.pid)
        load = loadavg()
        next_slot = (int(time.time()) // 60 + 1) * 60
        if next_slot - time.time() < 2:
            raise RuntimeError("started too close to a minute boundary; run again")
        end = next_slot + 60 * (bursts - 1) + 45
        samples: list[float] = []
        busy_scrapes: list[float] = []
        spy = None
        while time.time() < end:
            daemon.check()
            samples.append(rss_mb(daemon.pid))
            since = time.time() - next_slot
            if since >= 0 and profile is not None and spy is None:
                spy = py_spy(daemon.pid, 30, profile)
            if 20 <= since % 60 < 20.5 and since > 0:
                busy_scrapes.append(_scrape_time(metrics)[0])
            time.sleep(0.5)
        if spy is not None:
            spy.wait(timeout=60)
        final_rss = rss_mb(daemon.pid)
        daemon.stop(timeout=60)
        sim.stop()
        counts = sqlite_counts(work / "probe.db")
        return {
            "ready_s": ready - daemon.started,
            "idle_rss_mb": max(idle_rss, idle_rss_after),
            "idle_scrape_s": [s for s, _ in idle_scrapes],
            "scrape_bytes": idle_scrapes[0][1],
            "busy_scrape_s": busy_scrapes,
            "load_max_rss_mb": max(samples) if samples else float("nan"),
            "final_rss_mb": final_rss,
            "counts": counts,
            "load": load,
        }


def rows457(*, quick: bool, only: set[int] | None = None) -> list[RowResult]:
    out: list[RowResult] = []
    want = only or {4, 5, 7}
    if 7 in want:
        s = startup()
        note = (
            f"{FLOWS} flows x 3 MLLP destinations, interval 1s: spawn -> /readyz 200 "
            f"{s['ready_s']:.2f}s, spawn -> first probe at the engine {s['first_probe_s']:.2f}s "
            f"(includes up to 1s waiting for the first aligned slot); RSS then "
            f"{s['rss_mb']:.0f} MB; load {loadavg()}"
        )
        say("  row 7:", note)
        out.append(RowResult(7, "Start-up to first probe, 5,000 flows x 3 destinations",
                             s["first_probe_s"], "s", "<= 3 s", s["first_probe_s"] <= 3.0,
                             notes=[note], details=s))  # fmt: skip
    if want & {4, 5}:
        r = load_run(bursts=1 if quick else 2)
        c = r["counts"]
        rss = max(r["idle_rss_mb"], r["load_max_rss_mb"])
        note4 = (
            f"idle {r['idle_rss_mb']:.0f} MB; at 1 probe/min per flow (5,000 probes per "
            f"minute in one aligned burst, {1 if quick else 2} burst(s)): max "
            f"{r['load_max_rss_mb']:.0f} MB, at the end {r['final_rss_mb']:.0f} MB; store: "
            f"{c.get('probes')} probes, {c.get('delivered', 0)} delivered results, "
            f"{c.get('unresolved')} probes unresolved after stop; load {r['load']}"
        )
        say("  row 4:", note4)
        if 4 in want:
            out.append(RowResult(4, "RSS, 5,000 flows x 3 destinations (idle / 1 probe/min)",
                                 rss, "MB", "<= 150 MB", rss <= 150, notes=[note4],
                                 details=r))  # fmt: skip
        idle = r["idle_scrape_s"]
        med = statistics.median(idle)
        busy = ", ".join(f"{b * 1000:.0f}" for b in r["busy_scrape_s"]) or "none"
        note5 = (
            f"{r['scrape_bytes'] / 1e6:.1f} MB exposition; idle: median {med * 1000:.0f} ms, "
            f"max {max(idle) * 1000:.0f} ms of 5 scrapes; 20 s after a burst: {busy} ms"
        )
        say("  row 5:", note5)
        if 5 in want:
            out.append(RowResult(5, "/metrics scrape, 5,000 flows x 3 destinations (idle, median)",
                                 med * 1000, "ms", "<= 200 ms", med <= 0.2, notes=[note5],
                                 details=r))  # fmt: skip
    return sorted(out, key=lambda r: r.row)
