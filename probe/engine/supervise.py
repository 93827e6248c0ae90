"""Supervision of the daemon's long-lived background tasks: none of them dies silently.

    >>> supervisor = Supervisor(on_failure=counter.inc, on_fatal=daemon.fail)  # doctest: +SKIP
    >>> supervisor.spawn("prune", prune_forever)  # doctest: +SKIP

A task that raises is logged once with its exception (``task_failed``), counted through
``on_failure`` (`probe_task_failures_total{task}`), and started again after a backoff that
doubles from `FIRST_DELAY` to `MAX_DELAY`. A task that fails `GIVE_UP_AFTER` times within
`WINDOW` seconds cannot recover by itself: it is given up (``task_gave_up``), named in
`failed` (so `/readyz` fails with the reason) and ``on_fatal`` is called, which stops the
daemon with exit code 1, for systemd or Kubernetes to restart it.

A task that returns has finished its work and is not started again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("probe.engine.supervise")

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
GIVE_UP_AFTER = 5
WINDOW = 300.0


class Supervisor:
    """Runs named background tasks, restarting the ones that fail."""

    def __init__(
        self,
        *,
        on_failure: Callable[[str], None] = lambda name: None,
        on_fatal: Callable[[str, str], None] = lambda name, reason: None,
        first_delay: float = FIRST_DELAY,
        give_up_after: int = GIVE_UP_AFTER,
    ) -> None:
        self.on_failure = on_failure
        self.on_fatal = on_fatal
        self.first_delay = first_delay
        self.give_up_after = give_up_after
        self.failed: dict[str, str] = {}  # given up: task name -> its last error
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` as task ``name``, again after each failure."""
        task = asyncio.create_task(self._keep(name, run), name=name)
        self._tasks[name] = task
        return task

    async def aclose(self) -> None:
        """Cancel every task and wait for them."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        failures: deque[float] = deque()
        delay = self.first_delay
        while True:
            started = time.monotonic()
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                now = time.monotonic()
                if now - started > WINDOW:  # it had recovered: start the backoff anew
                    delay = self.first_delay
                failures.append(now)
                while failures and now - failures[0] > WINDOW:
                    failures.popleft()
                self.on_failure(name)
                log.error("task_failed", task=name, error=reason, restart_in=delay, exc_info=True)
                if len(failures) >= self.give_up_after:
                    self.failed[name] = reason
                    log.critical("task_gave_up", task=name, error=reason, failures=len(failures))
                    self.on_fatal(name, reason)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
