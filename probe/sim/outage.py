"""Outage windows: their config models, and when they are open.

A window is an offset from the simulator's start and a duration, optionally repeating.
Windows are evaluated against the monotonic clock on demand, so modes that only change how
a request is answered need no timers; only `refuse` has edges someone must act on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Generic, Literal, TypeVar

from pydantic import field_validator, model_validator

from probe.sim.values import Duration, FrozenModel


class Outage(FrozenModel):
    """A window when a site misbehaves, measured from the simulator's start.

    With `every`, the window repeats with that period. Each site narrows `mode`.
    """

    mode: str
    start: Duration
    duration: Duration
    every: Duration | None = None

    @model_validator(mode="after")
    def _sane_window(self) -> Outage:
        if self.duration <= 0:
            raise ValueError("duration must be above 0")
        if self.every is not None and self.every <= self.duration:
            raise ValueError("every must be longer than duration, or the outage never ends")
        return self


class DestinationOutage(Outage):
    """An outage of an `http` destination.

    `refuse` closes its port, `http_500` and `garbage` spoil its GET answers, `drop` loses
    what the engine forwards to it.
    """

    mode: Literal["refuse", "http_500", "garbage", "drop"]


class ForwardOutage(Outage):
    """An outage of an `mllp` or `sql` destination: only `drop`, which loses what comes in.

    The simulator connects out to these, so no port of its own can refuse or answer badly.
    """

    mode: Literal["drop"]

    @field_validator("mode", mode="before")
    @classmethod
    def _only_drop(cls, mode: object) -> object:
        if mode in ("refuse", "http_500", "garbage", "stall", "ae"):
            raise ValueError(
                f"mode {mode} means nothing for an mllp or sql destination, which the "
                "simulator connects out to; only drop is possible"
            )
        return mode


class EngineOutage(Outage):
    """An outage of the HTTP engine.

    `refuse` closes its port, `http_500` rejects posts, `drop` accepts and forwards nothing,
    `stall` holds each reply for `stall` seconds (the message is forwarded at once).
    """

    mode: Literal["refuse", "http_500", "drop", "stall"]
    stall: Duration = 60.0


class MllpEngineOutage(Outage):
    """An outage of the MLLP engine.

    `refuse` closes its port and its open connections, `ae` answers an AE ACK and forwards
    nothing, `drop` answers AA and forwards nothing, `stall` forwards at once but holds
    the ACK for `stall` seconds.
    """

    mode: Literal["refuse", "ae", "drop", "stall"]
    stall: Duration = 60.0


# Covariant: a schedule of DestinationOutage windows is a schedule of Outage windows.
OutageT = TypeVar("OutageT", bound=Outage, covariant=True)


def is_open(window: Outage, elapsed: float) -> bool:
    """Whether the window is open `elapsed` seconds after the start."""
    if elapsed < window.start:
        return False
    phase = elapsed - window.start
    if window.every is not None:
        phase %= window.every
    return phase < window.duration


def next_edge(window: Outage, elapsed: float) -> float | None:
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


AnySchedule = OutageSchedule[Outage]
"""The schedule of any site, for code that only cares about `refuse` or `drop`."""
