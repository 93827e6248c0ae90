"""The MLLP listener that destinations share: it ACKs, never ACKs an ACK, and records arrivals.

Each message that carries a probe id is stamped the moment its last byte was read.
Destinations on the same address share one listener, and an arrival may come before anyone
expects it (an engine can forward before our source has its own ACK), so arrivals are kept
by probe id for `ARRIVAL_TTL` seconds.

An arrival is also handed to each interested destination's recorder (the store's spool)
*before* the ACK goes out: once the engine has its ACK it will not send again, so the
sighting must already survive a crash of this process. Arrivals of probes this process did
not send (another node's, in active-active) are recorded the same way, which is how they
reach the node that waits for them.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import structlog

from probe import hl7v2
from probe.errors import ConnectError, ProtocolError
from probe.mllp import FrameReader, frame
from probe.model import Sighting, utcnow
from probe.transport_config import (
    MllpServerTLS,
    split_listen,
)

log = structlog.get_logger("probe.transports.mllp")

# A probe id (`probe.model.new_probe_id`) as a whole token, e.g. a PID-3 repetition.
PROBE_ID = re.compile(r"(?<![0-9A-Za-z])PR[0-9A-F]{18}(?![0-9A-Za-z])")
# What the source reports as carried unchanged, and so what a listener records by default.
REPORTED_FIELDS = ("PID-5",)
# Arrivals nobody waits for are kept this long: sightings are in the store from the moment
# they arrive, so memory only bridges an arrival that beats its own `expect` by moments.
ARRIVAL_TTL = 60.0
MAX_TRACKED = 10_000  # probe ids remembered at most, whatever a peer sends
MAX_COPIES = 1_000  # copies remembered per probe id
_PRUNE_EVERY = 10.0
_CLOSE_GRACE = 1.0  # a TLS peer may never answer our close_notify
_UNSAFE_ID = re.compile(r"[^0-9A-Za-z._-]")


def server_context(tls: MllpServerTLS) -> ssl.SSLContext:
    """The listener side; with ``ca_file``, clients must show a certificate it signed."""
    assert tls.cert_file is not None  # checked when the config was loaded
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file:
        context.load_verify_locations(tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream politely, but never wait long for the peer to agree."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


@dataclass(slots=True)
class ListenerStats:
    """What a listener has seen since it started, for logs and tests."""

    connections: int = 0
    messages: int = 0  # whole frames
    acks_sent: int = 0  # AA for messages that parsed
    acks_ignored: int = 0  # ACKs and other replies received: never answered
    unparsable: int = 0  # frames answered with AE
    arrivals: int = 0  # messages that carried a probe id
    junk_bytes: int = 0  # bytes outside any frame, or in frames that never ended
    oversized: int = 0  # frames dropped for their size
    broken_frames: int = 0  # connections closed in the middle of a frame


@dataclass(frozen=True, slots=True)
class Arrival:
    """One copy of a probe message: when it was read, where its id was, compared fields."""

    seen_mono: float
    seen_at: datetime
    found_in: frozenset[str]
    fields: Mapping[str, str]


Recorder = Callable[[Sighting], None]


@dataclass(eq=False, slots=True)
class Interest:
    """What one destination looks for on a listener, and where its sightings are recorded."""

    match: str
    fields: tuple[str, ...]
    destination: str = ""
    record: Recorder | None = None  # set through `MllpListener.set_recorder`


@dataclass(slots=True)
class _Track:
    created: float
    copies: list[Arrival] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)


class MllpListener:
    """One MLLP port that destinations share (``resources.shared(("mllp", listen), ...)``).

    Observers `register` the field their probe id travels in and the fields they compare.
    The encoding and TLS settings are those of the first destination on the address.
    """

    def __init__(
        self, listen: str, *, encoding: str = "utf-8", tls: MllpServerTLS | None = None
    ) -> None:
        self.listen = listen
        self.host, self.port = split_listen(listen)
        self.encoding = encoding
        self.tls = tls or MllpServerTLS()
        self.stats = ListenerStats()
        self._interests: dict[Interest, None] = {}  # in the order they registered
        self._matches: tuple[str, ...] = ()  # the distinct `Interest.match` fields
        self._names: tuple[str, ...] = ()  # the distinct `Interest.fields`
        self._routes: dict[frozenset[str], list[tuple[str, Recorder]]] = {}
        self._stale = False  # _matches and _names are out of date
        self._tracks: dict[str, _Track] = {}
        self._pruned = 0.0
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether the port is accepting connections."""
        return self._server is not None and self._server.is_serving()

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

    async def start(self) -> None:
        """Listen, if not yet listening; `ConnectError` (reason ``listen``) if it cannot."""
        async with self._lock:
            if self._closed:
                raise ConnectError(f"the MLLP listener on {self.listen} is closed", reason="listen")
            if self.running:
                return
            try:
                context = server_context(self.tls) if self.tls.enabled else None
                self._server = await asyncio.start_server(
                    self._serve, self.host, self.port, ssl=context
                )
            except (OSError, ValueError) as exc:
                message = f"cannot listen on {self.listen}: {exc}"
                raise ConnectError(message, reason="listen") from exc
            self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, drop every connection, and wake everyone waiting."""
        async with self._lock:
            self._closed = True
            server, self._server = self._server, None
            if server is not None:
                server.close()
            # Aborted rather than cancelled: Python 3.11's streams log a cancelled handler
            # as an error. An aborted connection ends its handler's read at once.
            handlers = list(self._handlers)
            for writer in self._handlers.values():
                writer.transport.abort()
            if handlers:
                _, stuck = await asyncio.wait(handlers, timeout=2 * _CLOSE_GRACE)
                for task in stuck:
                    task.cancel()
            if server is not None:
                await server.wait_closed()
            for track in self._tracks.values():
                _wake(track)

    def copies(self, probe_id: str, *, match: str) -> list[Arrival]:
        """The copies seen so far whose ``match`` field carried ``probe_id``."""
        track = self._tracks.get(probe_id)
        return [c for c in track.copies if match in c.found_in] if track else []

    async def first(self, probe_id: str, *, match: str, deadline: float) -> Arrival | None:
        """The first copy of ``probe_id`` (in ``match``), waiting for it up to ``deadline``.

        None at the deadline, or as soon as the listener stops.
        """
        while True:
            seen = self.copies(probe_id, match=match)
            if seen:
                return seen[0]
            now = time.monotonic()
            if not self.running or now >= deadline:
                return None
            track = self._tracks.setdefault(probe_id, _Track(now))
            waiter = asyncio.get_running_loop().create_future()
            track.waiters.add(waiter)
            try:
                async with asyncio.timeout(deadline - now):
                    await waiter
            except TimeoutError:
                pass  # the loop looks once more, then gives up
            finally:
                track.waiters.discard(waiter)
                if not track.copies and not track.waiters and self._tracks.get(probe_id) is track:
                    del self._tracks[probe_id]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        self.stats.connections += 1
        frames = FrameReader()
        counted = (0, 0)
        try:
            while not self._closed and (data := await reader.read(65536)):
                # Stamped before any parsing: this is the arrival time latency is taken from.
                seen_mono, seen_at = time.monotonic(), utcnow()
                for payload in frames.feed(data):
                    try:
                        self._on_frame(payload, writer, seen_mono=seen_mono, seen_at=seen_at)
                    except Exception:  # a bug costs one message, never the listener
                        log.exception("mllp_frame_failed", listen=self.listen)
                counted = self._count_junk(frames, counted)
                await writer.drain()
        except OSError as exc:  # reset, TLS trouble: this connection only
            log.debug("mllp_connection_error", listen=self.listen, error=type(exc).__name__)
        finally:
            if frames.partial:
                self.stats.broken_frames += 1
                log.warning("mllp_closed_mid_frame", listen=self.listen)
            del self._handlers[task]
            await close_writer(writer)

    def _count_junk(self, frames: FrameReader, counted: tuple[int, int]) -> tuple[int, int]:
        junk, oversized = frames.junk - counted[0], frames.oversized - counted[1]
        if junk or oversized:
            self.stats.junk_bytes += junk
            self.stats.oversized += oversized
            if counted == (0, 0):  # once per connection: a noisy peer must not flood the log
                log.warning("mllp_junk", listen=self.listen, junk_bytes=junk, oversized=oversized)
        return frames.junk, frames.oversized

    def _on_frame(
        self, payload: bytes, writer: asyncio.StreamWriter, *, seen_mono: float, seen_at: datetime
    ) -> None:
        self.stats.messages += 1
        # Undecodable bytes become U+FFFD, so the message still parses and shows as changed.
        text = payload.decode(self.encoding, errors="replace")
        raw = RawMessage.of(text)
        read: Callable[[str], str]
        try:
            if raw is not None:  # the usual case: read by splitting, as hl7.parse would
                if raw.is_reply():
                    self.stats.acks_ignored += 1  # answering an ACK could start an ACK storm
                    return
                reply = raw.ack() or hl7v2.ack(hl7v2.parse(raw.header), "AA")
                read = raw.field
            else:
                message = hl7v2.parse(text)
                if _is_reply(message):
                    self.stats.acks_ignored += 1
                    return
                reply = hl7v2.ack(message, "AA")
                read = partial(hl7v2.field_text, message)
        except Exception as exc:  # the hl7 package raises several unrelated types
            self._refuse(text, writer, exc)
            return
        try:
            self._record(read, seen_mono=seen_mono, seen_at=seen_at)  # before the ACK
        except Exception:
            # Not acknowledged, so the engine sends it again: better than a lost sighting.
            log.exception("mllp_record_failed", listen=self.listen)
            return
        writer.write(frame(reply.encode(self.encoding, errors="replace")))
        self.stats.acks_sent += 1

    def _refuse(self, text: str, writer: asyncio.StreamWriter, exc: Exception) -> None:
        self.stats.unparsable += 1
        control_id = _UNSAFE_ID.sub("", hl7v2.raw_control_id(text))[:50]
        # Only the kind of error: its text could quote the message, and so a patient.
        error = str(exc).split(":", 1)[0] if isinstance(exc, ProtocolError) else type(exc).__name__
        log.warning("mllp_unparsable", listen=self.listen, control_id=control_id, error=error)
        reply = hl7v2.ack_for_garbage(control_id, f"unparsable HL7 message: {error}")
        writer.write(frame(reply.encode(self.encoding, errors="replace")))

    def _record(self, read: Callable[[str], str], *, seen_mono: float, seen_at: datetime) -> None:
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
            self._arrive(probe_id, Arrival(seen_mono, seen_at, carriers, fields))

    def _arrive(self, probe_id: str, arrival: Arrival) -> None:
        self.stats.arrivals += 1
        self._prune(arrival.seen_mono)  # at most every _PRUNE_EVERY, unless over the cap
        track = self._tracks.get(probe_id)
        if track is None:
            track = self._tracks[probe_id] = _Track(arrival.seen_mono)
        if len(track.copies) < MAX_COPIES:
            track.copies.append(arrival)
        _wake(track)

    def _prune(self, now: float) -> None:
        """Forget probe ids older than the TTL, and the oldest beyond `MAX_TRACKED`."""
        if now - self._pruned < _PRUNE_EVERY and len(self._tracks) < MAX_TRACKED:
            return
        self._pruned = now
        for probe_id, track in list(self._tracks.items()):
            young = now - track.created < ARRIVAL_TTL
            if young and len(self._tracks) < MAX_TRACKED:
                break  # ids were added in time order: the rest are younger still
            if not track.waiters:
                del self._tracks[probe_id]


# The standard separators: a message that starts this way is read by `RawMessage`.
_PLAIN_MSH = "MSH|^~\\&|"
# An MSH-9 of components only (no repetition, subcomponent or escape), at least two.
_PLAIN_TYPE = re.compile(r"[^~&\\^]*(\^[^~&\\^]*)+")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message with the standard separators, read by splitting the text the way
    `hl7.parse` splits it, without building its containers (parsing every arrival and ACK
    was about a quarter of the daemon's CPU at 200 probes/s).

    `field` gives what `hl7v2.field_text` gives for the parsed message. `of` returns None
    for any other text, which then goes through `hl7v2.parse` as before.
    """

    header: str  # the MSH segment
    segments: tuple[list[str], ...]  # each segment split into its fields

    @classmethod
    def of(cls, text: str) -> RawMessage | None:
        text = text.strip("\r\n")  # as `hl7v2.parse`, then `hl7.parse` strips whitespace
        if not text.startswith(_PLAIN_MSH):
            return None
        lines = text.strip().split("\r")
        return cls(lines[0], tuple(line.split("|") for line in lines))

    def field(self, name: str) -> str:
        """The whole field (repetitions and components) as text; ``""`` if absent."""
        segment_id, number = _field_name(name)
        for parts in self.segments:
            if parts[0] == segment_id and len(parts) > 1:
                if segment_id == "MSH":  # MSH-1 is the separator itself
                    if number == 1:
                        return "|"
                    number -= 1
                return parts[number] if number < len(parts) else ""
        return ""

    def ack(self) -> str | None:
        """`hl7v2.ack` (AA) for this message, as text; None if its MSH is not plain enough
        (`hl7v2.ack` then decides, and may refuse it)."""
        msh = self.segments[0]
        # MSH-12 must be there, and MSH-9 plain components: the hl7 package fails otherwise.
        if len(msh) < 12 or not _PLAIN_TYPE.fullmatch(msh[8]):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        kind = f"ACK^{msh[8].split('^')[1]}^ACK"
        header = [msh[0], msh[1], msh[4], msh[5], msh[2], msh[3], stamp, "", kind]
        header += [f"ACK{msh[9]}"[:20], msh[10], msh[11]]
        return "|".join(header) + f"\rMSA|AA|{msh[9]}\r"

    def has(self, segment_id: str) -> bool:
        # A segment with no field separator at all is not found by `hl7` either.
        return any(parts[0] == segment_id and len(parts) > 1 for parts in self.segments)

    def is_reply(self) -> bool:
        """An ACK, or any other reply (it has an MSA): never to be acknowledged."""
        return self.field("MSH-9").split("^", 1)[0] == "ACK" or self.has("MSA")


@cache
def _field_name(name: str) -> tuple[str, int]:
    return hl7v2.parse_field_name(name)


def _wake(track: _Track) -> None:
    for waiter in track.waiters:
        if not waiter.done():
            waiter.set_result(None)


def _is_reply(message: Any) -> bool:
    """An ACK, or any other reply (it has an MSA): never to be acknowledged."""
    if hl7v2.message_type(message) == "ACK":
        return True
    try:
        message.segment("MSA")
    except KeyError:
        return False
    return True
