"""Maintenance windows starting and ending, per flow: the edges a channel may be told of.

    >>> [(e.event.value, e.flow, e.window) for e in edges(config, now=now)]
    [('maintenance_started', 'gs-adt', 'tuesday-patch')]

An occurrence's start is an edge while the window is still on and began at most `GRACE`
ago; its end is an edge for `GRACE` after it. So a daemon that was down when a window
began still says so when it comes back (within the hour), and one that comes back in the
middle of a long window does not announce it late. Each edge's message is unique per
flow, window and start (`probe.notify.queue.Edge.dedupe`), so it is queued once whatever
the number of ticks, restarts and daemons.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from probe.config.models import Config
from probe.config.people import Event
from probe.config.windows import covers, occurrences
from probe.notify.queue import Edge

GRACE = timedelta(hours=1)


def edges(config: Config, *, now: datetime) -> list[Edge]:
    """The starts and ends of maintenance windows of the last `GRACE`, for every flow the
    window covers."""
    tz = ZoneInfo(config.timezone)
    found = []
    for window in config.maintenance:
        flows = [flow.name for flow in config.flows if covers(window, flow.name)]
        for start, end in occurrences(window, now - GRACE, now, tz):
            events = []
            if now - GRACE < start <= now < end:
                events.append(Event.MAINTENANCE_STARTED)
            if now - GRACE < end <= now:
                events.append(Event.MAINTENANCE_ENDED)
            found += [Edge(e, flow, window.name, start, end) for e in events for flow in flows]
    return found
