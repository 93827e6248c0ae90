"""One definition of a flow and the transports built for it (`Runner` builds and swaps them).

runtime = FlowRuntime(spec, make_source(spec.source, lease), lease)
runtime.observers["labka"] = make_observer(dest, lease)
...
await runtime.aclose()     # transports first, then the lease's shared items
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from probe.config.models import FlowSpec
from probe.metrics.flow_series import FlowGauges
from probe.transports import Observer, Resources, Source

log = structlog.get_logger("probe.engine.runtime")


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
    gauges: FlowGauges | None = None  # this flow's `probe_in_flight`, fetched once
    users: int = 0
    retired: bool = False
    closed: bool = False

    async def aclose(self) -> None:
        """Close the source, the observers and the lease, each even if another fails."""
        if self.closed:
            return
        self.closed = True
        items: list[Source | Observer | Resources] = [self.source, *self.observers.values()]
        for item in [*items, self.lease]:
            try:
                await item.aclose()
            except Exception:  # one transport that fails to close must not keep the others open
                log.exception("transport_close_failed", flow=self.spec.name)


def targets(flow: FlowSpec) -> list[str]:
    """The destinations a probe of ``flow`` has a result for: ``[""]`` for a check."""
    return [d.name for d in flow.destinations] or [""]
