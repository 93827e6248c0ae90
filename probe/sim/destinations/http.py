"""A destination that shows what arrived on HTTP GET endpoints, as a Starlette app.

`GET /received?probe_id=...` answers the copies of one probe, `GET /events?since=...`
every copy that became visible since an epoch time. Outages can spoil both answers.
"""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from probe.sim.config import HttpDestinationConfig
from probe.sim.destinations.base import Destination, Fate
from probe.sim.payload import Message, mangle
from probe.sim.truth import TruthLog

# A reply cut off mid-way: looks like JSON to a content-type check, fails to parse.
_GARBAGE = b'{"events": [{"probe_id": "PR'


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


class HttpDestination(Destination):
    """Shows the probe id of each delivered message, with the time it became visible.

    Only the probe id is shown, so corruption shows only in an id with non-ASCII in it.
    """

    kind = "http"

    def __init__(
        self, name: str, config: HttpDestinationConfig, *, seed: int, truth: TruthLog
    ) -> None:
        super().__init__(name, config, seed=seed, truth=truth)
        self.host, self.port = config.host, config.port
        self._events: list[Event] = []
        self._by_probe: dict[str, list[Event]] = {}
        self._seq = itertools.count(1)
        self.app = Starlette(
            routes=[Route("/received", self._received), Route("/events", self._since)]
        )

    def deliver(self, message: Message, fate: Fate) -> None:
        """Show the message now, once or twice."""
        now = time.time()
        shown = mangle(message.probe_id) if fate.corrupt else message.probe_id
        for _ in range(fate.copies):
            event = Event(shown, next(self._seq), now)
            # Kept sorted by time for `since`; the wall clock may step back under NTP.
            bisect.insort(self._events, event, key=lambda e: e.visible_at)
            self._by_probe.setdefault(shown, []).append(event)
        corrupted = shown != message.probe_id
        self._record(message, fate, "delivered", visible_at=now, corrupted=corrupted)

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
