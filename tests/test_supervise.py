"""No background task dies silently: it is logged, counted, restarted, or given up loudly."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from probe.engine.supervise import Supervisor
from tests.helpers import wait_for


async def test_a_failing_task_is_logged_counted_and_restarted() -> None:
    runs: list[int] = []
    failures: list[str] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"disk full #{len(runs)}")
        await asyncio.Event().wait()  # then it runs on

    supervisor = Supervisor(on_failure=failures.append, first_delay=0.01)
    with capture_logs() as logs:
        supervisor.spawn("prune", flaky)

        async def restarted() -> bool:
            return len(runs) == 3

        await wait_for(restarted, limit=5, every=0.01)
        await supervisor.aclose()
    assert failures == ["prune", "prune"]
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert [e["error"] for e in failed] == [
        "RuntimeError: disk full #1",
        "RuntimeError: disk full #2",
    ]
    assert all(e["task"] == "prune" and e["exc_info"] for e in failed)
    assert not supervisor.failed


async def test_a_task_that_cannot_recover_is_given_up_and_reported() -> None:
    fatal: list[tuple[str, str]] = []

    async def broken() -> None:
        raise OSError(5, "Input/output error")

    supervisor = Supervisor(
        on_fatal=lambda name, why: fatal.append((name, why)), first_delay=0.01, give_up_after=3
    )
    with capture_logs() as logs:
        task = supervisor.spawn("store-writes", broken)
        await asyncio.wait_for(task, timeout=5)
    assert fatal == [("store-writes", "OSError: [Errno 5] Input/output error")]
    assert supervisor.failed == {"store-writes": "OSError: [Errno 5] Input/output error"}
    assert [e["event"] for e in logs] == ["task_failed"] * 3 + ["task_gave_up"]


async def test_a_task_that_returns_is_not_restarted() -> None:
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    supervisor = Supervisor(first_delay=0.01)
    await asyncio.wait_for(supervisor.spawn("once", once), timeout=5)
    assert runs == [1]
