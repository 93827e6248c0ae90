"""The runner: the one place for deadlines, timing, logging, metrics and persistence.

For each slot: claim it in the store (which stores the probe), send through the source,
then expect at every destination concurrently until the deadline, and turn what happened
into one `Result` per destination. Transports only speak their protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from structlog.contextvars import bound_contextvars

from probe.config.models import DestinationSpec, FlowSpec
from probe.config.reload import FlowChanges
from probe.config.slots import span_of
from probe.config.windows import Calendar
from probe.engine.runtime import FlowRuntime, targets
from probe.engine.sightings import first_sighting
from probe.engine.verdict import judge
from probe.errors import StartupError, StoreError, TransportError, TransportTimeout
from probe.logs import redactor
from probe.metrics.registry import Metrics
from probe.model import Outcome, ProbeMessage, Receipt, Result, Sighting, new_probe_id, utcnow
from probe.store import ProbeRow, SentRow, Store
from probe.store.feed import SightingFeed
from probe.transports import (
    RecordingObserver,
    Resources,
    Source,
    make_observer,
    make_source,
)

log = structlog.get_logger("probe.engine.runner")

_UTC = ZoneInfo("UTC")
# An observer gets this long past the deadline to finish its last look before it is cut off.
_OBSERVE_GRACE = 2.0


class Runner:
    """Runs probes for a set of flows. Build sources and observers with `open`; `apply`
    switches to new definitions (a config reload) without touching probes in flight."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        node: str | None = None,
        calendar: Calendar | None = None,
        feed: SightingFeed | None = None,
        adhoc: bool = False,
    ) -> None:
        self.store = store
        self.adhoc = adhoc  # `probe once --store`: results kept, left out of every statistic
        self.metrics = metrics
        self.node = node
        self.calendar = calendar
        self.feed = feed
        self.runtimes: dict[str, FlowRuntime] = {}
        self._retired: set[FlowRuntime] = set()  # replaced, with probes still in flight
        self._closing: set[asyncio.Task[None]] = set()
        self._resources = Resources()

    @property
    def flows(self) -> dict[str, FlowSpec]:
        """The current definition of each flow, by name."""
        return {name: runtime.spec for name, runtime in self.runtimes.items()}

    async def open(
        self, flows: list[FlowSpec], resources: Resources, *, strict: bool = True
    ) -> None:
        """Build every transport and start the observers (listeners bind here).

        A listener that cannot bind is a `StartupError` (``strict``), since the daemon
        could measure nothing there. Otherwise (``probe once``) it is logged, and its probes
        give a probe-side fault (reason ``listen``), counted as not measured.
        """
        self._resources = resources
        for flow in flows:
            self.runtimes[flow.name] = await self._build(flow, strict=strict)

    async def apply(self, changes: FlowChanges) -> None:
        """Switch to new definitions: build and start transports for new and changed flows,
        then swap them in at once; the replaced ones close when their last probe ends.

        A new listener that cannot bind is a `StartupError`, and then nothing changes.
        """
        built: dict[str, FlowRuntime] = {}
        try:
            for flow in changes.fresh:
                built[flow.name] = await self._build(flow, strict=True)
        except BaseException:
            for runtime in built.values():
                await runtime.aclose()
            raise
        # No await from here on: a probe starts either before the swap or after it.
        for name in (*changes.removed, *built):
            old = self.runtimes.pop(name, None)
            if old is not None:
                old.retired = True
                self._retired.add(old)
                if not old.users:
                    self._close_later(old)
        self.runtimes.update(built)

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        runtimes = [*self.runtimes.values(), *self._retired]
        self.runtimes.clear()  # a slot that fires now finds no flow and sends nothing
        for runtime in runtimes:
            await runtime.aclose()

    async def _build(self, flow: FlowSpec, *, strict: bool) -> FlowRuntime:
        lease = self._resources.lease()
        runtime = FlowRuntime(flow, make_source(flow.source, lease), lease)
        try:
            for dest in flow.destinations:
                observer = make_observer(dest, lease)
                runtime.observers[dest.name] = observer
                if isinstance(observer, RecordingObserver):
                    observer.set_recorder(self.store.add_sighting)
                await observer.start()
                problem = observer.start_error
                if strict and problem:
                    where = f"flow {flow.name!r}, destination {dest.name!r}"
                    raise StartupError(f"{where}: {problem}")
        except BaseException:
            await runtime.aclose()
            raise
        return runtime

    @contextmanager
    def using(self, runtime: FlowRuntime) -> Iterator[None]:
        """Keep ``runtime`` open while a probe uses it; close it after the last one if retired."""
        runtime.users += 1
        try:
            yield
        finally:
            runtime.users -= 1
            if runtime.retired and not runtime.users:
                self._close_later(runtime)

    def _close_later(self, runtime: FlowRuntime) -> None:
        task = asyncio.create_task(self._close_retired(runtime), name=f"close:{runtime.spec.name}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_retired(self, runtime: FlowRuntime) -> None:
        self._retired.discard(runtime)
        await runtime.aclose()
        # Stop exporting what no definition of the flow has any more: a removed flow's series,
        # or a removed destination's (only now: a probe in flight still reports to them).
        name = runtime.spec.name
        live = [r.spec for r in (*self.runtimes.values(), *self._retired) if r.spec.name == name]
        kept = {target for spec in live for target in targets(spec)}
        gone = [target for target in targets(runtime.spec) if target not in kept]
        self.metrics.forget(name, gone, whole=not live)

    async def run_slot(self, flow: FlowSpec, slot: datetime) -> list[Result] | None:
        """Probe the current definition of ``flow`` for ``slot``. None: another daemon has the
        slot, it is unclaimable, or a reload removed the flow since the slot fired."""
        runtime = self.runtimes.get(flow.name)
        if runtime is None:
            log.debug("flow_removed", flow=flow.name, slot=slot.isoformat())
            return None
        flow = runtime.spec
        probe_id = new_probe_id()
        with self.using(runtime), bound_contextvars(flow=flow.name, probe_id=probe_id):
            claimed_at = utcnow()
            row = ProbeRow(
                probe_id=probe_id,
                flow=flow.name,
                slot_at=slot,
                claimed_at=claimed_at,
                deadline_at=claimed_at + timedelta(seconds=flow.timeout),
                node=self.node,
            )
            try:
                if not await self.store.claim(row):
                    log.debug("slot_taken", slot=slot.isoformat())
                    return None
            except StoreError as exc:
                # Invariant: nothing is sent that is not stored first.
                log.error("slot_not_claimed", error=str(exc))
                self.metrics.skip(flow.name, "store")
                return None
            return await self._probe(runtime, probe_id, slot)

    async def _probe(self, runtime: FlowRuntime, probe_id: str, slot: datetime) -> list[Result]:
        flow = runtime.spec
        gauges = runtime.gauges
        if gauges is None:  # looked up once per runtime, not per probe
            gauges = runtime.gauges = self.metrics.flow(flow.name)
        gauges.in_flight += 1
        try:
            sent_mono = time.monotonic()
            deadline = sent_mono + flow.timeout
            message = ProbeMessage(probe_id=probe_id, flow=flow.name, slot=slot, sent_at=utcnow())
            receipt = await self._send(flow, message, deadline, source=runtime.source)
            error = receipt if isinstance(receipt, TransportError) else None
            if isinstance(receipt, Receipt) and receipt.fields:
                message = replace(message, expected=receipt.fields)
            if error is not None:
                results = [
                    self.finish(flow, dest, message, Outcome.SEND_ERROR, reason=error.reason)
                    for dest in targets(flow)
                ]
            elif flow.is_check:
                latency = time.monotonic() - sent_mono
                outcome = Outcome.DELIVERED if latency <= flow.slo_latency else Outcome.LATE
                results = [self.finish(flow, "", message, outcome, latency=latency)]
            else:
                dests = flow.destinations
                results = await self.expect_all(runtime, dests, message, sent_mono, deadline)
            return results
        finally:
            gauges.in_flight -= 1

    async def _send(
        self, flow: FlowSpec, message: ProbeMessage, deadline: float, *, source: Source
    ) -> Receipt | TransportError:
        """Send within ``send_timeout`` (and the deadline); the receipt, or why it failed."""
        error: TransportError | None = None
        detail: str | None = None
        receipt: Receipt | None = None
        limit = min(deadline - time.monotonic(), flow.send_timeout)
        try:
            async with asyncio.timeout(limit):
                receipt = await source.send(message)
            detail = redactor.redact(receipt.detail)[:200]
        except TimeoutError:
            error = TransportTimeout(f"the source did not answer within {limit:.3g}s")
        except TransportError as exc:
            error = exc
        except Exception as exc:  # a bug must cost one result, never the daemon or the probe
            log.exception("source_failed")
            error = TransportError(f"{type(exc).__name__}: {exc}", reason="internal")
        if error is not None:
            detail = redactor.redact(str(error))[:200]
            log.warning("send_error", reason=error.reason, error=str(error))
        reason = error.reason if error else None
        sent = SentRow(message.probe_id, message.sent_at, reason, detail)
        self.store.record_sent(sent)
        if error is not None:
            return error
        assert receipt is not None
        return receipt

    async def expect_all(
        self,
        runtime: FlowRuntime,
        dests: Sequence[DestinationSpec],
        message: ProbeMessage,
        sent_mono: float,
        deadline: float,
        *,
        resumed: bool = False,
    ) -> list[Result]:
        """Observe ``dests`` of ``runtime``'s flow at once until ``deadline`` (monotonic);
        one result each. ``resumed``: sent before a restart (see `judge`)."""
        found = await asyncio.gather(
            *(self._expect(runtime, d, message, sent_mono, deadline, resumed) for d in dests)
        )
        return list(found)

    async def _expect(
        self,
        runtime: FlowRuntime,
        dest: DestinationSpec,
        message: ProbeMessage,
        sent_mono: float,
        deadline: float,
        resumed: bool,
    ) -> Result:
        flow, observer = runtime.spec, runtime.observers[dest.name]
        push = isinstance(observer, RecordingObserver)
        remote = False
        try:
            async with asyncio.timeout(deadline - time.monotonic() + dest.poll + _OBSERVE_GRACE):
                if push and self.feed is not None:
                    found = first_sighting(observer, self.feed, dest.name, message, deadline)
                    sighting, remote = await found
                else:
                    sighting = await observer.expect(message, deadline)
        except TimeoutError:
            return self.finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason="timeout")
        except TransportError as exc:
            log.warning("observe_error", destination=dest.name, reason=exc.reason, error=str(exc))
            return self.finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason=exc.reason)
        except Exception:  # a bug must cost one result, never the daemon or the probe
            log.exception("observer_failed", destination=dest.name)
            return self.finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason="internal")
        if sighting is None:
            return self.finish(flow, dest.name, message, Outcome.LOST)
        if not push:
            self.store.add_sighting(sighting)  # a push observer's listener has stored it
        return self.judge(
            flow, dest, message, sighting, sent_mono=sent_mono, resumed=resumed, remote=remote
        )

    def judge(
        self,
        flow: FlowSpec,
        dest: DestinationSpec,
        message: ProbeMessage,
        sighting: Sighting,
        *,
        sent_mono: float,
        resumed: bool,
        remote: bool = False,
    ) -> Result:
        """The result of a sighting: delivered, late, or lost when seen past the deadline
        (`probe.engine.verdict.judge`)."""
        verdict = judge(
            sighting,
            message,
            timeout=flow.timeout,
            slo_latency=dest.slo_latency,
            sent_mono=sent_mono,
            resumed=resumed,
            remote=remote,
        )
        return self.finish(
            flow,
            dest.name,
            message,
            verdict.outcome,
            latency=verdict.latency,
            clock=verdict.clock,
            duplicates=sighting.count - 1,
            reason=verdict.reason,
            mismatch=",".join(sighting.mismatched) or None,
        )

    def finish(
        self,
        flow: FlowSpec,
        destination: str,
        message: ProbeMessage,
        outcome: Outcome,
        *,
        latency: float | None = None,
        clock: str | None = "monotonic",
        duplicates: int = 0,
        reason: str | None = None,
        mismatch: str | None = None,
    ) -> Result:
        result = Result(
            probe_id=message.probe_id,
            flow=flow.name,
            destination=destination,
            outcome=outcome,
            latency=latency,
            latency_clock=clock if latency is not None else None,
            duplicates=duplicates,
            reason=reason,
            slot=message.slot,
            resolved_at=utcnow(),
            mismatch=mismatch,
            maintenance=bool(self.calendar and self.calendar.active(flow.name, message.slot)),
            span=span_of(flow, message.slot, self.calendar.tz if self.calendar else _UTC),
            adhoc=self.adhoc,
        )
        self.store.add_result(result)
        self.metrics.observe_result(result, now=time.time())
        event = log.debug if outcome.good else log.warning
        event(
            "result",
            destination=destination,
            outcome=str(outcome),
            latency=None if latency is None else round(latency, 4),
            duplicates=duplicates,
            reason=reason,
            mismatch=mismatch,
        )
        return result
