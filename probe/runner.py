"""The runner: the one place for deadlines, timing, logging, metrics and persistence.

For each slot: claim it in the store (which stores the probe), send through the source,
then expect at every destination concurrently until the deadline, and turn what happened
into one `Result` per destination. Transports only speak their protocol.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from structlog.contextvars import bound_contextvars

from probe.config import DestinationSpec, FlowSpec
from probe.errors import StoreError, TransportError, TransportTimeout
from probe.logs import redactor
from probe.maintenance import Calendar
from probe.metrics import Metrics
from probe.model import Outcome, ProbeMessage, Receipt, Result, Sighting, new_probe_id, utcnow
from probe.store import ProbeRow, SentRow, Store, StoredProbe
from probe.transports import Observer, Resources, Source, make_observer, make_source

log = structlog.get_logger("probe.runner")

# An observer gets this long past the deadline to finish its last look before it is cut off.
_OBSERVE_GRACE = 2.0


class Runner:
    """Runs probes for a set of flows. Build sources and observers with `open`."""

    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        node: str | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.node = node
        self.calendar = calendar
        self.flows: dict[str, FlowSpec] = {}
        self.sources: dict[str, Source] = {}
        self.observers: dict[tuple[str, str], Observer] = {}

    async def open(self, flows: list[FlowSpec], resources: Resources) -> None:
        """Build every transport and start the observers (listeners bind here)."""
        for flow in flows:
            self.flows[flow.name] = flow
            self.sources[flow.name] = make_source(flow.source, resources)
            for dest in flow.destinations:
                observer = make_observer(dest, resources)
                await observer.start()
                self.observers[(flow.name, dest.name)] = observer

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()
        for observer in self.observers.values():
            await observer.aclose()

    async def run_slot(self, flow: FlowSpec, slot: datetime) -> list[Result] | None:
        """Probe ``flow`` for ``slot``. None: another daemon has the slot, or it is unclaimable."""
        probe_id = new_probe_id()
        with bound_contextvars(flow=flow.name, probe_id=probe_id):
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
            return await self._probe(flow, probe_id, slot)

    async def _probe(self, flow: FlowSpec, probe_id: str, slot: datetime) -> list[Result]:
        in_flight = self.metrics.flow_gauge(self.metrics.in_flight, flow.name)
        in_flight.inc()
        try:
            sent_mono = time.monotonic()
            deadline = sent_mono + flow.timeout
            message = ProbeMessage(probe_id=probe_id, flow=flow.name, slot=slot, sent_at=utcnow())
            receipt = await self._send(flow, message, deadline)
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
                                flow, dest, message, sent_mono=sent_mono, deadline=deadline
                            )
                            for dest in flow.destinations
                        )
                    )
                )
            return results
        finally:
            in_flight.dec()

    async def _send(
        self, flow: FlowSpec, message: ProbeMessage, deadline: float
    ) -> Receipt | TransportError:
        """Send within ``send_timeout`` (and the deadline); the receipt, or why it failed."""
        error: TransportError | None = None
        detail: str | None = None
        receipt: Receipt | None = None
        limit = min(deadline - time.monotonic(), flow.send_timeout)
        try:
            async with asyncio.timeout(limit):
                receipt = await self.sources[flow.name].send(message)
            detail = receipt.detail
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
        sent_mono: float,
        deadline: float,
        resumed: bool = False,
    ) -> Result:
        observer = self.observers[(flow.name, dest.name)]
        try:
            async with asyncio.timeout(deadline - time.monotonic() + dest.poll + _OBSERVE_GRACE):
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
        self.store.add_sighting(sighting)
        latency, clock = _latency(sighting, message, sent_mono=sent_mono, resumed=resumed)
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

    async def resume(self, probe: StoredProbe) -> list[Result]:
        """Resolve a probe a previous run stored but did not finish (after a crash or restart)."""
        flow = self.flows.get(probe.flow)
        if flow is None:
            return []  # the flow was removed from the config; its old probes stay as they are
        with bound_contextvars(flow=flow.name, probe_id=probe.probe_id):
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
            return list(
                await asyncio.gather(
                    *(
                        self._expect(
                            flow,
                            d,
                            message,
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
    sighting: Sighting, message: ProbeMessage, *, sent_mono: float, resumed: bool
) -> tuple[float, str]:
    """Latency and the clock it came from: the destination's own, else our monotonic clock."""
    if sighting.arrived_at is not None:
        return (sighting.arrived_at - message.sent_at).total_seconds(), "destination"
    if resumed:
        return (sighting.seen_at - message.sent_at).total_seconds(), "wall"
    return sighting.seen_mono - sent_mono, "monotonic"
