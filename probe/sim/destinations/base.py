"""What every destination shares: each message's fate, its timer, and its truth line.

A destination decides on its own what happens to every message an engine forwards to it,
with its own random stream, then delivers it when its delay is up. `Destination` shows
or writes it at once (the HTTP destination); `QueuedDestination` hands it to a single
writer task, so messages due in order are written in order over one connection.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from typing import ClassVar

import structlog

from probe.sim.config import (
    Forwarding,
    HttpDestinationConfig,
    MllpDestinationConfig,
    Outage,
    SqlDestinationConfig,
)
from probe.sim.outage import OutageSchedule
from probe.sim.payload import Message
from probe.sim.truth import Action, TruthLog, TruthRecord

log = structlog.get_logger("probe.sim")

AnyDestinationConfig = HttpDestinationConfig | MllpDestinationConfig | SqlDestinationConfig

# How long `stop()` lets a writer finish the message it is on before cutting it off.
_STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Fate:
    """What the random stream decided for one message at one destination.

    `delay` runs from the engine's receipt and includes the reorder hold; `corrupt` was
    drawn, but only changes text that has non-ASCII characters.
    """

    lost: bool
    copies: int
    delay: float
    reordered: bool
    corrupt: bool


def draw_fate(rng: random.Random, config: Forwarding) -> Fate:
    """Exactly five draws, in this order, whatever the settings and whatever happens next.

    So the n-th message meets the same fate whatever came before it, and a ratio changed
    from 0 shifts nothing else.
    """
    lost = rng.random() < config.loss
    copies = 2 if rng.random() < config.duplicates else 1
    delay = config.delay.at(rng.random())
    reordered = rng.random() < config.reorder
    corrupt = rng.random() < config.corrupt
    if reordered:
        delay += config.reorder_delay
    return Fate(lost, copies, delay, reordered, corrupt)


class Destination:
    """A destination system: draws each forwarded message's fate, then delivers it."""

    kind: ClassVar[str]

    def __init__(
        self, name: str, config: AnyDestinationConfig, *, seed: int, truth: TruthLog
    ) -> None:
        self.name = name
        self.outages: OutageSchedule[Outage] = OutageSchedule(config.outages)
        self._config = config
        # Seeded by name, so adding a destination leaves the others' draws alone.
        self._rng = random.Random(f"{seed}:{name}")
        self._truth = truth
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()

    def forward(self, message: Message, *, dropped: bool = False) -> None:
        """Take a message from an engine; `dropped` means the engine will not deliver it."""
        fate = draw_fate(self._rng, self._config)
        if dropped or self.outages.active("drop") is not None:
            self._record(message, fate, "dropped_outage")
        elif fate.lost:
            self._record(message, fate, "lost")
        else:
            # The delay runs from the engine's receipt, not from the end of its parsing.
            wait = max(0.0, fate.delay - (time.time() - message.received_at))
            key = next(self._keys)
            # One timer per message, not a sleeping task: precise, and cheap to cancel.
            self._pending[key] = asyncio.get_running_loop().call_later(
                wait, self._due, key, message, fate
            )

    async def start(self) -> None:
        """Get ready to deliver: open what the destination needs."""

    async def stop(self) -> None:
        """Forget messages still on their way; they never arrive and get no truth line."""
        self.cancel_pending()

    def cancel_pending(self) -> None:
        """Cancel the timers of messages not yet due."""
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def deliver(self, message: Message, fate: Fate) -> None:
        """Make a message that is due arrive; each kind does it its own way."""
        raise NotImplementedError

    def _due(self, key: int, message: Message, fate: Fate) -> None:
        del self._pending[key]
        self.deliver(message, fate)

    def _record(
        self,
        message: Message,
        fate: Fate,
        action: Action,
        *,
        visible_at: float | None = None,
        corrupted: bool = False,
    ) -> None:
        delivered = action == "delivered"
        record = TruthRecord(
            message.probe_id,
            self.name,
            message.received_at,
            action,
            delay_s=fate.delay if delivered else None,
            visible_at=visible_at,
            copies=fate.copies if delivered else 0,
            corrupted=corrupted,
            reordered=fate.reordered and delivered,
            engine=message.engine,
        )
        self._truth.write(record)


class QueuedDestination(Destination):
    """A destination written to by one task, in the order its messages fall due.

    A task per message would race for the connection; one writer fed by the timers keeps
    the order the delays give, and serialises each write with its answer.
    """

    def __init__(
        self, name: str, config: AnyDestinationConfig, *, seed: int, truth: TruthLog
    ) -> None:
        super().__init__(name, config, seed=seed, truth=truth)
        self._queue: asyncio.Queue[tuple[Message, Fate] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the destination, then start the writer."""
        await self.open()
        self._writer = asyncio.create_task(self._write_all(), name=f"sim-{self.name}-writer")

    async def stop(self) -> None:
        """Let the writer finish its current message (briefly), drop the rest, and close."""
        self.cancel_pending()
        # Due but not yet written: in flight, like those still on their timers.
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._writer is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(self._writer, timeout=_STOP_GRACE_SECONDS)
            except TimeoutError:
                log.warning("sim_writer_cut_off", destination=self.name)
            self._writer = None
        await self.close()

    def deliver(self, message: Message, fate: Fate) -> None:
        """Queue the message for the writer."""
        self._queue.put_nowait((message, fate))

    async def open(self) -> None:
        """Prepare the connection or table, before the first message."""

    async def close(self) -> None:
        """Release what `open` and `write` took; safe after a failed `open`."""

    async def write(self, message: Message, fate: Fate) -> None:
        """Deliver one message and record its truth line."""
        raise NotImplementedError

    async def _write_all(self) -> None:
        while (item := await self._queue.get()) is not None:
            message, fate = item
            try:
                await self.write(message, fate)
            except Exception:  # a bug in one delivery must not stop the later ones
                log.exception("sim_write_failed", destination=self.name, probe_id=message.probe_id)
