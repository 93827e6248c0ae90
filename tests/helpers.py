"""Helpers to run the real daemon and the real simulator on loopback inside a test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from probe.configfile import LoadedConfig, load_config
from probe.daemon import Daemon, wait_started
from probe.sim import Simulator, parse_sim_config
from probe.store import create_engine
from probe.store.tables import probes, results


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "probe.yaml") -> LoadedConfig:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_config(path)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def simulator(config: dict[str, Any]) -> AsyncIterator[Simulator]:
    async with Simulator(parse_sim_config(config)) as sim:
        yield sim


@asynccontextmanager
async def running(loaded: LoadedConfig) -> AsyncIterator[Daemon]:
    """A real daemon in this event loop; stopped (drained) on exit, and must exit 0."""
    daemon = Daemon(loaded, handle_signals=False, node="test")
    task = asyncio.create_task(daemon.run())
    await wait_started(daemon, task)
    try:
        yield daemon
    finally:
        daemon.request_stop()
        code = await asyncio.wait_for(task, timeout=60)
        assert code == 0


async def fetch_rows(url: str) -> tuple[list[Any], list[Any]]:
    """(probes, results) as stored."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            probe_rows = (await conn.execute(select(probes))).fetchall()
            result_rows = (await conn.execute(select(results))).fetchall()
    finally:
        await engine.dispose()
    return list(probe_rows), list(result_rows)


async def wait_for(predicate: Any, *, limit: float, every: float = 0.2) -> None:
    """Poll an async predicate until it is true or ``limit`` seconds pass (then fail)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {limit}s")
        await asyncio.sleep(every)
