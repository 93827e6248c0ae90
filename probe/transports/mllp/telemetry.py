"""What an MLLP listener tells: its counters, and the warnings a peer could repeat.

    notes = ThrottledLog("0.0.0.0:2576")
    notes.note("mllp_junk", junk_bytes=3)   # written once, then summed up every LOG_EVERY
    notes.close()                           # the last sum, when the listener closes

asyncio's own accept loop would log a traceback at each failed accept, many times a
second; here every warning a peer can repeat is written once and then summed up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import structlog

from probe.durations import format_duration

log = structlog.get_logger("probe.transports.mllp.transport")

LOG_EVERY = 60.0  # a warning a peer can repeat is written once, then summed up this often


@dataclass(slots=True)
class ListenerStats:
    """What a listener has seen since it started, for logs and tests."""

    connections: int = 0
    messages: int = 0  # whole frames
    acks_sent: int = 0  # AA for messages that parsed
    acks_ignored: int = 0  # ACKs and other replies received: never answered
    unparsable: int = 0  # frames answered with AE
    arrivals: int = 0  # messages that carried a probe id
    junk_bytes: int = 0  # bytes outside any frame, or in frames that never ended
    oversized: int = 0  # frames refused for their size (AE, then the connection closed)
    broken_frames: int = 0  # connections closed in the middle of a frame
    refused: int = 0  # connections reset at once: max_connections, or descriptors, reached
    idle_closed: int = 0  # connections closed after idle_timeout
    accept_errors: int = 0  # failed accept() calls (EMFILE ...), each followed by a rest


class ThrottledLog:
    """The log lines of one listener that a peer could repeat without end, each one
    written the first time and then summed up (see `_Throttled`)."""

    def __init__(self, listen: str) -> None:
        self.listen = listen
        self._throttles: dict[str, _Throttled] = {}

    def note(self, event: str, *, level: int = logging.WARNING, **fields: Any) -> None:
        """Log ``event``, once and then summed up every `LOG_EVERY`."""
        throttle = self._throttles.get(event)
        if throttle is None:
            throttle = self._throttles[event] = _Throttled(event, self.listen, level=level)
        throttle.note(**fields)

    def close(self) -> None:
        """Write the sums still open."""
        for throttle in self._throttles.values():
            throttle.close()


class _Throttled:
    """A log line a peer could repeat without end: written the first time, then summed up
    every `LOG_EVERY` while it goes on (``count``, and ``detail``: "N more like this in the
    last 1m"), and a last time when the listener closes."""

    def __init__(self, event: str, listen: str, *, level: int) -> None:
        self.event, self.listen, self.level = event, listen, level
        self._count = 0
        self._fields: dict[str, Any] = {}  # those of the latest occurrence
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def note(self, **fields: Any) -> None:
        if self._timer is None:
            log.log(self.level, self.event, listen=self.listen, **fields)
            self._open_window()
        else:
            self._count += 1
            self._fields = fields

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._sum_up()

    def _open_window(self) -> None:
        self._since = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(LOG_EVERY, self._window_ended)

    def _window_ended(self) -> None:
        self._timer = None
        if self._sum_up():
            self._open_window()  # it goes on: the next window is summed up too

    def _sum_up(self) -> bool:
        if not self._count:
            return False
        count, self._count = self._count, 0
        window = format_duration(max(1, round(time.monotonic() - self._since)))
        detail = f"{count} more like this in the last {window}"
        fields = {**self._fields, "count": count, "detail": detail}
        log.log(self.level, self.event, listen=self.listen, **fields)
        return True
