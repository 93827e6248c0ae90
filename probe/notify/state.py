"""The up/down state of one flow and destination: a small pure machine fed results in slot
order, the same order incidents are derived in (`probe.store.incidents`).

    >>> rules = NotifyDefaults(failure_threshold=2, success_threshold=1, reminder_interval=0)
    >>> state = PairState()
    >>> changes = [feed(state, Point(EPOCH + timedelta(seconds=s), o, None, False), rules,
    ...                 now=EPOCH) for s, o in enumerate(["lost", "lost", "delivered"])]
    >>> [c.event.value if c else None for c in changes]
    [None, 'down', 'recovered']

- A measured result outside maintenance is good when delivered, bad otherwise.
- Up, ``failure_threshold`` consecutive bad slots take the pair down. The change names the
  first bad slot of the run (``since``) and its outcome (``cause``).
- Down, ``success_threshold`` consecutive delivered slots bring it back up.
- A result in maintenance, or a probe-side fault (not measured), neither counts nor breaks
  a run: maintenance mutes.
- Down, `remind` gives a reminder every ``reminder_interval`` seconds of wall-clock time
  since the down message or the last reminder (0: none).

`PairState` is a `notify_state` row (`as_row`, `from_row`), so the state carries over from
one tick, one restart and one daemon to the next; feeding a sequence in one go or in parts
gives the same changes (tests/test_notify.py says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from probe.config.people import Event, NotifyDefaults
from probe.model import measured
from probe.store.incidents import EPOCH, Fed, Point

__all__ = ["EPOCH", "Change", "PairState", "Point", "feed", "remind"]


@dataclass(slots=True)
class PairState:
    """The notify state of one pair: a `notify_state` row without its key.

    ``since`` and ``cause``: while up, those of the current bad run (if any); while down,
    those of the run that took it down. ``reminded_at``: the wall-clock time of the down
    message or of the last reminder."""

    slot_at: datetime | None = None
    down: bool = False
    bad_run: int = 0
    good_run: int = 0
    since: datetime | None = None
    cause: str | None = None
    reminded_at: datetime | None = None

    def as_row(self) -> dict[str, Any]:
        """The `notify_state` columns other than the key."""
        return {
            "slot_at": self.slot_at, "down": self.down, "bad_run": self.bad_run,
            "good_run": self.good_run, "since": self.since, "cause": self.cause,
            "reminded_at": self.reminded_at,
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> PairState:
        """The state of a `notify_state` row (a mapping: ``row._mapping``)."""
        return cls(
            slot_at=row["slot_at"], down=bool(row["down"]), bad_run=row["bad_run"],
            good_run=row["good_run"], since=row["since"], cause=row["cause"],
            reminded_at=row["reminded_at"],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """A change to tell people about.

    ``since``: the first bad slot of the run that took the pair down; ``cause``: its
    outcome. ``at``: the slot that decided a down or a recovery; for a reminder, the
    wall-clock time of the reminder. ``previous``: for a reminder, the time of the message
    before it (the down message or the last reminder), which makes it unique."""

    event: Event
    since: datetime
    cause: str
    at: datetime
    previous: datetime | None = None


def feed(state: PairState, point: Fed, rules: NotifyDefaults, *, now: datetime) -> Change | None:
    """Feed one result, the next in slot order, to ``state`` (changed in place); the change
    it makes, if any. ``now`` (wall clock) starts the reminder clock of a down message."""
    state.slot_at = point.slot
    if point.maintenance or not measured(point.reason):
        return None  # muted, and not measured: neither counts nor breaks a run
    if point.outcome != "delivered":
        return _bad(state, point, rules, now=now)
    if not state.down:
        state.bad_run, state.since, state.cause = 0, None, None
        return None
    state.good_run += 1
    if state.good_run < rules.success_threshold:
        return None
    assert state.since is not None
    change = Change(Event.RECOVERED, state.since, state.cause or "", point.slot)
    state.down, state.bad_run, state.good_run = False, 0, 0
    state.since = state.cause = state.reminded_at = None
    return change


def _bad(state: PairState, point: Fed, rules: NotifyDefaults, *, now: datetime) -> Change | None:
    state.good_run = 0
    if state.bad_run == 0 and not state.down:
        state.since, state.cause = point.slot, point.outcome
    state.bad_run += 1
    if state.down or state.bad_run < rules.failure_threshold:
        return None
    assert state.since is not None
    state.down = True
    state.reminded_at = now
    return Change(Event.DOWN, state.since, state.cause or point.outcome, point.slot)


def remind(state: PairState, rules: NotifyDefaults, *, now: datetime) -> Change | None:
    """A reminder, if ``state`` is down and ``reminder_interval`` has passed since the down
    message or the last reminder (then ``state.reminded_at`` becomes ``now``)."""
    if not state.down or not rules.reminder_interval or state.since is None:
        return None
    previous = state.reminded_at
    if previous is not None and now - previous < timedelta(seconds=rules.reminder_interval):
        return None
    state.reminded_at = now
    return Change(Event.REMINDER, state.since, state.cause or "", now, previous=previous)
