"""Delivery: the outbox's messages sent through Apprise, each channel's in order.

    >>> sender = Sender(engine, lambda: config, count=metrics.notified)
    >>> await sender.run_once()          # the sender task, every second
    2

A channel's oldest unsent message is claimed (`probe.notify.outbox.claim`), sent with
`SEND_TIMEOUT`, and marked sent; a failed try is counted, its error kept (no secret in
it) and tried again after `probe.notify.outbox.backoff`, and the channel's later messages
wait for it, so they arrive in order. Channels are sent to side by side, so a slow one
holds up no other. The unsent messages of a channel that is no longer configured are
dropped, with a log line.

A channel's URL is a secret (Apprise URLs carry tokens and passwords), and Apprise logs
through the ``apprise`` logger, sometimes with the URL: that logger is cut off from the
process's handlers (`quiet_apprise`), and the error kept for a failed try is the last
warning Apprise recorded for it, with every part of the URL masked (`url_secrets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import warnings
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config.models import Config
from probe.config.people import Channel
from probe.logs import REDACTED, redactor
from probe.model import utcnow
from probe.notify import outbox
from probe.notify.outbox import Pending

log = structlog.get_logger("probe.notify")

SEND_TIMEOUT = 30.0  # seconds one send may take; within `outbox.LEASE`
_TOKEN = 8  # path segments and query values this long may be tokens
# Told (channel, outcome, count): `probe_notifications_total`.
Count = Callable[[str, str, int], None]


@functools.cache
def quiet_apprise() -> None:
    """Keep Apprise's own log records out of the process's handlers (and Python's
    last-resort stderr handler): they may name the URL. Apprise still records them in each
    call's result, which is where a failure's error is read from. Once, before the first
    send."""
    logger = logging.getLogger("apprise")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    # Apprise's e-mail plugin imports PGPy, which imports `imghdr`, deprecated since 3.11:
    # imported here first, with that one warning silenced, it warns in no log or test.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
        with contextlib.suppress(ImportError):  # gone in 3.13; Apprise has a shim then
            importlib.import_module("imghdr")


def url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL to mask: the URL itself, its password (and user with
    it), and every path segment and query value that looks like a token."""
    found = {url}
    try:
        parts = urlsplit(url)
        if parts.password and len(parts.password) >= 4:
            found |= {parts.password, unquote(parts.password), parts.netloc.rpartition("@")[0]}
        # Many Apprise schemes put a token where a host would be (slack://TOKEN/...);
        # a name with a dot is a host name or an address, and stays readable.
        host = parts.netloc.rpartition("@")[2].split(":")[0]
        values = [host] if "." not in host else []
        values += [unquote(p) for p in parts.path.split("/")]
        values += [value for _, value in parse_qsl(parts.query)]
        found |= {value for value in values if _token(value)}
    except ValueError:  # not a URL: the whole of it is masked
        pass
    return sorted(found, key=len, reverse=True)


def _token(part: str) -> bool:
    """Whether a URL part looks like a token: long, with a digit, or very long. Not words
    such as ``workflows`` or ``triggers``, which would be masked in every log line."""
    return len(part) >= 20 or (len(part) >= _TOKEN and any(c.isdigit() for c in part))


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` (longest first) and every known secret of the
    process masked."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redactor.redact(text)


async def deliver(url: str, title: str, body: str, *, limit: float = SEND_TIMEOUT) -> str | None:
    """Send one message to one Apprise URL: None when it was sent, else why not (masked)."""
    quiet_apprise()
    sender = apprise.Apprise()
    if not sender.add(url):
        return "not a valid Apprise URL (see the Apprise documentation for its scheme)"
    try:
        result = await asyncio.wait_for(
            sender.async_notify(
                title=title, body=body, body_format=apprise.NotifyFormat.MARKDOWN, timeout=limit
            ),
            limit + 5.0,  # Apprise's own timeout first; this one if it overruns
        )
    except TimeoutError:
        return f"no answer within {limit:g} s"
    with result:
        if result:
            return None
        warnings = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
        error = f"{result.status.name}: {warnings[-1]}" if warnings else result.status.name
    return mask(error, url_secrets(url))


class Sender:
    """Sends what the outbox holds, for the channels of the current config."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: Callable[[], Config],
        *,
        count: Count,
        backoff: Callable[[int], float] = outbox.backoff,
    ) -> None:
        self.engine = engine
        self.config = config
        self.count = count
        self.backoff = backoff  # seconds to wait after the n-th failed try
        # Sent, but the store was away when it was to be marked sent: marked at the next
        # look, so the message is not sent again when its claim runs out.
        self._unmarked: dict[int, tuple[Channel, Pending, datetime]] = {}

    async def run_once(self) -> int:
        """Drop the messages of removed channels, then send what is due; how many were sent.
        A store error is raised (the caller retries at its next look)."""
        for row_id, (channel, row, at) in list(self._unmarked.items()):
            await self._record(channel, row, None, now=at)
            del self._unmarked[row_id]
        channels = {c.name: c for c in self.config().notify.channels}
        async with self.engine.connect() as conn:
            rows = await outbox.pending(conn)
        queues: dict[str, list[Pending]] = defaultdict(list)
        for row in rows:
            queues[row.channel].append(row)
        if unknown := set(queues) - set(channels):
            await self._drop(unknown)
        work = [self._channel(channels[n], q) for n, q in queues.items() if n in channels]
        done = await asyncio.gather(*work, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return sum(n for n in done if isinstance(n, int))

    async def _drop(self, channels: set[str]) -> None:
        async with self.engine.begin() as conn:
            dropped = await outbox.drop_channels(conn, sorted(channels))
        for name, number in dropped.items():
            log.warning("notifications_dropped", channel=name, messages=number,
                        why="the channel is no longer in the config")  # fmt: skip
            self.count(name, "dropped", number)

    async def _channel(self, channel: Channel, rows: list[Pending]) -> int:
        """Send ``rows`` of one channel in order, up to the first not due or failed."""
        sent = 0
        for row in rows:
            now = utcnow()
            if row.due_at > now:
                break
            async with self.engine.begin() as conn:
                if not await outbox.claim(conn, row, until=now + outbox.LEASE):
                    break  # another daemon has it: it keeps the order from here
            error = await deliver(channel.url, row.title, row.body)
            try:
                if not await self._record(channel, row, error, now=utcnow()):
                    break
            except Exception:
                if error is None:
                    self._unmarked[row.id] = (channel, row, utcnow())
                raise
            sent += 1
        return sent

    async def _record(
        self, channel: Channel, row: Pending, error: str | None, *, now: datetime
    ) -> bool:
        async with self.engine.begin() as conn:
            if error is None:
                await outbox.mark_sent(conn, row.id, now=now)
            else:
                due = now + timedelta(seconds=self.backoff(row.attempts + 1))
                await outbox.mark_failed(conn, row, error=error, due=due)
        if error is None:
            self.count(channel.name, "sent", 1)
            log.info("notification_sent", channel=channel.name, what=row.event, id=row.id)
            return True
        self.count(channel.name, "failed", 1)
        log.warning("notification_failed", channel=channel.name, what=row.event, id=row.id,
                    attempts=row.attempts + 1, error=error, retry_at=due.isoformat())  # fmt: skip
        return False
