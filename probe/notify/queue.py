"""Who is told what: the messages of a change, rendered per channel and ready to queue.

    >>> messages = state_messages(config, "gs-adt", "labka", change, now=now)
    >>> [(m.channel, m.message.title) for m in messages]
    [('drift-teams', 'NEDE: Labka (laboratorie)')]
    >>> await queue_notice(conn, config, notice, "opened", now=now)   # queued at once
    1

A channel hears of an event when it wants it for the flow and the flow's severity
(`Channel.wants`), and gets it in its own language. Each message carries a ``dedupe`` key
that names the change, not the moment it was seen, so every daemon that sees the change
makes the same key and the outbox keeps one (`probe.notify.outbox`):

- down, recovered: the pair, the event and the first bad slot of the run;
- a reminder: the pair, and the down message or reminder before it;
- maintenance: the flow, the window and the start of its occurrence;
- a written incident or announcement: its id, its number of updates and the change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from probe.config.models import Config, Flow
from probe.config.people import Event
from probe.notify.outbox import Queued, queue
from probe.notify.state import Change
from probe.notify.text import maintenance_message, notice_message, state_message
from probe.store.notices import Notice


@dataclass(frozen=True, slots=True)
class Edge:
    """A maintenance window's occurrence starting or ending (``event``) for a flow."""

    event: Event
    flow: str
    window: str
    start: datetime
    end: datetime

    @property
    def dedupe(self) -> str:
        return f"{self.flow}:{self.event.value}:{self.window}:{self.start.isoformat()}"


def state_messages(
    config: Config, flow: str, destination: str, change: Change, *, now: datetime
) -> list[Queued]:
    """The messages of a down, recovery or reminder of one pair, one per channel that
    wants it (none for a flow no longer in the config)."""
    found = _flow(config, flow)
    if found is None:
        return []
    key = f"{flow}/{destination}:{change.event.value}:{change.since.isoformat()}"
    if change.previous is not None:
        key += f":{change.previous.isoformat()}"
    return [
        Queued(
            channel.name,
            change.event,
            key,
            state_message(
                config, change, flow=flow, destination=destination, lang=channel.lang, now=now
            ),
            flow=flow,
            destination=destination,
        )
        for channel in config.notify.channels
        if channel.wants(flow, found.severity, change.event)
    ]


def maintenance_messages(config: Config, edges: Iterable[Edge]) -> list[Queued]:
    """The messages of maintenance windows starting and ending, per flow and channel."""
    messages = []
    flows = {flow.name: flow for flow in config.flows}
    for edge in edges:
        found = flows.get(edge.flow)
        if found is None:
            continue
        for channel in config.notify.channels:
            if channel.wants(edge.flow, found.severity, edge.event):
                message = maintenance_message(
                    config, event=edge.event, flow=edge.flow, window=edge.window,
                    start=edge.start, end=edge.end, lang=channel.lang,
                )  # fmt: skip
                messages.append(Queued(channel.name, edge.event, edge.dedupe, message, edge.flow))
    return messages


async def queue_notice(
    conn: AsyncConnection,
    config: Config,
    notice: Notice,
    change: Literal["opened", "updated", "resolved"],
    *,
    now: datetime,
) -> int:
    """Queue an ``incident`` message about ``notice`` for every channel that wants one for
    any flow it affects, in the caller's transaction; how many were queued (0 for one
    queued before: the key is the notice, its number of updates and the change)."""
    key = f"notice:{notice.id}:{len(notice.updates)}:{change}"
    messages = [
        Queued(
            channel.name,
            Event.INCIDENT,
            key,
            notice_message(config, notice, change, lang=channel.lang, now=now),
        )
        for channel in config.notify.channels
        if any(
            notice.affects(flow.name) and channel.wants(flow.name, flow.severity, Event.INCIDENT)
            for flow in config.flows
        )
    ]
    return await queue(conn, messages, now=now)


def _flow(config: Config, name: str) -> Flow | None:
    return next((flow for flow in config.flows if flow.name == name), None)
