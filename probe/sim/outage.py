"""When outage windows are open: offsets from the simulator's start, optionally repeating.

Windows are evaluated against the monotonic clock on demand, so modes that only change how
a request is answered need no timers; only `refuse` has edges someone must act on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from probe.sim.config import DestinationOutage, EngineOutage

OutageT = TypeVar("OutageT", DestinationOutage, EngineOutage)


def is_open(window: DestinationOutage | EngineOutage, elapsed: float) -> bool:
    """Whether the window is open `elapsed` seconds after the start."""
    if elapsed < window.start:
        return False
    phase = elapsed - window.start
    if window.every is not None:
        phase %= window.every
    return phase < window.duration


def next_edge(window: DestinationOutage | EngineOutage, elapsed: float) -> float | None:
    """Elapsed time of the next opening or closing strictly after `elapsed`; None if none."""
    if elapsed < window.start:
        return window.start
    if window.every is None:
        end = window.start + window.duration
        return end if elapsed < end else None
    cycle = math.floor((elapsed - window.start) / window.every)
    opened = window.start + cycle * window.every
    if elapsed < opened + window.duration:
        return opened + window.duration
    return opened + window.every


class OutageSchedule(Generic[OutageT]):
    """The outage windows of one site, counted from `begin()`; before that none is open."""

    def __init__(self, windows: Sequence[OutageT]) -> None:
        self._windows: tuple[OutageT, ...] = tuple(windows)
        self._origin: float | None = None

    def begin(self, origin: float | None = None) -> None:
        """Start the clock, at `origin` (a `time.monotonic()` value) or now."""
        self._origin = time.monotonic() if origin is None else origin

    def elapsed(self) -> float | None:
        """Seconds since `begin()`, or None before it."""
        return None if self._origin is None else time.monotonic() - self._origin

    def active(self, mode: str) -> OutageT | None:
        """The open window of that mode, if any; the first configured wins on overlap."""
        elapsed = self.elapsed()
        if elapsed is None:
            return None
        for window in self._windows:
            if window.mode == mode and is_open(window, elapsed):
                return window
        return None

    def has(self, mode: str) -> bool:
        """Whether any window of that mode is configured at all."""
        return any(window.mode == mode for window in self._windows)

    def seconds_to_next_edge(self, mode: str) -> float | None:
        """Seconds until a window of that mode next opens or closes; None if never again."""
        elapsed = self.elapsed()
        if elapsed is None:
            return None
        edges = [next_edge(w, elapsed) for w in self._windows if w.mode == mode]
        upcoming = [edge for edge in edges if edge is not None]
        return min(upcoming) - elapsed if upcoming else None


AnySchedule = OutageSchedule[DestinationOutage] | OutageSchedule[EngineOutage]
"""The schedule of any site, for code that only cares about `refuse`."""
