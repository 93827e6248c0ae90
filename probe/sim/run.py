"""`probe sim -c FILE`: the simulator on its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog

from probe.errors import ConfigError
from probe.sim.config import load_sim_config
from probe.sim.simulator import Simulator

log = structlog.get_logger("probe.sim")


async def run_sim(path: Path, *, stop: asyncio.Event | None = None) -> int:
    """Serve the landscape described in `path` until a signal or `stop` is set; returns 0.

    An invalid file raises `ConfigError`, one problem per line, like the daemon's config.
    """
    try:
        config = load_sim_config(path)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()) from None
    stop = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows' proactor loop; Ctrl+C still ends asyncio.run there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with Simulator(config) as sim:
            truth = str(config.truth) if config.truth else None
            log.info("sim_started", truth=truth, **sim.endpoints())
            await stop.wait()
            log.info("sim_stopping")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0
