"""Recovery: probes a previous run, or a dead peer, stored but did not resolve.

    recovery = Recovery(store, runner, node="node-a", began=utcnow(), track=track)
    await recovery.resume()              # at start: this node's own, and clearly dead peers'
    await recovery.adopt_forever()       # then every ADOPT_EVERY seconds: dead peers' only

Invariant 1 says a crash never loses a probe: it stays stored and unresolved until a
daemon comes back. At start the daemon takes up its own (those claimed before this run
began) and those of any node that is clearly dead (overdue by `ADOPT_AFTER`); after that
it keeps looking for a dead peer's, so a survivor resolves what a killed peer sent
(active-active, tests/test_ha.py). `resume_probe` resolves one: a destination with a
stored sighting is judged from it, the others are observed again until the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from structlog.contextvars import bound_contextvars

from probe.config.models import FlowSpec
from probe.engine.runner import Runner
from probe.engine.runtime import targets
from probe.errors import StoreError
from probe.model import Outcome, ProbeMessage, Result, Sighting, utcnow
from probe.store import Store, StoredProbe

log = structlog.get_logger("probe.engine.recovery")

# How far back a start looks for probes a previous run left unresolved.
RESUME_WINDOW = timedelta(days=2)
# How long past its deadline another node's unresolved probe waits before this one adopts it.
ADOPT_AFTER = timedelta(minutes=1)
ADOPT_EVERY = 20.0  # seconds between looks for a dead peer's probes
ADOPT_WINDOW = timedelta(minutes=30)  # how far back those looks go
# Past this many, the probe ids already taken up are forgotten: long resolved, and a second
# resume of one would change nothing.
_REMEMBERED = 100_000

Track = Callable[[Coroutine[Any, Any, list[Result]]], object]


class Recovery:
    """Finds unresolved probes this node should resolve and resolves each as its own task.

    ``track`` starts such a task where the daemon drains it at a stop, like any probe in
    flight. ``began``: probes this node claimed from then on are this run's own, in flight.
    """

    def __init__(
        self, store: Store, runner: Runner, *, node: str, began: datetime, track: Track
    ) -> None:
        self.store = store
        self.runner = runner
        self.node = node
        self.began = began
        self._track = track
        self._resumed: set[str] = set()  # probe ids taken up already

    async def recover_later(self) -> None:
        """Started without the database: once it answers, replay what a killed predecessor
        spooled, then resume its unresolved probes."""
        await self.store.wait_online()
        await self.store.recover()
        log.info("store_recovered_after_start")
        await self.resume()

    async def adopt_forever(self) -> None:
        """Every `ADOPT_EVERY` seconds, resolve what a dead peer left overdue."""
        while True:
            await asyncio.sleep(ADOPT_EVERY)
            await self.resume(startup=False)

    async def resume(self, *, startup: bool = True) -> None:
        """Resolve the probes left unresolved that are this node's to resolve: its own
        after a restart (``startup``), and those of any node that is clearly dead."""
        try:
            stored = await self._unresolved(startup=startup)
        except (StoreError, SQLAlchemyError, OSError) as exc:
            log.error("resume_failed", error=str(exc)[:300])
            return
        chosen = choose(
            stored,
            self.runner.flows,
            node=self.node,
            began=self.began,
            startup=startup,
            now=utcnow(),
            skip=self._resumed,
        )
        if not chosen:
            return
        try:
            seen = await self.store.sightings_for([p.probe_id for p in chosen])
        except (SQLAlchemyError, OSError) as exc:
            log.error("resume_failed", error=str(exc)[:300])
            return
        if len(self._resumed) > _REMEMBERED:
            self._resumed.clear()
        for probe in chosen:
            found = {d: v for (pid, d), v in seen.items() if pid == probe.probe_id}
            self._resumed.add(probe.probe_id)
            self._track(resume_probe(self.runner, probe, found))
        log.info("resuming_unresolved", probes=len(chosen), adopted=not startup)

    async def _unresolved(self, *, startup: bool) -> list[StoredProbe]:
        if startup:
            return await self.store.unresolved(since=utcnow() - RESUME_WINDOW)
        return await self.store.unresolved(
            since=utcnow() - ADOPT_WINDOW,
            deadline_before=utcnow() - ADOPT_AFTER,
            other_nodes=True,
        )


def choose(
    stored: list[StoredProbe],
    flows: Mapping[str, FlowSpec],
    *,
    node: str,
    began: datetime,
    startup: bool,
    now: datetime,
    skip: set[str],
) -> list[StoredProbe]:
    """Those of ``stored`` this node resolves now: of a flow still configured, not taken up
    already (``skip``), due (`_due`), and with a destination still without a result."""
    chosen = []
    for probe in stored:
        flow = flows.get(probe.flow)
        if flow is None or probe.probe_id in skip:
            continue
        due = _due(probe, node=node, began=began, startup=startup, now=now)
        if due and not set(targets(flow)) <= probe.resolved:
            chosen.append(probe)
    return chosen


def _due(probe: StoredProbe, *, node: str, began: datetime, startup: bool, now: datetime) -> bool:
    if probe.node == node:
        # Ours: only at start, and not this run's own, which are in flight (a resume after a
        # late start).
        return startup and probe.claimed_at < began
    # Another live daemon sharing the store resolves its own probes; step in only once it
    # is clearly overdue (its owner died).
    return now > probe.deadline_at + ADOPT_AFTER


async def resume_probe(
    runner: Runner, probe: StoredProbe, seen: Mapping[str, tuple[datetime, int]] | None = None
) -> list[Result]:
    """Resolve a probe a previous run stored but did not finish (after a crash or restart).

    ``seen``: the first stored sighting and copies per destination; a destination with
    one is judged from it, the others are observed again until the deadline.
    """
    runtime = runner.runtimes.get(probe.flow)
    if runtime is None:
        return []  # the flow was removed from the config; its old probes stay as they are
    flow = runtime.spec
    with runner.using(runtime), bound_contextvars(flow=flow.name, probe_id=probe.probe_id):
        sent_at = probe.sent_at or probe.claimed_at
        message = ProbeMessage(probe.probe_id, flow.name, probe.slot_at, sent_at)
        missing = [d for d in targets(flow) if d not in probe.resolved]
        if probe.send_reason is not None or flow.is_check:
            reason = probe.send_reason or "interrupted"
            return [
                runner.finish(flow, d, message, Outcome.SEND_ERROR, reason=reason) for d in missing
            ]
        remaining = max(0.0, (probe.deadline_at - utcnow()).total_seconds())
        now_mono = time.monotonic()
        sent_mono = now_mono - (utcnow() - sent_at).total_seconds()
        dests = [d for d in flow.destinations if d.name in missing]
        log.info("probe_resumed", destinations=[d.name for d in dests])
        stored = seen or {}
        judged = [
            runner.judge(
                flow,
                d,
                message,
                Sighting(probe.probe_id, d.name, stored[d.name][0], 0.0, stored[d.name][1]),
                sent_mono=sent_mono,
                resumed=True,
            )
            for d in dests
            if d.name in stored
        ]
        dests = [d for d in dests if d.name not in stored]
        deadline = now_mono + remaining
        observed = await runner.expect_all(
            runtime, dests, message, sent_mono, deadline, resumed=True
        )
        return judged + observed
