"""``GET /api/v1/events``: the state of every flow and destination as Server-Sent Events.

    $ curl -N http://127.0.0.1:9464/api/v1/events
    retry: 5000

    event: state
    data: {"generated_at": "2026-11-26T06:22:23+01:00", "overall": {"state": "down", ...},
           "flows": [{"name": "gs-adt", "state": "down", "destinations": [{"name": "labka",
           "state": "down", "down_since": "2026-11-26T06:14:00+01:00"}, ...]}, ...],
           "notices": [{"id": 3, "kind": "incident", "state": "identified",
           "updated_at": "2026-11-26T06:40:00+01:00"}]}

    : keep-alive

The first ``state`` event comes at once; after it, one comes only when something in it
other than ``generated_at`` changed: a state, a "down since", or an active notice opened,
updated or closed. Each stream looks every `TICK` seconds at the cached snapshot
(`probe.web.board.BoardSource.live`), so a hundred open pages cost the store what one
does. A comment every `HEARTBEAT` seconds keeps proxies from closing a quiet stream. When
the store cannot be read, an ``unavailable`` event says so (``{"error": "..."}``) and the
stream carries on. At most `MAX_STREAMS` are open at once; one more is answered 503 with
``Retry-After``. A client that goes away is noticed and its stream ends (Starlette cancels
it). `Events.close` ends every stream at once, for a daemon that stops; otherwise the
server ends them after its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from probe.errors import StoreError
from probe.store.notices import Notice
from probe.web.api import error_response
from probe.web.board import BoardSource
from probe.web.status import Snapshot, overall

EVENTS_PATH: Final = "/api/v1/events"
TICK: Final = 2.0  # seconds between looks at the (cached) snapshot
HEARTBEAT: Final = 15.0  # seconds of quiet before a comment line
RETRY_MS: Final = 5000  # how long a browser waits before it reconnects
MAX_STREAMS: Final = 100


def state_of(found: Snapshot, notices: tuple[Notice, ...], tz: ZoneInfo) -> dict[str, Any]:
    """The ``state`` event's data: compact, with times in the config's zone."""

    def iso(moment: Any) -> str | None:
        return None if moment is None else moment.astimezone(tz).isoformat()

    state, summary, some_maintenance = overall(found)
    return {
        "generated_at": iso(found.generated_at),
        "overall": {"state": state, "summary": summary, "maintenance": some_maintenance},
        "flows": [
            {
                "name": flow.name,
                "state": flow.state,
                "destinations": [
                    {"name": d.name, "state": d.state, "down_since": iso(d.down_since)}
                    for d in flow.destinations
                ],
            }
            for flow in found.flows
        ],
        "notices": [
            {"id": n.id, "kind": n.kind, "state": n.state, "updated_at": iso(n.updated_at)}
            for n in notices
        ],
    }


def frame(event: str, data: dict[str, Any]) -> str:
    """One event on the wire: JSON on one ``data:`` line (json.dumps never breaks lines)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass(slots=True)
class Events:
    """The event stream endpoint, and how many streams are open now."""

    source: BoardSource
    open_streams: int = 0
    tick: float = TICK
    heartbeat: float = HEARTBEAT
    _closed: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        """End every open stream now (and any opened later at once): for a daemon that
        stops, so the server need not wait out its grace period for them."""
        self._closed.set()

    async def endpoint(self, request: Request) -> Response:
        if self.open_streams >= MAX_STREAMS:
            message = f"too many event streams open (at most {MAX_STREAMS}); try again later"
            return error_response(503, message, {"Retry-After": "30"})
        self.open_streams += 1  # counted at once, released when the response is over
        return _Stream(self._stream(), release=self._release)

    def _release(self) -> None:
        self.open_streams -= 1

    async def _stream(self) -> AsyncGenerator[str, None]:
        yield f"retry: {RETRY_MS}\n\n"
        last: dict[str, Any] | None = None
        quiet_since = time.monotonic()
        while True:
            sent = await self._next(last)
            if sent is not None:
                text, last = sent
                yield text
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.heartbeat:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.tick)
            if self._closed.is_set():
                return

    async def _next(self, last: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
        """The event to send now, and what was sent, or None if nothing changed."""
        try:
            found, notices = await self.source.live()
        except StoreError as exc:
            unavailable = {"error": str(exc)}
            return (frame("unavailable", unavailable), unavailable) if last != unavailable else None
        data = state_of(found, notices, ZoneInfo(self.source.config.timezone))
        if last is not None and _same(last, data):
            return None
        return frame("state", data), data


def _same(last: dict[str, Any], data: dict[str, Any]) -> bool:
    """Whether nothing but the time of the snapshot changed."""
    return {**last, "generated_at": None} == {**data, "generated_at": None}


class _Stream(StreamingResponse):
    """A ``text/event-stream`` response that calls ``release`` when it is over, however it
    ends: the client left (Starlette cancels it), the server stopped, or an error."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None]) -> None:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, sending)
        except asyncio.CancelledError:
            # The server is stopping and cancels what is still open after its grace
            # period: end the stream the way a stream ends, not as a crash in the log.
            if not started:
                raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._release()
