"""What waits to be written: a queue in memory, behind the spool file, with a bound.

Every item is appended to the spool (`probe.store.spool`) and queued. Past `MEMORY_LIMIT`
items in memory, the rest stay in the spool file only and are read back from it as the
queue drains (`refill`). When the disk refuses an append the item is kept in memory only,
within the same bound; past it the oldest item that is not a claim is dropped. Nothing is
dropped silently: `dropped` counts it, ``on_drop`` is told the reason, and the first drop
of every thousand is logged.

    >>> backlog = Backlog(Spool(directory), batch_size=2000)
    >>> backlog.put(result)
    >>> batch = backlog.head()          # the next batch, which no drop may touch
    >>> backlog.written(batch)          # committed: off the queue
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from probe.store.rows import Item, ProbeRow
from probe.store.spool import Spool, Spooled
from probe.store.spool import read as read_spool

log = structlog.get_logger("probe.store")

# Items kept in memory while the database is away; the rest wait in the spool file only.
MEMORY_LIMIT = 100_000
# A spool file is replaced by a new one past this size, once all of it is committed.
ROTATE_BYTES = 32 * 1024 * 1024


class Backlog:
    """The items waiting for the database, in order; ``wake`` is set when a batch is full."""

    def __init__(self, spool: Spool | None, *, batch_size: int) -> None:
        self.spool = spool
        self.batch_size = batch_size
        self.queue: list[Spooled] = []
        self.wake = asyncio.Event()
        self.on_drop: Callable[[str], None] = lambda reason: None
        self.on_spool_error: Callable[[], None] = lambda: None
        self.spool_errors = 0  # appends the spool's disk refused; those items stayed in memory
        self.dropped = 0  # items neither the spool nor memory could keep (counted, logged)
        self._spool_failing = False
        self._writing = 0  # items at the head of the queue in the write under way
        self._overflow: tuple[str, int] | None = None  # (spool file, byte) not yet in memory
        self._overflowed = 0  # items in the spool file only

    @property
    def size(self) -> int:
        """Items waiting, in memory and in the spool file only."""
        return len(self.queue) + self._overflowed

    def put(self, item: Item) -> None:
        """Spool ``item`` and queue it (or leave it in the spool file, past the bound)."""
        if self.spool is None:
            self.queue.append(Spooled(item))
        elif self._overflow is not None:
            # Memory is full and the rest waits in the spool file, in order.
            if self._append(item) is None:
                self._drop(item, "spool_failed")
            else:
                self._overflowed += 1
        else:
            start = self.spool.size
            spooled = self._append(item)
            if spooled is None:  # the disk failed: memory only, within its bound
                if len(self.queue) >= MEMORY_LIMIT:
                    self._drop_oldest()
                self.queue.append(Spooled(item))
            elif len(self.queue) >= MEMORY_LIMIT:
                self._overflow = (spooled.file or "", start)
                self._overflowed += 1
                log.warning("store_backlog_on_disk", in_memory=len(self.queue))
            else:
                self.queue.append(spooled)
        if len(self.queue) >= self.batch_size:
            self.wake.set()

    def head(self) -> list[Spooled]:
        """The next batch; no drop touches it until `written` or `release`."""
        batch = self.queue[: self.batch_size]
        self._writing = len(batch)
        return batch

    def release(self) -> None:
        """The write of the `head` is over, done or not."""
        self._writing = 0

    def written(self, batch: Sequence[Spooled]) -> None:
        """``batch`` (the `head`) is committed: take it off, and rotate a spool file that
        is all committed."""
        del self.queue[: len(batch)]
        spool = self.spool
        if spool is None or spool.size < ROTATE_BYTES or self.queue or self._overflow:
            return
        spool.rotate()

    def count_skipped(self, reason: str) -> None:
        """A spool record that could not be read (torn, damaged): counted as dropped."""
        self.dropped += 1
        self.on_drop(reason)

    async def sync(self) -> None:
        """fsync the spool; a disk that fails it (EIO, ENOSPC) is counted, not fatal."""
        if self.spool is None:
            return
        try:
            await asyncio.to_thread(self.spool.sync)
        except OSError as exc:
            self._spool_failed(exc)

    def refill(self) -> None:
        """Read items that overflowed to the spool file back into memory."""
        if self._overflow is None or self.queue or self.spool is None:
            return
        name, start = self._overflow
        if self.spool.path is None or name != self.spool.name:
            self._overflow = None  # cannot happen: no rotation while overflowing
            return
        for spooled in read_spool(self.spool.path, start, limit=MEMORY_LIMIT // 2):
            self.queue.append(spooled)
            start = spooled.end
        self._overflowed = max(0, self._overflowed - len(self.queue))
        caught_up = start >= self.spool.size
        self._overflow = None if caught_up else (name, start)
        if caught_up:
            self._overflowed = 0

    def _append(self, item: Item) -> Spooled | None:
        """The item spooled, or None when the disk refused it (logged once per episode)."""
        assert self.spool is not None
        try:
            spooled = self.spool.append(item)
        except OSError as exc:
            self._spool_failed(exc)
            return None
        if self._spool_failing:
            self._spool_failing = False
            log.info("spool_write_recovered", errors=self.spool_errors)
        return spooled

    def _spool_failed(self, exc: OSError) -> None:
        """Count a refused append or fsync; log the first of an episode."""
        self.spool_errors += 1
        self.on_spool_error()
        if not self._spool_failing:
            self._spool_failing = True
            log.error(
                "spool_write_failed",
                error=f"{type(exc).__name__}: {exc}",
                note="items are kept in memory until the disk takes them again",
            )

    def _drop_oldest(self) -> None:
        """Make room in memory: drop the oldest item that is not a claim (a probe row is
        what every later item of its probe updates) and not in the batch being written."""
        for index in range(self._writing, len(self.queue)):
            item = self.queue[index].item
            if not isinstance(item, ProbeRow):
                del self.queue[index]
                self._drop(item, "memory_full")
                return

    def _drop(self, item: Item, reason: str) -> None:
        self.dropped += 1
        self.on_drop(reason)
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error("store_items_dropped", reason=reason, dropped=self.dropped,
                      item=type(item).__name__)  # fmt: skip
