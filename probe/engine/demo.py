"""``probe demo``: the simulator and the daemon together, on SQLite, for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
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
    return Path(__file__).resolve().parents[2] / "config" / name


# The ports the demo configs name: the daemon's server, the engine's MLLP side, the
# daemon's MLLP listener for Labka and the engine's HTTP side.
DEMO_PORTS = (9464, 18075, 18076, 18080)


def on_free_ports(workdir: Path) -> tuple[Path, Path]:
    """Copies of the demo configs in ``workdir`` with every port one the OS picked, for a
    demo beside a daemon that holds 9464, or beside another demo (the tests)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in DEMO_PORTS]
        for sock in socks:  # all bound at once, so the four differ
            sock.bind(("127.0.0.1", 0))
        free = {fixed: sock.getsockname()[1] for fixed, sock in zip(DEMO_PORTS, socks, strict=True)}
    copies = []
    for name in ("demo.yaml", "demo-sim.yaml"):
        text = data_file(name).read_text(encoding="utf-8")
        for fixed, port in free.items():
            text = re.sub(rf"\b{fixed}\b", str(port), text)
        copy = workdir / f"free-ports-{name}"
        copy.write_text(text, encoding="utf-8")
        copies.append(copy)
    return copies[0], copies[1]


async def run_demo(*, duration: float, workdir: Path, free_ports: bool = False) -> int:
    """Run for ``duration`` seconds (or until Ctrl-C), then print what was measured.

    ``free_ports``: the OS picks every port, instead of the configs' fixed ones."""
    probe_file, sim_file = (
        on_free_ports(workdir)
        if free_ports
        else (data_file("demo.yaml"), data_file("demo-sim.yaml"))
    )
    loaded = load_config(probe_file)
    sim_config = load_sim_config(sim_file)
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
            f"{addresses(daemon.server.url)}"
            f"  database:    {(workdir / database).resolve()}\n"
            f"  truth:       {(workdir / str(sim_config.truth)).resolve()}"
            "  (what the simulator did)\n"
            f"  simulator:\n{landscape}"
            "Press Ctrl-C to stop early.",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout=duration)
        daemon.request_stop()
        code = await run
    print(await summary(loaded.config.store.url, since=started_at), flush=True)
    return code


def addresses(url: str) -> str:
    """Where to look, one line each, for the daemon's server at ``url`` as it is bound."""
    return (
        f"  status page: {url}/\n"
        f"  API:         {url}/api/v1/flows  (OpenAPI: /api/v1/openapi.json)\n"
        f"  metrics:     {url}/metrics\n"
        f"  readiness:   {url}/readyz\n"
    )


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
