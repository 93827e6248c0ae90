"""The spool's record format, version by version: pydantic models behind one `TypeAdapter`.

A record is one JSON object with its version ``v`` and its kind ``k``, then the fields of
the item it carries, under the item's own attribute names::

    {"v":1,"k":"sent","probe_id":"PR...","sent_at":"2026-11-26T08:00:00Z","send_reason":null,
     "detail":"ACK AA"}

    >>> line = RECORDS.dump_json(record_of(item))   # what `probe.store.spool.encode` writes
    >>> RECORDS.validate_json(line).item() == item
    True

Version 1 is every record written so far: those without ``v`` (written before versions),
without ``span`` or ``adhoc`` on a result (before 0.5) or ``node`` on a sighting read with
those fields' defaults. A field missing otherwise, a field this version does not have, a
value of the wrong type or an unknown kind fails validation, and so does any other version:
a newer daemon's record is refused, never guessed at (`probe.store.spool` tells the two
apart). A change to the format is a new version: new models, and a reader for the old ones.

Reading is strict (no "1" for 1); a record is made from an item's attributes
(``from_attributes``, loosely), so encoding is one validation and one serialisation in
pydantic-core, faster than the ``json.dumps`` of a hand-built dict it replaced
(bench/spool_codec.py). Times are written in pydantic's ISO 8601, UTC as ``Z``; records of
earlier daemons (``+00:00``) read the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from probe.model import Outcome, Result, Sighting
from probe.store.rows import Item, ProbeRow, SentRow

# The version this daemon writes, and the only one it reads.
VERSION = 1


class _Record(BaseModel):
    """A record of version 1; `item` is the value it carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, from_attributes=True)
    item_type: ClassVar[type[Any]]

    v: Literal[1] = 1

    def item(self) -> Item:
        fields = {name: value for name, value in self.__dict__.items() if name not in ("v", "k")}
        return self.item_type(**fields)  # type: ignore[no-any-return]


class ClaimV1(_Record):
    """A `ProbeRow`: a claim taken while the database was away."""

    item_type = ProbeRow
    k: Literal["claim"] = "claim"
    probe_id: str
    flow: str
    slot_at: datetime
    claimed_at: datetime
    deadline_at: datetime
    node: str | None


class SentV1(_Record):
    """A `SentRow`: the source's answer to a send."""

    item_type = SentRow
    k: Literal["sent"] = "sent"
    probe_id: str
    sent_at: datetime
    send_reason: str | None
    detail: str | None


class SightingV1(_Record):
    """A `Sighting`, without ``seen_mono`` (meaningless in another process: replays use
    ``seen_at``) and ``mismatched`` (results carry it)."""

    item_type = Sighting
    k: Literal["sighting"] = "sighting"
    probe_id: str
    destination: str
    seen_at: datetime
    count: int
    arrived_at: datetime | None
    node: str | None = None

    def item(self) -> Item:
        return Sighting(self.probe_id, self.destination, self.seen_at, 0.0, self.count,
                        self.arrived_at, node=self.node)  # fmt: skip


class ResultV1(_Record):
    """A `Result`."""

    item_type = Result
    k: Literal["result"] = "result"
    probe_id: str
    flow: str
    destination: str
    outcome: Outcome
    latency: float | None
    latency_clock: str | None
    duplicates: int
    reason: str | None
    slot: datetime
    resolved_at: datetime
    mismatch: str | None
    maintenance: bool
    span: float | None = None
    adhoc: bool = False


# A record of this version.
Record = ClaimV1 | SentV1 | SightingV1 | ResultV1
# Every record of this version, told apart by ``k``.
RECORDS: TypeAdapter[Record] = TypeAdapter(Annotated[Record, Field(discriminator="k")])

_MODELS: dict[type[Any], type[_Record]] = {
    ProbeRow: ClaimV1,
    SentRow: SentV1,
    Sighting: SightingV1,
    Result: ResultV1,
}


def record_of(item: Item) -> Record:
    """The record of ``item`` in this version; a `pydantic.ValidationError` (a bug: the
    items are typed) if a value is not of its field's type even loosely (None for a str).

    Loosely, unlike a record read back: a value the store takes (an int latency, a plain
    str outcome) must not fail on its way into the spool.
    """
    return cast(Record, _MODELS[type(item)].model_validate(item, strict=False))
