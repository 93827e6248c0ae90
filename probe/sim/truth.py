"""The ground truth: what the simulator really did with each message, one JSON line each.

A line is written per (probe_id, destination) when the fate is sealed: at once for a
message that is lost or dropped, at the moment it becomes visible for one that is
delivered, after the last try for one that could not be delivered (`undeliverable`: the
MLLP target could not be reached, or the SQL insert kept failing). A post the HTTP
engine answers with 500, and a message the MLLP engine answers with an AE ACK (outage or
unparsable), gets one `rejected` line with destination "". Messages still in flight when
the simulator stops get no line: they were never delivered.

Lines written before `corrupted`, `reordered` and `engine` existed still read, with
those fields at their defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal, get_args

Action = Literal["delivered", "lost", "dropped_outage", "rejected", "undeliverable"]
"""What happened to one message on its way to one destination."""

_ACTIONS: frozenset[str] = frozenset(get_args(Action))

EngineName = Literal["http", "mllp"]
"""Which engine took a message in."""


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One message's fate at one destination. Times are epoch seconds.

    `received_at` is when the engine took the message in (for MLLP: when its frame was
    complete); `visible_at` when the destination started showing it, the MLLP frame was
    written or the SQL row was about to be inserted (None unless delivered); `delay_s` the
    delay drawn for it, reorder hold included (None unless delivered); `copies` how many
    copies arrived (2 for a duplicate). `corrupted` says the text arrived as mojibake,
    `reordered` that it was held back so later ones could overtake it, and `engine` which
    engine took it in: ``http`` or ``mllp``.
    """

    probe_id: str
    destination: str
    received_at: float
    action: Action
    delay_s: float | None = None
    visible_at: float | None = None
    copies: int = 0
    corrupted: bool = False
    reordered: bool = False
    engine: EngineName = "http"

    def to_json(self) -> str:
        """The record as one line of JSON, without the newline."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> TruthRecord:
        """Parse a line written by `to_json`; raises `ValueError` if it is not one."""
        data = json.loads(line)
        if not isinstance(data, dict) or not _REQUIRED <= set(data) <= _KEYS:
            raise ValueError("not a truth record: wrong keys")
        action, engine = data["action"], data.get("engine", "http")
        if action not in _ACTIONS:
            raise ValueError(f"not a truth record: unknown action {action!r}")
        if engine not in ("http", "mllp"):
            raise ValueError(f"not a truth record: unknown engine {engine!r}")
        return cls(
            probe_id=str(data["probe_id"]),
            destination=str(data["destination"]),
            received_at=float(data["received_at"]),
            action=action,
            delay_s=_optional_float(data["delay_s"]),
            visible_at=_optional_float(data["visible_at"]),
            copies=int(data["copies"]),
            corrupted=_bool(data.get("corrupted", False)),
            reordered=_bool(data.get("reordered", False)),
            engine=engine,
        )


# The keys of the first version; the later ones may be missing from old files.
_REQUIRED = frozenset(
    ("probe_id", "destination", "received_at", "action", "delay_s", "visible_at", "copies")
)
_KEYS = frozenset(TruthRecord.__dataclass_fields__)


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"not a truth record: {value!r} is not true or false")


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a truth record: {value!r} is not a number")


def read_truth(path: str | Path) -> list[TruthRecord]:
    """All records of a truth file, in the order they were written."""
    records = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(TruthRecord.from_json(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return records


class TruthLog:
    """Keeps every record in memory and, given a path, appends it to a JSONL file.

    The file is opened by `open()` and truncated there, so it holds exactly one run; each
    line is flushed as it is written, so the file is complete whenever the run stops.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._file: IO[str] | None = None
        self._records: list[TruthRecord] = []

    @property
    def records(self) -> list[TruthRecord]:
        """A copy of the records written so far."""
        return list(self._records)

    def open(self) -> None:
        """Create or truncate the file, if there is one."""
        if self._path is not None and self._file is None:
            self._file = self._path.open("w", encoding="utf-8", buffering=1)

    def write(self, record: TruthRecord) -> None:
        """Record one fate."""
        self._records.append(record)
        if self._file is not None:
            self._file.write(record.to_json() + "\n")

    def close(self) -> None:
        """Flush and close the file; later records are kept in memory only."""
        if self._file is not None:
            self._file.close()
            self._file = None
