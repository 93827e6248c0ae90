"""Where the RSS of a 5,000 flows x 3 destinations daemon goes, step by step, in-process.

Loads the same config as row 4 (`bench/perf_scale.py`) and reports the RSS after each
start-up step the daemon takes: imports, `load_config`, `resolve_flows`, `Metrics.declare`,
building the transports (`Runner.open`, listeners bound), and adding the scheduler jobs.
Each step's time is printed too (a start-up breakdown for row 7).

    /work/venv/bin/python -m bench.perf_memory [--flows 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.perf_common import rss_mb
from bench.perf_scale import _configs


def _peak_mb() -> float:
    """The RSS high-water mark (VmHWM): freed heap is seldom given back, so it stays."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _report(step: str, t0: float, before: float) -> tuple[float, float]:
    elapsed = time.perf_counter() - t0
    gc.collect()
    now = rss_mb(__import__("os").getpid())
    print(
        f"{step:38} +{now - before:7.1f} MB  (RSS {now:6.1f} MB, peak {_peak_mb():6.1f} MB)"
        f"  {elapsed:6.2f} s"
    )
    return time.perf_counter(), now


async def main(flows: int) -> None:
    t, rss = time.perf_counter(), rss_mb(__import__("os").getpid())
    from probe.config.loader import load_config
    from probe.config.models import resolve_flows
    from probe.engine.runner import Runner
    from probe.engine.schedule import Scheduler
    from probe.metrics.registry import Metrics
    from probe.store import open_store
    from probe.transports import Resources

    t, rss = _report("imports", t, rss)
    with tempfile.TemporaryDirectory() as tmp:
        # Written by another process, so that its memory is not in this one's peak.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            _, cfg, _, _ = pool.submit(_configs, Path(tmp), flows=flows, interval="60s").result()
        t = time.perf_counter()
        loaded = load_config(cfg)
        t, rss = _report(f"load_config ({cfg.stat().st_size / 1e6:.1f} MB YAML)", t, rss)
        specs = resolve_flows(loaded.config)
        t, rss = _report("resolve_flows", t, rss)
        metrics = Metrics(loaded.config.labels)
        metrics.declare(specs)
        t, rss = _report("Metrics.declare", t, rss)
        store = await open_store(f"sqlite+aiosqlite:///{tmp}/m.db")
        t, rss = _report("open_store (SQLite, migrated)", t, rss)
        runner = Runner(store=store, metrics=metrics)
        resources = Resources()
        await runner.open(specs, resources)
        t, rss = _report("Runner.open (sources, observers)", t, rss)
        scheduler = Scheduler(runner.run_slot, metrics, timezone="UTC")
        for flow in specs:
            scheduler.add(flow)
        t, rss = _report("Scheduler.add x flows", t, rss)
        body = metrics.exposition()
        t, rss = _report(f"one exposition ({len(body) / 1e6:.0f} MB, kept)", t, rss)
        del body
        await runner.aclose()
        await resources.aclose()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=5000)
    asyncio.run(main(parser.parse_args().flows))
