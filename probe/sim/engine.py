"""The simulated HTTP integration engine, as a Starlette app.

The engine takes a post from the source system GS and hands it, in-process, to every
destination. Each destination decides on its own what happens to it (loss, duplicate,
outage drop, delay, reordering, corruption), with its own random stream.

Posts reach every kind of destination: an `http` one shows the probe id, an `sql` one
stores the body as text, and an `mllp` one forwards the body if it is HL7 v2 (starts with
``MSH``) or else a minimal ADT^A08 carrying the probe id in MSH-10 (see `as_hl7`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from probe.sim.config import EngineConfig, EngineOutage
from probe.sim.destinations import Destination
from probe.sim.outage import OutageSchedule
from probe.sim.payload import PROBE_ID, Message, find_probe_id
from probe.sim.truth import TruthLog, TruthRecord

__all__ = ["PROBE_ID", "Engine", "find_probe_id"]


class Engine:
    """The integration engine: `POST /gs/events` from GS, `GET /health`.

    Under a `stall` outage the message is forwarded at once and only the reply is held,
    like an engine that committed a message but is slow to acknowledge it.
    """

    def __init__(
        self, destinations: Sequence[Destination], *, config: EngineConfig, truth: TruthLog
    ) -> None:
        self.outages: OutageSchedule[EngineOutage] = OutageSchedule(config.outages)
        self._destinations = tuple(destinations)
        self._truth = truth
        self._released = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/gs/events", self._accept, methods=["POST"]),
                Route("/health", self._health),
            ]
        )

    def release_stalls(self) -> None:
        """Answer every held request now and hold no more, so the server can shut down."""
        self._released.set()

    async def _accept(self, request: Request) -> Response:
        received_at = time.time()
        body = await request.body()
        probe_id = find_probe_id(body)
        if self.outages.active("http_500") is not None:
            self._truth.write(TruthRecord(probe_id or "", "", received_at, "rejected"))
            return PlainTextResponse("simulated outage", status_code=500)
        if probe_id is None:
            return JSONResponse({"error": "no probe_id in body"}, 400)
        text = body.decode("utf-8", errors="replace")
        message = Message(probe_id, received_at, text, hl7=text.startswith("MSH"), engine="http")
        dropped = self.outages.active("drop") is not None
        for destination in self._destinations:
            destination.forward(message, dropped=dropped)
        await self._stall()
        return JSONResponse({"accepted": probe_id}, 202)

    async def _health(self, request: Request) -> Response:
        del request
        if self.outages.active("http_500") is not None:
            return PlainTextResponse("simulated outage", status_code=500)
        await self._stall()
        return JSONResponse({"status": "ok"})

    async def _stall(self) -> None:
        window = self.outages.active("stall")
        if window is not None and not self._released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=window.stall)
