"""Written incidents and announcements: what operators tell people, with its timeline.

    >>> async with engine.begin() as conn:
    ...     notice = await open_notice(conn, kind="incident", title="Labka receives nothing",
    ...                                flows=["gs-*"], body="We are looking into it.", now=now)
    ...     notice = await update_notice(conn, notice.id, state="identified",
    ...                                  body="The engine's queue is stuck.", now=later)
    ...     notice = await resolve_notice(conn, notice.id, body="Restarted.", now=latest)
    >>> [u.state for u in notice.updates]
    ['investigating', 'identified', 'resolved']

A notice is one row of ``notices`` and its updates are rows of ``notice_updates``, oldest
first; the first update is the body it was opened with. An **incident** goes investigating
→ identified → monitoring → resolved, in any order until resolved, which is final. An
**announcement** is ``active`` from ``starts_at`` (or at once) until ``ends_at`` or until it
is ended, which is final too. ``flows`` are globs of flow names (none: every flow).

These functions write and read on the caller's connection and never commit: a caller
writes a notice and queues its notifications in one transaction (``engine.begin()``).
Bad input is a `ValueError` whose text can be shown to the operator as it is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Final, Literal, get_args

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.store.tables import notice_updates, notices

IncidentState = Literal["investigating", "identified", "monitoring", "resolved"]
INCIDENT_STATES: Final[tuple[str, ...]] = get_args(IncidentState)
AnnouncementState = Literal["active", "ended"]
ANNOUNCEMENT_STATES: Final[tuple[str, ...]] = get_args(AnnouncementState)
Kind = Literal["incident", "announcement"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)

# Per kind: the states it can be in, the one it opens in, and the final one.
STATES: Final[dict[str, tuple[str, ...]]] = {
    "incident": INCIDENT_STATES,
    "announcement": ANNOUNCEMENT_STATES,
}
FIRST: Final[dict[str, str]] = {"incident": "investigating", "announcement": "active"}
FINAL: Final[dict[str, str]] = {"incident": "resolved", "announcement": "ended"}

MAX_TITLE: Final = 200  # the column's length
MAX_BODY: Final = 64 * 1024  # characters of Markdown in one update
MAX_FLOWS: Final = 100  # globs on one notice
MAX_ID: Final = 2**63 - 1  # BIGINT: a larger id is no notice, not an overflow


class NoSuchNotice(KeyError):
    """No notice has the id asked for."""


class NoticeClosed(ValueError):
    """The notice is resolved or ended: it takes no more updates."""


class NothingToUpdate(ValueError):
    """An update that would change nothing: no new state, body or title."""


@dataclass(frozen=True, slots=True)
class Update:
    """One entry of a notice's timeline: when, the state it put the notice in, and what was
    said (Markdown, possibly empty)."""

    at: datetime
    state: str
    body: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A written incident or announcement, with its updates oldest first."""

    id: int
    kind: Kind
    title: str
    state: str
    flows: tuple[str, ...]  # globs of flow names; empty: every flow
    created_at: datetime
    updated_at: datetime
    starts_at: datetime | None
    ends_at: datetime | None
    resolved_at: datetime | None
    updates: tuple[Update, ...]

    def affects(self, flow: str) -> bool:
        """Whether ``flow`` matches one of the globs (a notice without flows affects all)."""
        return not self.flows or any(fnmatchcase(flow, glob) for glob in self.flows)

    def active(self, now: datetime) -> bool:
        """An incident until it is resolved; an announcement between its start and end."""
        if self.resolved_at is not None or self.state == FINAL[self.kind]:
            return False
        if self.kind == "incident":
            return True
        started = self.starts_at is None or self.starts_at <= now
        return started and (self.ends_at is None or self.ends_at > now)

    @property
    def body(self) -> str:
        """The newest non-empty body of the timeline ("" if none)."""
        return next((u.body for u in reversed(self.updates) if u.body), "")


async def open_notice(
    conn: AsyncConnection,
    *,
    kind: Kind,
    title: str,
    flows: Sequence[str],
    body: str,
    now: datetime,
    state: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> Notice:
    """Store a new notice, with ``body`` as its first update, and return it.

    An incident opens as investigating unless ``state`` says otherwise (not resolved); an
    announcement as active. ``starts_at`` and ``ends_at`` (announcements; aware times) bound
    when it is shown."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: use incident or announcement")
    state = FIRST[kind] if state is None else state
    _check_state(kind, state)
    if state == FINAL[kind]:
        raise ValueError(f"a new {kind} cannot be {state}: open it, then resolve it")
    values = {
        "kind": kind,
        "title": _title(title),
        "state": state,
        "flows": ",".join(_globs(flows)),
        "created_at": _aware(now, "now"),
        "updated_at": now,
        "starts_at": _aware(starts_at, "starts_at"),
        "ends_at": _aware(ends_at, "ends_at"),
    }
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    inserted = await conn.execute(notices.insert().values(**values).returning(notices.c.id))
    notice_id = int(inserted.scalar_one())
    await _append(conn, notice_id, at=now, state=state, body=_body(body))
    return await _must_get(conn, notice_id)


async def update_notice(
    conn: AsyncConnection,
    notice_id: int,
    *,
    now: datetime,
    state: str | None = None,
    body: str = "",
    title: str | None = None,
) -> Notice:
    """Append an update: a new state, a body, a new title, or any of them.

    ``state`` set to the final one (resolved, ended) resolves the notice. `NoSuchNotice` (a
    `KeyError`) if there is no such notice; `ValueError` for a bad state; `NothingToUpdate`
    and `NoticeClosed` (both a `ValueError`) for an update that changes nothing, and for a
    notice already resolved or ended."""
    current = await _locked(conn, notice_id)
    kind: str = current["kind"]
    if current["resolved_at"] is not None:
        raise NoticeClosed(f"{kind} {notice_id} is {current['state']} and cannot be updated")
    new_state = current["state"] if state is None else state
    _check_state(kind, new_state)
    text = _body(body)
    new_title = current["title"] if title is None else _title(title)
    if new_state == current["state"] and not text and new_title == current["title"]:
        raise NothingToUpdate("nothing to update: give a state, a body or a title")
    changes: dict[str, Any] = {
        "state": new_state,
        "title": new_title,
        "updated_at": _aware(now, "now"),
    }
    if new_state == FINAL[kind]:
        changes["resolved_at"] = now
    await conn.execute(notices.update().where(notices.c.id == notice_id).values(**changes))
    await _append(conn, notice_id, at=now, state=new_state, body=text)
    return await _must_get(conn, notice_id)


async def resolve_notice(
    conn: AsyncConnection, notice_id: int, *, now: datetime, body: str = ""
) -> Notice:
    """Resolve an incident or end an announcement (final), with an optional last word."""
    current = await _locked(conn, notice_id)
    return await update_notice(conn, notice_id, now=now, state=FINAL[current["kind"]], body=body)


async def get_notice(conn: AsyncConnection, notice_id: int) -> Notice | None:
    """The notice with this id and its timeline, or None."""
    if not 1 <= notice_id <= MAX_ID:
        return None
    found = await _load(conn, select(notices).where(notices.c.id == notice_id))
    return found[0] if found else None


async def active_notices(conn: AsyncConnection, *, now: datetime) -> list[Notice]:
    """Every notice `Notice.active` at ``now``: the newest first."""
    query = (
        select(notices)
        .where(notices.c.resolved_at.is_(None))
        .order_by(notices.c.created_at.desc(), notices.c.id.desc())
    )
    return [n for n in await _load(conn, query) if n.active(now)]


async def upcoming_notices(conn: AsyncConnection, *, now: datetime) -> list[Notice]:
    """Announcements not ended whose ``starts_at`` is after ``now``: the soonest first."""
    query = (
        select(notices)
        .where(notices.c.resolved_at.is_(None), notices.c.starts_at > now)
        .order_by(notices.c.starts_at, notices.c.id)
    )
    return await _load(conn, query)


async def notices_between(
    conn: AsyncConnection, start: datetime, end: datetime, *, kind: Kind | None = None
) -> list[Notice]:
    """Every notice whose life overlaps [start, end): the newest first.

    A notice lives from ``starts_at`` (or, without one, ``created_at``) until the earlier of
    ``resolved_at`` and ``ends_at``, or on while it has neither."""
    began = func.coalesce(notices.c.starts_at, notices.c.created_at)
    query = select(notices).where(
        began < end,
        or_(notices.c.resolved_at.is_(None), notices.c.resolved_at >= start),
        or_(notices.c.ends_at.is_(None), notices.c.ends_at >= start),
    )
    if kind is not None:
        query = query.where(notices.c.kind == kind)
    return await _load(conn, query.order_by(began.desc(), notices.c.id.desc()))


async def recent_notices(conn: AsyncConnection, *, limit: int = 50) -> list[Notice]:
    """The ``limit`` notices updated last, resolved ones too: the newest update first."""
    query = select(notices).order_by(notices.c.updated_at.desc(), notices.c.id.desc())
    return await _load(conn, query.limit(limit))


# --- validation ---------------------------------------------------------------------------


# NUL, which PostgreSQL text cannot hold and CommonMark replaces anyway, and lone surrogates,
# which no encoding can write: U+FFFD instead, as CommonMark says for NUL.
_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")


def _writable(text: str) -> str:
    return _UNWRITABLE.sub("\ufffd", text)


def _title(title: str) -> str:
    title = " ".join(_writable(title).split())  # one line: a heading and an e-mail subject
    if not title:
        raise ValueError("the title is empty")
    if len(title) > MAX_TITLE:
        raise ValueError(f"the title is {len(title)} characters long; at most {MAX_TITLE}")
    return title


def _globs(flows: Sequence[str]) -> list[str]:
    if isinstance(flows, str):  # a str is a Sequence[str] too: one glob, not its letters
        flows = [flows]
    globs = [_writable(glob).strip() for glob in flows]
    for glob in globs:
        if not glob:
            raise ValueError("a flow glob is empty")
        if "," in glob:
            raise ValueError(f"a flow glob cannot contain a comma: {glob!r}")
    if len(globs) > MAX_FLOWS:
        raise ValueError(f"{len(globs)} flow globs; at most {MAX_FLOWS}")
    return list(dict.fromkeys(globs))


def _body(body: str) -> str:
    if len(body) > MAX_BODY:
        raise ValueError(f"the body is {len(body)} characters long; at most {MAX_BODY}")
    return _writable(body).strip("\n")


def _check_state(kind: str, state: str) -> None:
    if state not in STATES[kind]:
        raise ValueError(f"unknown {kind} state {state!r}: use {', '.join(STATES[kind])}")


def _aware(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and moment.utcoffset() is None:
        raise ValueError(f"{name} has no time zone")
    return moment


# --- reading ------------------------------------------------------------------------------


async def _append(
    conn: AsyncConnection, notice_id: int, *, at: datetime, state: str, body: str
) -> None:
    row = {"notice_id": notice_id, "at": at, "state": state, "body": body}
    await conn.execute(notice_updates.insert().values(**row))


async def _locked(conn: AsyncConnection, notice_id: int) -> dict[str, Any]:
    """The notice's row, locked for the update on PostgreSQL; `NoSuchNotice` if none."""
    if not 1 <= notice_id <= MAX_ID:
        raise NoSuchNotice(f"no incident or announcement {notice_id}")
    query = select(notices).where(notices.c.id == notice_id).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NoSuchNotice(f"no incident or announcement {notice_id}")
    return dict(row)


async def _must_get(conn: AsyncConnection, notice_id: int) -> Notice:
    found = await get_notice(conn, notice_id)
    assert found is not None, "written in this transaction"
    return found


async def _load(conn: AsyncConnection, query: Select[Any]) -> list[Notice]:
    """The notices ``query`` selects, in its order, each with its updates."""
    rows = (await conn.execute(query)).mappings().all()
    ids = [int(row["id"]) for row in rows]
    timelines: dict[int, list[Update]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        updates = (
            select(notice_updates)
            .where(notice_updates.c.notice_id.in_(ids[chunk : chunk + 500]))
            .order_by(notice_updates.c.id)  # in the order written, whatever the clocks said
        )
        for u in (await conn.execute(updates)).mappings():
            timelines[int(u["notice_id"])].append(Update(u["at"], u["state"], u["body"]))
    return [_notice(row, tuple(timelines[int(row["id"])])) for row in rows]


def _notice(row: Any, updates: tuple[Update, ...]) -> Notice:
    return Notice(
        id=int(row["id"]),
        kind=row["kind"],
        title=row["title"],
        state=row["state"],
        flows=tuple(glob for glob in row["flows"].split(",") if glob),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        resolved_at=row["resolved_at"],
        updates=updates,
    )
