"""The written incidents and announcements of a report, matched to its automatic incidents.

    >>> stored = await written_notices(engine, month.start, until)
    >>> report_notices = describe(stored, rows, tz=month.tz, until=until)

A notice (`probe.store.notices`) explains an automatic incident of a row when it is about
the row's flow (`Notice.affects`: its globs match the flow name; a notice without flows is
about every flow) and its life overlaps the incident, both taken as closed spans:

- a notice lives from ``starts_at`` (or, without one, ``created_at``) to the earlier of
  ``resolved_at`` and ``ends_at``, or to the end of what the report measured while it has
  neither;
- an incident spans ``start`` to ``end`` as its row has them (clipped to the month; an open
  one ends at the report time).

Notices are matched by flow, not destination: a notice names flows. The text of each update
is kept as written (Markdown) and as plain text (`probe.markdown.plain`); the HTML report
renders the Markdown itself, through the same sanitiser, so a report file read back cannot
bring its own HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from probe.markdown import plain
from probe.report.models import Explained, ReportRow, WrittenNotice, WrittenUpdate
from probe.store.notices import Notice, notices_between


async def written_notices(engine: AsyncEngine, start: datetime, until: datetime) -> list[Notice]:
    """The notices whose life overlaps [start, until), in the order they began."""
    async with engine.connect() as conn:
        found = await notices_between(conn, start, until)
    return list(reversed(found))  # notices_between gives the newest first


def life(notice: Notice, until: datetime) -> tuple[datetime, datetime]:
    """When ``notice`` began and ended (``until`` while it goes on)."""
    began = notice.starts_at or notice.created_at
    ends = [moment for moment in (notice.resolved_at, notice.ends_at) if moment is not None]
    return began, min(ends) if ends else max(until, began)


def explained(notice: Notice, rows: Iterable[ReportRow], until: datetime) -> tuple[Explained, ...]:
    """The incidents of ``rows`` that ``notice`` explains: its flow, overlapping time."""
    began, ended = life(notice, until)
    found = []
    for row in rows:
        if not notice.affects(row.flow):
            continue
        for incident in row.incidents:
            start = datetime.fromisoformat(incident.start)
            end = datetime.fromisoformat(incident.end)
            if began <= end and ended >= start:
                found.append(
                    Explained(flow=row.flow, destination=row.destination, start=incident.start)
                )
    return tuple(found)


def describe(
    notices: Sequence[Notice], rows: Sequence[ReportRow], *, tz: ZoneInfo, until: datetime
) -> tuple[WrittenNotice, ...]:
    """The report's ``notices``: each with its timeline and the incidents it explains."""

    def local(moment: datetime) -> str:
        return moment.astimezone(tz).isoformat(timespec="seconds")

    def maybe(moment: datetime | None) -> str | None:
        return None if moment is None else local(moment)

    return tuple(
        WrittenNotice(
            id=notice.id,
            kind=notice.kind,
            title=notice.title,
            state=notice.state,
            flows=notice.flows,
            created_at=local(notice.created_at),
            starts_at=maybe(notice.starts_at),
            ends_at=maybe(notice.ends_at),
            resolved_at=maybe(notice.resolved_at),
            updates=tuple(
                WrittenUpdate(at=local(u.at), state=u.state, body=u.body, body_text=plain(u.body))
                for u in notice.updates
            ),
            explains=explained(notice, rows, until),
        )
        for notice in notices
    )
