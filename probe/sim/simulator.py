"""The simulator as a whole: the engine and its destinations, each on its own port.

    async with Simulator(load_sim_config("config/demo-sim.yaml")) as sim:
        httpx.post(sim.url("engine") + "/gs/events", json={"probe_id": probe_id})
        httpx.get(sim.url("labka") + "/received", params={"probe_id": probe_id})

It runs in the caller's event loop, so the daemon and the simulator share one process.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Literal, Self

import structlog

from probe.listener import Listener
from probe.sim.config import SimConfig
from probe.sim.engine import Destination, Engine
from probe.sim.outage import AnySchedule
from probe.sim.truth import TruthLog, TruthRecord

log = structlog.get_logger("probe.sim")

# How soon to try again when a port cannot be reopened after a `refuse` window.
_RETRY_SECONDS = 0.5


class Simulator:
    """A fake integration landscape. Starts once; make a new one to run again."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._truth = TruthLog(config.truth)
        destinations = [
            Destination(name, destination, seed=config.seed, truth=self._truth)
            for name, destination in config.destinations.items()
        ]
        self._engine = Engine(destinations, config=config.engine, truth=self._truth)
        self._destinations = destinations
        engine = config.engine
        self._sites = {
            "engine": Listener("engine", self._engine.app, host=engine.host, port=engine.port)
        }
        self._schedules: dict[str, AnySchedule] = {"engine": self._engine.outages}
        for destination in destinations:
            listen = config.destinations[destination.name]
            site = Listener(destination.name, destination.app, host=listen.host, port=listen.port)
            self._sites[destination.name] = site
            self._schedules[destination.name] = destination.outages
        self._state: Literal["new", "running", "stopped"] = "new"
        self._stopping = asyncio.Event()
        self._followers: list[asyncio.Task[None]] = []

    @property
    def truth(self) -> list[TruthRecord]:
        """The ground truth so far, also kept in memory when no truth file is configured."""
        return self._truth.records

    def url(self, name: str) -> str:
        """`http://host:port` of `"engine"` or of a destination, once started."""
        if self._state == "new":
            raise RuntimeError("ports are known only after start()")
        try:
            return self._sites[name].url
        except KeyError:
            known = ", ".join(self._sites)
            raise KeyError(f"no simulator site {name!r}; known: {known}") from None

    async def start(self) -> None:
        """Bind every port, open the truth file and start the outage clocks."""
        if self._state != "new":
            raise RuntimeError("a Simulator starts only once; make a new one")
        self._state = "running"
        try:
            self._truth.open()
            origin = time.monotonic()
            for schedule in self._schedules.values():
                schedule.begin(origin)
            for name, site in self._sites.items():
                refusing = self._schedules[name].active("refuse") is not None
                await site.start(listening=not refusing)
            for name, site in self._sites.items():
                if self._schedules[name].has("refuse"):
                    follower = self._follow_refusals(site, self._schedules[name])
                    self._followers.append(asyncio.create_task(follower, name=f"sim-{name}-refuse"))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every server and timer, and close the truth file. Safe to call twice."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        self._stopping.set()
        try:
            # Followers notice `_stopping` and return; none is cut off half way through.
            await asyncio.gather(*self._followers)
            self._engine.release_stalls()
            for destination in self._destinations:
                destination.cancel_pending()
            await asyncio.gather(*(site.stop() for site in self._sites.values()))
        finally:
            self._truth.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _follow_refusals(self, site: Listener, schedule: AnySchedule) -> None:
        """Close and reopen a port at the edges of its `refuse` windows until stopped."""
        while True:
            wait = schedule.seconds_to_next_edge("refuse")
            try:
                if schedule.active("refuse") is not None:
                    await site.pause()
                else:
                    await site.resume()
            except OSError as exc:
                # Someone may have taken the port while it was closed; keep trying.
                log.warning("sim_port_reopen_failed", site=site.name, error=str(exc))
                wait = _RETRY_SECONDS if wait is None else min(wait, _RETRY_SECONDS)
            if wait is None or await self._stopped_within(wait):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            return False
        return True
