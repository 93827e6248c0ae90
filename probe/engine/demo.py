"""``probe demo``: the simulator and the daemon together, on SQLite, for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from probe.config.loader import load_config
from probe.engine.daemon import Daemon, wait_started
from probe.model import utcnow
from probe.sim import Simulator, load_sim_config
from probe.store import create_engine
from probe.store.tables import probes, results


def data_file(name: str) -> Path:
    """A demo config: packaged in the wheel, or in ``config/`` of a source checkout."""
    packaged = resources.files("probe") / "data" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "config" / name


async def run_demo(*, duration: float, workdir: Path) -> int:
    """Run for ``duration`` seconds (or until Ctrl-C), then print what was measured."""
    loaded = load_config(data_file("demo.yaml"))
    sim_config = load_sim_config(data_file("demo-sim.yaml"))
    database = make_url(loaded.config.store.url).database or ""
    started_at = utcnow()
    async with Simulator(sim_config) as sim:
        daemon = Daemon(loaded)
        run = asyncio.create_task(daemon.run())
        await wait_started(daemon, run)
        assert daemon.server is not None
        landscape = "".join(f"    {name:12} {where}\n" for name, where in sim.endpoints().items())
        print(
            f"dataflow-probe demo for {duration:g}s: GS sends HL7 to a simulated engine, which\n"
            f"passes it to Labka over MLLP and to EPM3 through its inbox table.\n"
            f"  simulator\n{landscape}"
            f"  metrics   {daemon.server.url}/metrics\n"
            f"  health    {daemon.server.url}/readyz\n"
            f"  database  {(workdir / database).resolve()}\n"
            f"  truth     {(workdir / str(sim_config.truth)).resolve()}  (what the simulator did)\n"
            f"Press Ctrl-C to stop early.",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout=duration)
        daemon.request_stop()
        code = await run
    print(await summary(loaded.config.store.url, since=started_at), flush=True)
    return code


async def summary(url: str, *, since: datetime) -> str:
    """Probes claimed since ``since`` and their outcomes, per flow and destination."""
    query = (
        select(probes.c.probe_id, probes.c.flow, results.c.destination, results.c.outcome)
        .outerjoin(results, results.c.probe_id == probes.c.probe_id)
        .where(probes.c.claimed_at >= since)
    )
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).fetchall()
    finally:
        await engine.dispose()
    ids = {r.probe_id for r in rows}
    unresolved = {r.probe_id for r in rows if r.outcome is None}
    counts = Counter((r.flow, r.destination or "(check)", r.outcome) for r in rows if r.outcome)
    lines = [f"{len(ids)} probes stored, {len(unresolved)} unresolved"]
    for flow, dest in sorted({(f, d) for f, d, _ in counts}):
        outcomes = ", ".join(
            f"{o} {n}" for (f, d, o), n in sorted(counts.items()) if (f, d) == (flow, dest)
        )
        lines.append(f"  {flow} -> {dest}: {outcomes}")
    return "\n".join(lines)
