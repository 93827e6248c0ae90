"""The one mapping between the store's values and its table rows.

Every write builds its rows here and every read makes its values here, so a column is
renamed in one place:

    >>> row = result_row(result)            # a `results` row: {"slot_at": ..., "latency_s": ...}
    >>> result_of(row) == result            # a row read back (`probe.store.queries`)
    True
    >>> derived_of(result)                  # what rollups and incidents derive from it
    Derived(flow='gs-adt', destination='labka', ...)

Attribute and column names differ only for results: ``slot`` is ``slot_at``, ``latency``
``latency_s``, ``span`` ``span_s``. The mappings are written out, not looped over a table of
names: a dict literal is twice as fast, and every result of a batch goes through one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from probe.model import Outcome, Result, Sighting
from probe.store.tables import results

# The outcome columns of a rollup row, in `Outcome` order.
OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """A probe as stored before it is sent (a `probes` row without its send)."""

    probe_id: str
    flow: str
    slot_at: datetime
    claimed_at: datetime
    deadline_at: datetime
    node: str | None = None


@dataclass(frozen=True, slots=True)
class SentRow:
    """The send of a stored probe: the rest of its `probes` row."""

    probe_id: str
    sent_at: datetime
    send_reason: str | None
    detail: str | None


# What the store writes: each goes through the spool first (`probe.store.spool`).
Item = ProbeRow | SentRow | Sighting | Result


@dataclass(frozen=True, slots=True)
class Derived:
    """The part of a result that rollups and incidents need."""

    flow: str
    destination: str
    slot: datetime
    outcome: str
    latency: float | None
    maintenance: bool
    span: float | None = None
    reason: str | None = None


def probe_row(row: ProbeRow) -> dict[str, Any]:
    """A `probes` row (not `dataclasses.asdict`, which deep-copies every field)."""
    return {
        "probe_id": row.probe_id, "flow": row.flow, "slot_at": row.slot_at,
        "claimed_at": row.claimed_at, "deadline_at": row.deadline_at, "node": row.node,
    }  # fmt: skip


def sent_row(row: SentRow) -> dict[str, Any]:
    """The columns of a `probes` row a send sets, with its key."""
    return {"probe_id": row.probe_id, "sent_at": row.sent_at, "send_reason": row.send_reason,
            "detail": row.detail}  # fmt: skip


def sighting_row(s: Sighting) -> dict[str, Any]:
    """A `sightings` row (``seen_mono`` and ``mismatched`` are not stored)."""
    return {
        "probe_id": s.probe_id, "destination": s.destination, "seen_at": s.seen_at,
        "arrived_at": s.arrived_at, "count": s.count, "node": s.node,
    }  # fmt: skip


def result_row(r: Result) -> dict[str, Any]:
    """A `results` row."""
    return {
        "probe_id": r.probe_id, "flow": r.flow, "destination": r.destination,
        "outcome": str(r.outcome), "latency_s": r.latency, "latency_clock": r.latency_clock,
        "duplicates": r.duplicates, "reason": r.reason, "slot_at": r.slot,
        "resolved_at": r.resolved_at, "mismatch": r.mismatch, "maintenance": r.maintenance,
        "span_s": r.span, "adhoc": r.adhoc,
    }  # fmt: skip


def result_of(row: Mapping[Any, Any]) -> Result:
    """The `Result` of a `results` row (a mapping: ``row._mapping`` of a selected row)."""
    return Result(
        probe_id=row["probe_id"], flow=row["flow"], destination=row["destination"],
        outcome=Outcome(row["outcome"]), latency=row["latency_s"],
        latency_clock=row["latency_clock"], duplicates=row["duplicates"],
        reason=row["reason"], slot=row["slot_at"], resolved_at=row["resolved_at"],
        mismatch=row["mismatch"], maintenance=bool(row["maintenance"]), span=row["span_s"],
        adhoc=bool(row["adhoc"]),
    )  # fmt: skip


def derived_of(r: Result) -> Derived:
    """What rollups and incidents read of a result just written."""
    return Derived(r.flow, r.destination, r.slot, str(r.outcome), r.latency, r.maintenance,
                   r.span, r.reason)  # fmt: skip


# The columns `derived_from` reads, in its order.
DERIVED_COLUMNS = (
    results.c.flow, results.c.destination, results.c.slot_at, results.c.outcome,
    results.c.latency_s, results.c.maintenance, results.c.span_s, results.c.reason,
)  # fmt: skip


def derived_from(row: Any) -> Derived:
    """A `Derived` from a row of `DERIVED_COLUMNS`."""
    return Derived(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7])
