"""The runner: the one place for deadlines, timing, logging, metrics and persistence.

For each slot: claim it in the store (which stores the probe), send through the source,
then expect at every destination concurrently until the deadline, and turn what happened
into one `Result` per destination. Transports only speak their protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Gauge
from structlog.contextvars import bound_contextvars

from probe.config.models import DestinationSpec, FlowSpec
from probe.config.reload import FlowChanges
from probe.config.windows import Calendar
from probe.engine.schedule import span_of
from probe.errors import StartupError, StoreError, TransportError, TransportTimeout
from probe.logs import redactor
from probe.metrics.registry import Metrics
from probe.model import Outcome, ProbeMessage, Receipt, Result, Sighting, new_probe_id, utcnow
from probe.store import ProbeRow, SentRow, Store, StoredProbe
from probe.store.feed import SightingFeed
from probe.transports import (
    Observer,
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


@dataclass(eq=False, slots=True)
class FlowRuntime:
    """One definition of a flow and the transports built for it, on their own `Lease`.

    A probe takes the runtime that is current when it starts and keeps it to the end, so a
    reload never changes a probe in flight. A replaced runtime is closed once its last
    probe ends; its lease then closes shared items (listeners) that no other runtime holds.
    """

    spec: FlowSpec
    source: Source
    lease: Resources
    observers: dict[str, Observer] = field(default_factory=dict)
    in_flight: Gauge | None = None  # this flow's `probe_in_flight` child, fetched once
    users: int = 0
    retired: bool = False
    closed: bool = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        items: list[Source | Observer | Resources] = [self.source, *self.observers.values()]
        for item in [*items, self.lease]:
            try:
                await item.aclose()
            except Exception:  # one transport that fails to close must not keep the others open
                log.exception("transport_close_failed", flow=self.spec.name)


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
                problem = getattr(observer, "start_error", None)
                if strict and problem:
                    where = f"flow {flow.name!r}, destination {dest.name!r}"
                    raise StartupError(f"{where}: {problem}")
        except BaseException:
            await runtime.aclose()
            raise
        return runtime

    @contextmanager
    def _using(self, runtime: FlowRuntime) -> Iterator[None]:
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
        kept = {target for spec in live for target in _targets(spec)}
        gone = [target for target in _targets(runtime.spec) if target not in kept]
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
        with self._using(runtime), bound_contextvars(flow=flow.name, probe_id=probe_id):
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
        in_flight = runtime.in_flight
        if in_flight is None:  # looked up once per runtime, not per probe
            in_flight = self.metrics.flow_gauge(self.metrics.in_flight, flow.name)
            runtime.in_flight = in_flight
        in_flight.inc()
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
                    self._finish(flow, dest, message, Outcome.SEND_ERROR, reason=error.reason)
                    for dest in _targets(flow)
                ]
            elif flow.is_check:
                latency = time.monotonic() - sent_mono
                outcome = Outcome.DELIVERED if latency <= flow.slo_latency else Outcome.LATE
                results = [self._finish(flow, "", message, outcome, latency=latency)]
            else:
                results = list(
                    await asyncio.gather(
                        *(
                            self._expect(
                                flow,
                                dest,
                                message,
                                observer=runtime.observers[dest.name],
                                sent_mono=sent_mono,
                                deadline=deadline,
                            )
                            for dest in flow.destinations
                        )
                    )
                )
            return results
        finally:
            in_flight.dec()

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

    async def _expect(
        self,
        flow: FlowSpec,
        dest: DestinationSpec,
        message: ProbeMessage,
        *,
        observer: Observer,
        sent_mono: float,
        deadline: float,
        resumed: bool = False,
    ) -> Result:
        push = isinstance(observer, RecordingObserver)
        remote = False
        try:
            async with asyncio.timeout(deadline - time.monotonic() + dest.poll + _OBSERVE_GRACE):
                if push and self.feed is not None:
                    sighting, remote = await self._local_or_shared(
                        observer, dest.name, message, deadline
                    )
                else:
                    sighting = await observer.expect(message, deadline)
        except TimeoutError:
            return self._finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason="timeout")
        except TransportError as exc:
            log.warning("observe_error", destination=dest.name, reason=exc.reason, error=str(exc))
            return self._finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason=exc.reason)
        except Exception:  # a bug must cost one result, never the daemon or the probe
            log.exception("observer_failed", destination=dest.name)
            return self._finish(flow, dest.name, message, Outcome.OBSERVE_ERROR, reason="internal")
        if sighting is None:
            return self._finish(flow, dest.name, message, Outcome.LOST)
        if not push:
            self.store.add_sighting(sighting)  # a push observer's listener has stored it
        return self._judge(
            flow, dest, message, sighting, sent_mono=sent_mono, resumed=resumed, remote=remote
        )

    async def _local_or_shared(
        self, observer: Observer, destination: str, message: ProbeMessage, deadline: float
    ) -> tuple[Sighting | None, bool]:
        """Whichever comes first: our own listener's sighting, or another node's from the
        store (active-active: the engine may forward to any node). True: another node's."""
        assert self.feed is not None
        local = asyncio.ensure_future(observer.expect(message, deadline))
        shared = asyncio.ensure_future(self.feed.wait(message.probe_id, destination, deadline))
        try:
            await asyncio.wait({local, shared}, return_when=asyncio.FIRST_COMPLETED)
            found = shared.result() if shared.done() and not local.done() else None
            if found is None:
                return await local, False
            local.cancel()
            seen_at, copies = found
            return Sighting(message.probe_id, destination, seen_at, 0.0, count=copies), True
        finally:
            for task in (local, shared):
                if not task.done():
                    task.cancel()
            await asyncio.gather(local, shared, return_exceptions=True)

    def _judge(
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
        """The result of a sighting: delivered, late, or lost when seen past the deadline."""
        wall = resumed or remote
        latency, clock = _latency(sighting, message, sent_mono=sent_mono, wall=wall)
        if latency > flow.timeout:
            outcome, reason = Outcome.LOST, "seen_after_deadline"
        elif latency <= dest.slo_latency:
            outcome, reason = Outcome.DELIVERED, None
        else:
            outcome, reason = Outcome.LATE, None
        if resumed and clock == "wall" and outcome is not Outcome.DELIVERED:
            # We were down while it arrived: it was seen, but when is unknown.
            outcome, reason = Outcome.LATE, "seen_after_restart"
        return self._finish(
            flow,
            dest.name,
            message,
            outcome,
            latency=latency,
            clock=clock,
            duplicates=sighting.count - 1,
            reason=reason,
            mismatch=",".join(sighting.mismatched) or None,
        )

    def _finish(
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

    async def resume(
        self, probe: StoredProbe, seen: Mapping[str, tuple[datetime, int]] | None = None
    ) -> list[Result]:
        """Resolve a probe a previous run stored but did not finish (after a crash or restart).

        ``seen``: the first stored sighting and copies per destination; a destination with
        one is judged from it, the others are observed again until the deadline.
        """
        runtime = self.runtimes.get(probe.flow)
        if runtime is None:
            return []  # the flow was removed from the config; its old probes stay as they are
        flow = runtime.spec
        with self._using(runtime), bound_contextvars(flow=flow.name, probe_id=probe.probe_id):
            sent_at = probe.sent_at or probe.claimed_at
            message = ProbeMessage(probe.probe_id, flow.name, probe.slot_at, sent_at)
            missing = [d for d in _targets(flow) if d not in probe.resolved]
            if probe.send_reason is not None or flow.is_check:
                reason = probe.send_reason or "interrupted"
                return [
                    self._finish(flow, d, message, Outcome.SEND_ERROR, reason=reason)
                    for d in missing
                ]
            remaining = max(0.0, (probe.deadline_at - utcnow()).total_seconds())
            now_mono = time.monotonic()
            sent_mono = now_mono - (utcnow() - sent_at).total_seconds()
            dests = [d for d in flow.destinations if d.name in missing]
            log.info("probe_resumed", destinations=[d.name for d in dests])
            stored = seen or {}
            judged = [
                self._judge(
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
            return judged + list(
                await asyncio.gather(
                    *(
                        self._expect(
                            flow,
                            d,
                            message,
                            observer=runtime.observers[d.name],
                            sent_mono=sent_mono,
                            deadline=now_mono + remaining,
                            resumed=True,
                        )
                        for d in dests
                    )
                )
            )


def _targets(flow: FlowSpec) -> list[str]:
    return [d.name for d in flow.destinations] or [""]


def _latency(
    sighting: Sighting, message: ProbeMessage, *, sent_mono: float, wall: bool
) -> tuple[float, str]:
    """Latency and the clock it came from: the destination's own, else our monotonic clock,
    else (``wall``: a restart in between, or another node's sighting) the wall clocks."""
    if sighting.arrived_at is not None:
        return (sighting.arrived_at - message.sent_at).total_seconds(), "destination"
    if wall:
        return (sighting.seen_at - message.sent_at).total_seconds(), "wall"
    return sighting.seen_mono - sent_mono, "monotonic"
