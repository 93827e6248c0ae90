"""Soak: `probe run` against `probe sim` for a long time; memory, fds and the store at the end.

Starts two real processes on 127.0.0.1, on free ports:
- `probe sim`: the HL7 engine (MLLP) fanning every message out to Labka (MLLP, forwarded to
  the daemon's listener) and to a web system (HTTP, polled by the daemon), both with a
  lognormal delay (median 300 ms), 2% loss and 1% duplicates; `--with-sql` adds EPM3's
  inbox table (SQL, polled), as in the demo;
- `probe run`: `--flows` flows (default 10) from GS over MLLP, with intervals set so that
  together they make `--rate` probes per second (default 100).

Every 10 s it samples the daemon's RSS (`VmRSS` in /proc/PID/status), its open fds
(/proc/PID/fd), its CPU, and a few of its own metrics (store backlog, probes in flight,
slots skipped). After `--duration` seconds it sends SIGTERM (the grace exceeds the
timeout, so every probe in flight resolves), waits for exit 0, and checks the store:
probes, results, and unresolved probes (a probe with no result for some destination).

Verdict (PASS needs all of them):
- RSS growth from the end of the warm-up to the end is below 10%;
- open fds after the warm-up vary by at most 5 (max - min);
- no probe is unresolved;
- the daemon exited 0 after SIGTERM.

Run:   python bench/soak.py [--duration 1800] [--warmup 300] [--rate 100]
                            [--store sqlite|postgresql+psycopg://...] [--out soak.json]
A PostgreSQL URL is migrated with `probe db upgrade` first; only probes claimed during
this run are counted. Logs, configs and the SQLite files stay in `--workdir` (default: a
new temporary folder, printed at the start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.store import create_engine

SAMPLE_EVERY = 10.0
TIMEOUT = 5.0
RSS_GROWTH_LIMIT = 0.10
FD_SPREAD_LIMIT = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sim_config(work: Path, *, engine: int, mllp_engine: int, labka: int, web: int,
               with_sql: bool) -> dict[str, Any]:  # fmt: skip
    faults = {
        "delay": {"lognormal": {"median": "300ms", "sigma": 0.5}},
        "loss": 0.02,
        "duplicates": 0.01,
    }
    destinations: dict[str, Any] = {
        "labka": {"kind": "mllp", "target": f"127.0.0.1:{labka}", "encoding": "latin-1",
                  **faults},
        "web": {"kind": "http", "listen": f"127.0.0.1:{web}", **faults},
    }  # fmt: skip
    if with_sql:
        destinations["epm3"] = {
            "kind": "sql", "url": f"sqlite+aiosqlite:///{work / 'epm3.db'}",
            "table": "epm3_inbox", **faults,
        }  # fmt: skip
    return {
        "seed": 1800,
        "truth": None,  # the truth log is kept in memory too: not for a long run
        "engine": {"listen": f"127.0.0.1:{engine}"},
        "mllp_engine": {"listen": f"127.0.0.1:{mllp_engine}", "encoding": "latin-1"},
        "destinations": destinations,
    }


def probe_config(work: Path, store_url: str, *, flows: int, rate: float, mllp_engine: int,
                 labka: int, web: int, server: int, with_sql: bool) -> dict[str, Any]:  # fmt: skip
    interval_ms = round(flows / rate * 1000)
    destinations: list[dict[str, Any]] = [
        {"name": "labka", "type": "mllp", "listen": f"127.0.0.1:{labka}", "match": "PID-3",
         "encoding": "latin-1", "duplicate_window": "200ms"},
        {"name": "web", "type": "http",
         "url": f"http://127.0.0.1:{web}/received?probe_id=${{probe_id}}",
         "match": {"jsonpath": "$.events[*].probe_id"}, "time_field": "received_at"},
    ]  # fmt: skip
    if with_sql:
        destinations.append({
            "name": "epm3", "type": "sql", "url": f"sqlite+aiosqlite:///{work / 'epm3.db'}",
            "query": "SELECT received_at FROM epm3_inbox WHERE probe_id = :probe_id",
            "time_column": "received_at",
        })  # fmt: skip
    return {
        "store": {"url": store_url},
        "server": {"listen": f"127.0.0.1:{server}"},
        "shutdown_grace": f"{int(TIMEOUT * 3)}s",
        "defaults": {
            "interval": f"{interval_ms}ms",
            "timeout": f"{int(TIMEOUT)}s",
            "send_timeout": "2s",
            "poll": "250ms",
            "max_in_flight": max(20, int(rate / flows * TIMEOUT * 2)),
            "slo": {"latency": "2s", "objective": 0.95},
        },
        "flows": [
            {
                "name": f"soak-{n:02d}",
                "source": {
                    "type": "mllp",
                    "host": "127.0.0.1",
                    "port": mllp_engine,
                    "message": "adt_a08",
                    "encoding": "latin-1",
                },
                "destinations": destinations,
            }
            for n in range(flows)
        ],
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def metrics(port: int) -> dict[str, float]:
    """A few of the daemon's own series, summed over their labels."""
    wanted = ("probe_store_backlog", "probe_in_flight", "probe_slots_skipped_total",
              "probe_store_write_errors_total")  # fmt: skip
    found = dict.fromkeys(wanted, 0.0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (OSError, urllib.error.URLError):
        return {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in found:
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


def wait_until(check: Any, proc: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    end = time.monotonic() + limit
    while not check():
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}; see {log}")
        if time.monotonic() > end:
            raise SystemExit(f"{proc.args!r} not ready within {limit}s; see {log}")
        time.sleep(0.2)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def logged(log: Path, event: str) -> bool:
    return f'"event": "{event}"' in log.read_text(errors="replace")


async def store_counts(url: str, since: datetime, destinations: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from probe.store.tables import probes, results

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            mine = select(probes.c.probe_id).where(probes.c.claimed_at >= since).subquery()
            n_probes = (await conn.execute(select(func.count()).select_from(mine))).scalar_one()
            n_results = (
                await conn.execute(
                    select(func.count())
                    .select_from(results)
                    .where(results.c.probe_id.in_(select(mine.c.probe_id)))
                )
            ).scalar_one()
            per_probe = (
                select(probes.c.probe_id, probes.c.sent_at,
                       func.count(results.c.destination).label("n"))
                .select_from(probes.outerjoin(results, results.c.probe_id == probes.c.probe_id))
                .where(probes.c.claimed_at >= since)
                .group_by(probes.c.probe_id, probes.c.sent_at)
                .subquery()
            )  # fmt: skip
            short = per_probe.c.n < len(destinations)
            unresolved = (
                await conn.execute(select(func.count()).select_from(per_probe).where(short))
            ).scalar_one()
            unresolved_sent = (
                await conn.execute(
                    select(func.count())
                    .select_from(per_probe)
                    .where(short, per_probe.c.sent_at.is_not(None))
                )
            ).scalar_one()
            outcomes: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(results.c.outcome, func.count())
                        .where(results.c.probe_id.in_(select(mine.c.probe_id)))
                        .group_by(results.c.outcome)
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    return {
        "probes": int(n_probes),
        "results": int(n_results),
        "unresolved": int(unresolved),
        "unresolved_sent": int(unresolved_sent),
        **{f"outcome_{k}": int(v) for k, v in outcomes.items()},
    }


def run(args: argparse.Namespace) -> int:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="probe-soak-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}", flush=True)
    store_url = f"sqlite+aiosqlite:///{work / 'probe.db'}" if args.store == "sqlite" else args.store
    ports = {name: free_port() for name in ("engine", "mllp_engine", "labka", "web", "server")}
    sim_file, probe_file = work / "sim.yaml", work / "probe.yaml"
    sim_file.write_text(yaml.safe_dump(sim_config(
        work, engine=ports["engine"], mllp_engine=ports["mllp_engine"], labka=ports["labka"],
        web=ports["web"], with_sql=args.with_sql)))  # fmt: skip
    probe_file.write_text(yaml.safe_dump(probe_config(
        work, store_url, flows=args.flows, rate=args.rate, mllp_engine=ports["mllp_engine"],
        labka=ports["labka"], web=ports["web"], server=ports["server"],
        with_sql=args.with_sql), sort_keys=False))  # fmt: skip
    destinations = ["labka", "web"] + (["epm3"] if args.with_sql else [])
    probe = [sys.executable, "-m", "probe", "--log-level", "warning", "--log-format", "json"]
    if store_url.startswith("postgresql"):
        subprocess.run([*probe, "db", "upgrade", "-c", str(probe_file)], check=True)

    children: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work)
        children.append(proc)
        return proc

    samples: list[dict[str, Any]] = []
    exit_code: int | None = None
    try:
        sim_log, daemon_log = work / "sim.log", work / "probe.log"
        sim = start([*probe[:3], "--log-level", "info", "sim", "-c", str(sim_file)], sim_log)
        wait_until(lambda: logged(sim_log, "sim_started"), sim, sim_log, 30)
        started = datetime.now(UTC)
        daemon = start([*probe, "run", "-c", str(probe_file)], daemon_log)
        wait_until(lambda: ready(ports["server"]), daemon, daemon_log, 30)
        t0 = time.monotonic()
        print(f"running {args.duration:.0f}s (warm-up {args.warmup:.0f}s) at {args.rate:g} "
              f"probes/s over {args.flows} flows -> {', '.join(destinations)}; "
              f"daemon pid {daemon.pid}", flush=True)  # fmt: skip
        cpu_last, sim_cpu_last, t_last = cpu_seconds(daemon.pid), cpu_seconds(sim.pid), t0
        while True:
            if daemon.poll() is not None or sim.poll() is not None:
                raise SystemExit(f"a process died early: daemon {daemon.returncode}, "
                                 f"sim {sim.returncode}; see {work}")  # fmt: skip
            now = time.monotonic()
            cpu, sim_cpu = cpu_seconds(daemon.pid), cpu_seconds(sim.pid)
            elapsed = max(now - t_last, 1e-9)
            sample = {
                "t": round(now - t0, 1),
                "rss_kb": rss_kb(daemon.pid),
                "fds": fd_count(daemon.pid),
                "cpu_pct": round(100 * (cpu - cpu_last) / elapsed, 1),
                "sim_cpu_pct": round(100 * (sim_cpu - sim_cpu_last) / elapsed, 1),
                "load1": os.getloadavg()[0],
                **metrics(ports["server"]),
            }
            cpu_last, sim_cpu_last, t_last = cpu, sim_cpu, now
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if now - t0 >= args.duration:
                break
            time.sleep(min(SAMPLE_EVERY, max(0.0, t0 + args.duration - time.monotonic())))
        daemon.send_signal(signal.SIGTERM)
        try:
            exit_code = daemon.wait(timeout=TIMEOUT * 3 + 30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            exit_code = daemon.wait()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    counts = asyncio.run(store_counts(store_url, started, destinations))
    after = [s for s in samples if s["t"] >= args.warmup] or samples[-1:]
    rss_warm, rss_end = after[0]["rss_kb"], samples[-1]["rss_kb"]
    growth = (rss_end - rss_warm) / rss_warm
    fds = [s["fds"] for s in after]
    checks = {
        "rss_growth_below_10pct": growth < RSS_GROWTH_LIMIT,
        "fds_stable": max(fds) - min(fds) <= FD_SPREAD_LIMIT,
        "no_unresolved": counts["unresolved"] == 0,
        "exit_0": exit_code == 0,
    }
    summary = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rate": args.rate,
        "flows": args.flows,
        "store": "sqlite" if args.store == "sqlite" else "postgresql",
        "destinations": destinations,
        "rss_kb_end_of_warmup": rss_warm,
        "rss_kb_end": rss_end,
        "rss_growth_pct": round(100 * growth, 2),
        "fds_min_after_warmup": min(fds),
        "fds_max_after_warmup": max(fds),
        "cpu_pct_mean_after_warmup": round(sum(s["cpu_pct"] for s in after) / len(after), 1),
        "probes_per_s": round(counts["probes"] / args.duration, 1),
        "slots_skipped": samples[-1].get("probe_slots_skipped_total"),
        "store_write_errors": samples[-1].get("probe_store_write_errors_total"),
        "exit_code": exit_code,
        **counts,
        "checks": checks,
        "verdict": "PASS" if all(checks.values()) else "FAIL",
        "workdir": str(work),
    }
    print()
    print(f"RSS at end of warm-up  {rss_warm / 1024:8.1f} MiB")
    print(f"RSS at end             {rss_end / 1024:8.1f} MiB  ({100 * growth:+.2f}%, limit "
          f"+{100 * RSS_GROWTH_LIMIT:.0f}%)")  # fmt: skip
    print(f"fds after warm-up      min {min(fds)}, max {max(fds)} (spread limit "
          f"{FD_SPREAD_LIMIT})")  # fmt: skip
    print(f"daemon CPU after warm-up  {summary['cpu_pct_mean_after_warmup']}% of one core")
    print(f"probes {counts['probes']} ({summary['probes_per_s']}/s), results "
          f"{counts['results']}, unresolved {counts['unresolved']} (sent: "
          f"{counts['unresolved_sent']}), slots skipped {summary['slots_skipped']}, "
          f"store write errors {summary['store_write_errors']}")  # fmt: skip
    print("outcomes", {k[8:]: v for k, v in counts.items() if k.startswith("outcome_")})
    print(f"exit code {exit_code}")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(summary["verdict"])
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    return 0 if summary["verdict"] == "PASS" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds in all")
    parser.add_argument("--warmup", type=float, default=300.0, help="seconds before the baseline")
    parser.add_argument("--rate", type=float, default=100.0, help="probes per second")
    parser.add_argument("--flows", type=int, default=10, help="flows sharing the rate")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a PostgreSQL URL")
    parser.add_argument("--with-sql", action="store_true", help="add the EPM3 SQL destination")
    parser.add_argument("--workdir", help="folder for configs, logs and SQLite files")
    parser.add_argument("--out", help="write the summary and samples here as JSON")
    args = parser.parse_args()
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
