"""The MLLP listener that destinations share: it ACKs, never ACKs an ACK, and records arrivals.

    listener = MllpListener.from_config(destination)
    interest = listener.register("MSH-10", ["PID-5"], destination="labka")
    await listener.start()
    first = await listener.first(probe_id, match="MSH-10", deadline=deadline)

Each message that carries a probe id is stamped the moment its last byte was read.
Destinations on the same address share one listener, and an arrival may come before anyone
expects it, so arrivals are kept by probe id for a while (`probe.transports.mllp.arrivals`).

An arrival is also handed to each interested destination's recorder (the store's spool)
*before* the ACK goes out: once the engine has its ACK it will not send again, so the
sighting must already survive a crash of this process. Arrivals of probes this process did
not send (another node's, in active-active) are recorded the same way, which is how they
reach the node that waits for them.

No peer can take the process down with it; each limit is a key of the destination:
``max_connections`` (`probe.transports.mllp.accept`), ``idle_timeout`` and ``max_frame``
(`probe.transports.mllp.responder`). Every warning a peer can repeat is written once and
then summed up every `probe.transports.mllp.telemetry.LOG_EVERY`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from probe.errors import ConnectError
from probe.model import Sighting
from probe.transports.mllp.accept import Acceptor, server_context
from probe.transports.mllp.arrivals import Arrival, Arrivals
from probe.transports.mllp.responder import Read, Responder
from probe.transports.mllp.spec import (
    MLLP_IDLE_TIMEOUT,
    MLLP_MAX_CONNECTIONS,
    MLLP_MAX_FRAME,
    MllpDestination,
    MllpServerTLS,
)
from probe.transports.mllp.telemetry import ListenerStats, ThrottledLog
from probe.transports.spec import split_listen

# A probe id (`probe.model.new_probe_id`) as a whole token, e.g. a PID-3 repetition.
PROBE_ID = re.compile(r"(?<![0-9A-Za-z])PR[0-9A-F]{18}(?![0-9A-Za-z])")
# What the source reports as carried unchanged, and so what a listener records by default.
REPORTED_FIELDS = ("PID-5",)

Recorder = Callable[[Sighting], None]


@dataclass(eq=False, slots=True)
class Interest:
    """What one destination looks for on a listener, and where its sightings are recorded."""

    match: str
    fields: tuple[str, ...]
    destination: str = ""
    record: Recorder | None = None  # set through `MllpListener.set_recorder`


class MllpListener:
    """One MLLP port that destinations share (``resources.shared(("mllp", listen), ...)``).

    Observers `register` the field their probe id travels in and the fields they compare.
    The encoding, TLS settings and limits are those of the first destination on the
    address: ``MllpListener.from_config(destination)``.
    """

    def __init__(
        self,
        listen: str,
        *,
        encoding: str = "utf-8",
        tls: MllpServerTLS | None = None,
        max_connections: int = MLLP_MAX_CONNECTIONS,
        idle_timeout: float = MLLP_IDLE_TIMEOUT,
        max_frame: int = MLLP_MAX_FRAME,
    ) -> None:
        self.listen = listen
        self.host, self.port = split_listen(listen)
        self.encoding = encoding
        self.tls = tls or MllpServerTLS()
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_frame = max_frame
        self.stats = ListenerStats()
        self._interests: dict[Interest, None] = {}  # in the order they registered
        self._matches: tuple[str, ...] = ()  # the distinct `Interest.match` fields
        self._names: tuple[str, ...] = ()  # the distinct `Interest.fields`
        self._routes: dict[frozenset[str], list[tuple[str, Recorder]]] = {}
        self._stale = False  # _matches and _names are out of date
        self._arrivals = Arrivals()
        self._notes = ThrottledLog(listen)
        self._lock = asyncio.Lock()
        responder = Responder(
            listen,
            encoding=encoding,
            max_frame=max_frame,
            idle_timeout=idle_timeout,
            stats=self.stats,
            notes=self._notes,
            record=self._record,
            closed=lambda: self._acceptor.closed,
        )
        self._acceptor = Acceptor(
            listen,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            stats=self.stats,
            notes=self._notes,
            serve=responder.serve,
        )

    @classmethod
    def from_config(cls, config: MllpDestination) -> MllpListener:
        """The listener of ``config.listen``, with its encoding, TLS and limits."""
        return cls(
            config.listen,
            encoding=config.encoding,
            tls=config.tls,
            max_connections=config.max_connections,
            idle_timeout=config.idle_timeout,
            max_frame=config.max_frame,
        )

    @property
    def running(self) -> bool:
        """Whether the port is accepting connections."""
        return self._acceptor.running

    @property
    def open_connections(self) -> int:
        """Connections being served, TLS handshakes included."""
        return self._acceptor.open_connections

    def register(self, match: str, fields: Iterable[str], *, destination: str = "") -> Interest:
        """Look for probe ids in ``match`` and record ``fields``; returns a handle to unregister.

        Give the handle a recorder (`set_recorder`) to have arrivals recorded as sightings
        of ``destination``.
        """
        interest = Interest(match, tuple(fields), destination)
        self._interests[interest] = None
        self._changed()
        return interest

    def unregister(self, interest: Interest) -> None:
        if self._interests.pop(interest, False) is None:
            self._changed()

    def set_recorder(self, interest: Interest, record: Callable[[Sighting], None] | None) -> None:
        """Record the arrivals ``interest`` matches with ``record`` (None: stop recording)."""
        interest.record = record
        self._changed()

    async def start(self) -> None:
        """Listen, if not yet listening; `ConnectError` (reason ``listen``) if it cannot."""
        async with self._lock:
            if self._acceptor.closed:
                raise ConnectError(f"the MLLP listener on {self.listen} is closed", reason="listen")
            if self.running:
                return
            try:
                context = server_context(self.tls) if self.tls.enabled else None
                self.port = await self._acceptor.start(self.host, self.port, context=context)
            except (OSError, ValueError) as exc:
                message = f"cannot listen on {self.listen}: {exc}"
                raise ConnectError(message, reason="listen") from exc

    async def aclose(self) -> None:
        """Stop listening, drop every connection, and wake everyone waiting."""
        async with self._lock:
            await self._acceptor.aclose()
            self._notes.close()
            self._arrivals.wake_all()

    def copies(self, probe_id: str, *, match: str) -> list[Arrival]:
        """The copies seen so far whose ``match`` field carried ``probe_id``."""
        return self._arrivals.copies(probe_id, match=match)

    async def first(self, probe_id: str, *, match: str, deadline: float) -> Arrival | None:
        """The first copy of ``probe_id`` (in ``match``), waiting for it up to ``deadline``.

        None at the deadline, or as soon as the listener stops.
        """
        return await self._arrivals.first(
            probe_id, match=match, deadline=deadline, running=lambda: self.running
        )

    def _changed(self) -> None:
        # Worked out again at the next arrival, not here: start-up registers one interest
        # per flow and destination (15,000 at 5,000 flows), and redoing it at each one took
        # seconds.
        self._stale = True
        self._routes.clear()

    def _refresh(self) -> None:
        # What every arrival would otherwise work out from all interests, one per flow (a
        # thousand flows on one listener made that most of the listener's CPU).
        self._matches = tuple(dict.fromkeys(i.match for i in self._interests))
        self._names = tuple(dict.fromkeys(n for i in self._interests for n in i.fields))
        self._stale = False

    def _routes_for(self, carriers: frozenset[str]) -> list[tuple[str, Recorder]]:
        """(destination, recorder) for a probe id found in ``carriers``: the first interest
        per destination that records and matches, in the order they registered."""
        routes = self._routes.get(carriers)
        if routes is None:
            chosen: dict[str, Recorder] = {}
            for interest in self._interests:
                if interest.record is None or interest.match not in carriers:
                    continue
                # Destinations of several flows may share a name: recorded once.
                chosen.setdefault(interest.destination, interest.record)
            routes = self._routes[carriers] = list(chosen.items())
        return routes

    def _record(self, read: Read, *, seen_mono: float, seen_at: datetime) -> None:
        """Record the arrival of each probe id found; ``read`` gives a field's text."""
        if self._stale:
            self._refresh()
        found: dict[str, set[str]] = {}
        for name in self._matches:
            for probe_id in PROBE_ID.findall(read(name)):
                found.setdefault(probe_id, set()).add(name)
        if not found:
            return
        fields = {name: read(name) for name in self._names}
        for probe_id, names in found.items():
            carriers = frozenset(names)
            for destination, record in self._routes_for(carriers):
                record(Sighting(probe_id, destination, seen_at, seen_mono))
            self.stats.arrivals += 1
            self._arrivals.add(probe_id, Arrival(seen_mono, seen_at, carriers, fields))
