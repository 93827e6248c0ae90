"""The simulator as a whole: the engines and their destinations, each on its own port.

    async with Simulator(load_sim_config("config/demo-sim.yaml")) as sim:
        httpx.post(sim.url("engine") + "/gs/events", json={"probe_id": probe_id})
        httpx.get(sim.url("labka") + "/received", params={"probe_id": probe_id})
        host, port = sim.address("mllp_engine")     # when `mllp_engine` is configured

It runs in the caller's event loop, so the daemon and the simulator share one process.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Literal, Protocol, Self

import structlog

from probe.sim.config import SimConfig
from probe.sim.destinations import (
    Destination,
    HttpDestination,
    MllpDestination,
    SqlDestination,
    make_destination,
)
from probe.sim.engine import Engine
from probe.sim.mllp_engine import MllpEngine
from probe.sim.outage import AnySchedule
from probe.sim.truth import TruthLog, TruthRecord
from probe.store import safe_url
from probe.web.listener import Listener

log = structlog.get_logger("probe.sim")

# How soon to try again when a port cannot be reopened after a `refuse` window.
_RETRY_SECONDS = 0.5


class _Port(Protocol):
    """A site whose port can refuse and listen again: an HTTP `Listener` or the MLLP engine."""

    name: str
    host: str
    port: int

    async def start(self, *, listening: bool = True) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def stop(self) -> None: ...


class Simulator:
    """A fake integration landscape. Starts once; make a new one to run again."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._truth = TruthLog(config.truth)
        self._destinations: list[Destination] = [
            make_destination(name, destination, seed=config.seed, truth=self._truth)
            for name, destination in config.destinations.items()
        ]
        self._engine = Engine(self._destinations, config=config.engine, truth=self._truth)
        engine = config.engine
        self._http: dict[str, Listener] = {
            "engine": Listener("engine", self._engine.app, host=engine.host, port=engine.port)
        }
        self._schedules: dict[str, AnySchedule] = {"engine": self._engine.outages}
        for destination in self._destinations:
            self._schedules[destination.name] = destination.outages
            if isinstance(destination, HttpDestination):
                self._http[destination.name] = Listener(
                    destination.name, destination.app, host=destination.host, port=destination.port
                )
        self._ports: dict[str, _Port] = dict(self._http)
        self._mllp_engine: MllpEngine | None = None
        if config.mllp_engine is not None:
            self._mllp_engine = MllpEngine(
                self._destinations, config=config.mllp_engine, truth=self._truth
            )
            self._ports["mllp_engine"] = self._mllp_engine
            self._schedules["mllp_engine"] = self._mllp_engine.outages
        self._state: Literal["new", "running", "stopped"] = "new"
        self._stopping = asyncio.Event()
        self._followers: list[asyncio.Task[None]] = []

    @property
    def truth(self) -> list[TruthRecord]:
        """The ground truth so far, also kept in memory when no truth file is configured."""
        return self._truth.records

    def url(self, name: str) -> str:
        """`http://host:port` of `"engine"` or of an `http` destination, once started."""
        self._check_started()
        try:
            return self._http[name].url
        except KeyError:
            known = ", ".join(self._http)
            raise KeyError(f"no simulator HTTP site {name!r}; known: {known}") from None

    def address(self, name: str) -> tuple[str, int]:
        """`(host, port)` of `"mllp_engine"`, `"engine"` or an `http` destination, once started."""
        self._check_started()
        try:
            site = self._ports[name]
        except KeyError:
            known = ", ".join(self._ports)
            raise KeyError(f"no simulator site {name!r}; known: {known}") from None
        return site.host, site.port

    def endpoints(self) -> dict[str, str]:
        """Where each site is, for people: a URL, an ``mllp://`` address, a target or a DB."""
        self._check_started()
        found = {name: site.url for name, site in self._http.items()}
        if self._mllp_engine is not None:
            found["mllp_engine"] = f"mllp://{self._mllp_engine.host}:{self._mllp_engine.port}"
        for destination in self._destinations:
            if isinstance(destination, MllpDestination):
                found[destination.name] = f"mllp://{destination.host}:{destination.port}"
            elif isinstance(destination, SqlDestination):
                found[destination.name] = f"{safe_url(destination.url)} {destination.table}"
        return found

    async def start(self) -> None:
        """Open the destinations, bind every port, open the truth file, start the clocks."""
        if self._state != "new":
            raise RuntimeError("a Simulator starts only once; make a new one")
        self._state = "running"
        try:
            self._truth.open()
            origin = time.monotonic()
            for schedule in self._schedules.values():
                schedule.begin(origin)
            for destination in self._destinations:
                await destination.start()
            for name, site in self._ports.items():
                refusing = self._schedules[name].active("refuse") is not None
                await site.start(listening=not refusing)
            for name, site in self._ports.items():
                if self._schedules[name].has("refuse"):
                    follower = self._follow_refusals(site, self._schedules[name])
                    self._followers.append(asyncio.create_task(follower, name=f"sim-{name}-refuse"))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every server, timer and writer, and close the truth file. Safe to call twice."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        self._stopping.set()
        try:
            # Followers notice `_stopping` and return; none is cut off half way through.
            await asyncio.gather(*self._followers)
            self._engine.release_stalls()
            if self._mllp_engine is not None:
                self._mllp_engine.release_stalls()
            for destination in self._destinations:
                destination.cancel_pending()
            await asyncio.gather(*(site.stop() for site in self._ports.values()))
            # Engines are closed, so nothing new is forwarded while the writers wind down.
            await asyncio.gather(*(destination.stop() for destination in self._destinations))
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

    def _check_started(self) -> None:
        if self._state == "new":
            raise RuntimeError("ports are known only after start()")

    async def _follow_refusals(self, site: _Port, schedule: AnySchedule) -> None:
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
