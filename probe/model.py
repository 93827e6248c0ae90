"""The values that travel between the scheduler, runner, transports and store."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Outcome(StrEnum):
    """The value of one result: what happened to one probe at one destination."""

    DELIVERED = "delivered"  # seen within the SLO latency
    LATE = "late"  # seen after the SLO latency, before the deadline
    LOST = "lost"  # the destination was readable and never showed it by the deadline
    SEND_ERROR = "send_error"  # the source refused it or could not be reached
    OBSERVE_ERROR = "observe_error"  # the destination could not be read

    @property
    def good(self) -> bool:
        return self is Outcome.DELIVERED


# Reasons that say the prober itself failed, not the integration: its listener could not
# bind (``listen``), a bug in our own code (``internal``), or the daemon stopped in the
# middle of the probe (``interrupted``). Such a result is stored, and counted as *not
# measured*: it lowers coverage, never availability (docs/troubleshooting.md).
PROBE_FAULTS = frozenset({"listen", "internal", "interrupted"})


def measured(reason: str | None) -> bool:
    """False when a result with this reason is a probe-side fault (`PROBE_FAULTS`)."""
    return reason not in PROBE_FAULTS


def new_probe_id(now: float | None = None) -> str:
    """A 20-character id that fits HL7 MSH-10: ``PR`` + 11 hex digits of ms + 7 random hex.

    Ids sort by creation time, and are plain upper-case alphanumerics, so no HL7 or URL
    escaping can mangle them on the way through an engine.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return f"PR{millis:011X}{secrets.randbits(28):07X}"


@dataclass(frozen=True, slots=True)
class ProbeMessage:
    """What a transport needs to know about one probe."""

    probe_id: str
    flow: str
    slot: datetime
    sent_at: datetime
    # What the source put in the message that must arrive unchanged, e.g. {"PID-5": name};
    # filled in from the `Receipt` before destinations are watched.
    expected: Mapping[str, str] = field(default_factory=dict)

    def variables(self, destination: str = "") -> dict[str, str]:
        """Template values for ``${probe_id}``, ``${sent_at}``, ``${flow}``, ``${destination}``."""
        return {
            "probe_id": self.probe_id,
            "sent_at": self.sent_at.isoformat(timespec="milliseconds"),
            "flow": self.flow,
            "destination": destination,
        }


@dataclass(frozen=True, slots=True)
class Receipt:
    """The source's answer to a send: e.g. ``detail="HTTP 202"``.

    ``fields`` names what the message carried that destinations should see unchanged.
    """

    detail: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A destination showed the probe.

    ``seen_mono`` is `time.monotonic()` when we saw it. ``arrived_at`` is the destination's
    own arrival time when it reports one (a wall-clock value from another machine).
    ``count`` > 1 means duplicates.
    """

    probe_id: str
    destination: str
    seen_at: datetime
    seen_mono: float
    count: int = 1
    arrived_at: datetime | None = None
    mismatched: tuple[str, ...] = ()  # fields that arrived different from `expected`
    node: str | None = None  # the daemon that saw it; the store fills in its own


@dataclass(frozen=True, slots=True)
class Result:
    """One row per probe and destination (``destination=""`` for a check)."""

    probe_id: str
    flow: str
    destination: str
    outcome: Outcome
    latency: float | None
    latency_clock: str | None  # "monotonic", "destination" or "wall"
    duplicates: int
    reason: str | None
    slot: datetime
    resolved_at: datetime
    mismatch: str | None = None  # comma-separated fields that arrived changed
    maintenance: bool = False  # the slot fell in a maintenance window: left out of availability
    # Seconds of time this result stands for: the flow's interval (for cron, the time to the
    # next fire). It makes coverage and the gaps between measurements exact. None: unknown.
    span: float | None = None
    adhoc: bool = False  # `probe once --store`: kept for the record, left out of every statistic

    @property
    def measured(self) -> bool:
        """False for a probe-side fault: the prober failed, so nothing was measured."""
        return measured(self.reason)


def utcnow() -> datetime:
    return datetime.now(UTC)
