"""How close are the daemon's latencies to the truth, and what does a probe cost?

Runs the real daemon against the real simulator in one process, on SQLite, for one flow
with two HTTP-polled destinations (fixed delay, some loss), then holds every result
against the simulator's ground-truth log and prints:

- latency error percentiles: measured minus true latency (engine receipt to visibility),
  per clock (our monotonic clock with polling, and the destination's own arrival time via
  ``time_field``);
- lost probes: ours against the truth;
- CPU seconds per probe for the whole process (daemon + simulator together).

Run:  python bench/accuracy.py [--probes 300] [--interval 0.05] [--poll 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe import logs
from probe.config.loader import load_config
from probe.engine.daemon import Daemon, wait_started
from probe.sim import Simulator, parse_sim_config, read_truth
from tests.helpers import fetch_rows


def _configs(work: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    dest = {"delay": {"fixed": f"{int(args.delay * 1000)}ms"}, "loss": args.loss}
    sim = {"seed": 1, "truth": str(work / "truth.jsonl"), "destinations": {"a": dest, "b": dest}}
    probe = {
        "store": {"url": f"sqlite+aiosqlite:///{work / 'probe.db'}"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "30s",
        "defaults": {"poll": f"{int(args.poll * 1000)}ms", "timeout": "3s", "max_in_flight": 500},
    }
    return sim, probe


def _flow(sim: Simulator, interval: float) -> dict[str, Any]:
    def dest(name: str, clock_field: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": name,
            "type": "http",
            "url": sim.url(name) + "/received?probe_id=${probe_id}",
            "match": {"jsonpath": "$.events[*].probe_id"},
        }
        if clock_field:
            spec["time_field"] = "received_at"
        return spec

    return {
        "name": "gs",
        "interval": f"{int(interval * 1000)}ms",
        "source": {
            "type": "http",
            "method": "POST",
            "url": sim.url("engine") + "/gs/events",
            "body": '{"probe_id": "${probe_id}"}',
            "expect_status": [202],
        },
        "destinations": [dest("a", False), dest("b", True)],
    }


async def run(args: argparse.Namespace) -> None:
    logs.configure(level="error", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim_cfg, probe_cfg = _configs(work, args)
        async with Simulator(parse_sim_config(sim_cfg)) as sim:
            probe_cfg["flows"] = [_flow(sim, args.interval)]
            (work / "probe.yaml").write_text(yaml.safe_dump(probe_cfg))
            daemon = Daemon(load_config(work / "probe.yaml"), handle_signals=False)
            cpu0, wall0 = time.process_time(), time.monotonic()
            task = asyncio.create_task(daemon.run())
            await wait_started(daemon, task)
            await asyncio.sleep(args.probes * args.interval)
            daemon.request_stop()
            await task
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        probes, results = await fetch_rows(probe_cfg["store"]["url"])
        truth = {(t.probe_id, t.destination): t for t in read_truth(work / "truth.jsonl")}
    _report(args, probes, results, truth, cpu=cpu, wall=wall)


def _report(
    args: argparse.Namespace, probes: list[Any], results: list[Any], truth: dict[Any, Any],
    *, cpu: float, wall: float,
) -> None:  # fmt: skip
    print(
        f"probes {len(probes)}, results {len(results)}, wall {wall:.1f}s, interval "
        f"{args.interval}s, poll {args.poll}s, delay {args.delay}s, loss {args.loss}"
    )
    per_probe = cpu / max(len(probes), 1) * 1000
    print(f"CPU {cpu:.2f}s = {per_probe:.2f} ms per probe (daemon + simulator, 2 destinations)")
    for dest, clock in (("a", "monotonic"), ("b", "destination")):
        ours = [r for r in results if r.destination == dest]
        errors = sorted(
            (r.latency_s - _true_latency(truth[(r.probe_id, dest)])) * 1000
            for r in ours if r.outcome == "delivered"
        )  # fmt: skip
        lost = {r.probe_id for r in ours if r.outcome == "lost"}
        true_lost = {pid for (pid, d), t in truth.items() if d == dest and t.action == "lost"}
        q = statistics.quantiles(errors, n=100) if len(errors) > 1 else [0.0] * 99
        print(
            f"  {dest} ({clock:11}) delivered {len(errors):4}  lost {len(lost):3} "
            f"(truth {len(true_lost):3}, equal: {lost == true_lost})  error ms: "
            f"min {errors[0]:6.1f} p50 {q[49]:6.1f} p95 {q[94]:6.1f} p99 {q[98]:6.1f} "
            f"max {errors[-1]:6.1f}"
        )


def _true_latency(record: Any) -> float:
    """From the engine taking the message in to the destination showing it."""
    return float(record.visible_at - record.received_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--delay", type=float, default=0.3)
    parser.add_argument("--loss", type=float, default=0.1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
