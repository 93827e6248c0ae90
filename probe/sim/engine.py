"""The simulated integration engine and its destinations, as Starlette apps.

The engine takes a post from the source system GS and hands it, in-process, to every
destination. Each destination decides on its own what happens to it (loss, duplicate,
outage drop, delay), with its own random stream, and later shows it on its GET endpoints.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from probe.sim.config import DestinationConfig, DestinationOutage, EngineConfig, EngineOutage
from probe.sim.outage import OutageSchedule
from probe.sim.truth import TruthLog, TruthRecord

PROBE_ID = re.compile(rb"PR[0-9A-F]{18}")
"""A probe id as it appears inside any payload, used when the body is not our JSON."""

# A reply cut off mid-way: looks like JSON to a content-type check, fails to parse.
_GARBAGE = b'{"events": [{"probe_id": "PR'


def find_probe_id(body: bytes) -> str | None:
    """The `probe_id` field of a JSON object body, else the first id-shaped text, else None."""
    try:
        data = json.loads(body)
    except ValueError:  # also covers bytes that are not UTF-8
        data = None
    if isinstance(data, dict) and isinstance(data.get("probe_id"), str) and data["probe_id"]:
        return str(data["probe_id"])
    match = PROBE_ID.search(body)
    return match.group().decode("ascii") if match else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    """One visible copy of a message at a destination; `visible_at` is epoch seconds."""

    probe_id: str
    seq: int
    visible_at: float

    def to_json(self) -> dict[str, object]:
        """The shape the GET endpoints answer with."""
        return {"probe_id": self.probe_id, "received_at": _iso(self.visible_at), "seq": self.seq}


class Destination:
    """A destination system: decides each forwarded message's fate, then shows what arrived.

    Every forwarded message draws the same three numbers (loss, duplicate, delay) whatever
    happens to it, so the n-th message meets the same fate whatever came before it.
    """

    def __init__(self, name: str, config: DestinationConfig, *, seed: int, truth: TruthLog) -> None:
        self.name = name
        self.outages: OutageSchedule[DestinationOutage] = OutageSchedule(config.outages)
        self._config = config
        # Seeded by name, so adding a destination leaves the others' draws alone.
        self._rng = random.Random(f"{seed}:{name}")
        self._truth = truth
        self._events: list[Event] = []
        self._by_probe: dict[str, list[Event]] = {}
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()
        self.app = Starlette(
            routes=[Route("/received", self._received), Route("/events", self._since)]
        )

    def forward(self, probe_id: str, received_at: float, *, dropped: bool = False) -> None:
        """Take a message from the engine; `dropped` means the engine will not deliver it."""
        lost = self._rng.random() < self._config.loss
        copies = 2 if self._rng.random() < self._config.duplicates else 1
        delay = self._config.delay.sample(self._rng)
        if dropped or self.outages.active("drop") is not None:
            self._truth.write(TruthRecord(probe_id, self.name, received_at, "dropped_outage"))
        elif lost:
            self._truth.write(TruthRecord(probe_id, self.name, received_at, "lost"))
        else:
            key = next(self._keys)
            # One timer per message, not a sleeping task: precise, and cheap to cancel.
            self._pending[key] = asyncio.get_running_loop().call_later(
                delay, self._show, key, probe_id, received_at, delay, copies
            )

    def cancel_pending(self) -> None:
        """Forget messages still on their way; they never become visible."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def _show(self, key: int, probe_id: str, received_at: float, delay: float, copies: int) -> None:
        del self._pending[key]
        now = time.time()
        for _ in range(copies):
            event = Event(probe_id, next(self._seq), now)
            # Kept sorted by time for `since`; the wall clock may step back under NTP.
            bisect.insort(self._events, event, key=lambda e: e.visible_at)
            self._by_probe.setdefault(probe_id, []).append(event)
        record = TruthRecord(probe_id, self.name, received_at, "delivered", delay, now, copies)
        self._truth.write(record)

    def _spoiled(self) -> Response | None:
        if self.outages.active("http_500") is not None:
            return PlainTextResponse("simulated outage", status_code=500)
        if self.outages.active("garbage") is not None:
            return Response(_GARBAGE, media_type="application/json")
        return None

    async def _received(self, request: Request) -> Response:
        if (spoiled := self._spoiled()) is not None:
            return spoiled
        probe_id = request.query_params.get("probe_id")
        if not probe_id:
            return JSONResponse({"error": "probe_id query parameter is required"}, 400)
        events = self._by_probe.get(probe_id, [])
        return JSONResponse({"events": [event.to_json() for event in events]})

    async def _since(self, request: Request) -> Response:
        if (spoiled := self._spoiled()) is not None:
            return spoiled
        try:
            since = float(request.query_params.get("since", "-inf"))
        except ValueError:
            return JSONResponse({"error": "since must be epoch seconds"}, 400)
        start = bisect.bisect_left(self._events, since, key=lambda e: e.visible_at)
        return JSONResponse({"events": [event.to_json() for event in self._events[start:]]})


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
        probe_id = find_probe_id(await request.body())
        if self.outages.active("http_500") is not None:
            self._truth.write(TruthRecord(probe_id or "", "", received_at, "rejected"))
            return PlainTextResponse("simulated outage", status_code=500)
        if probe_id is None:
            return JSONResponse({"error": "no probe_id in body"}, 400)
        dropped = self.outages.active("drop") is not None
        for destination in self._destinations:
            destination.forward(probe_id, received_at, dropped=dropped)
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
