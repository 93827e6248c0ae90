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

No peer can take the process down with it (each limit is a key of the destination):

- ``max_connections``: the listener accepts connections itself, and resets those over the
  cap at once, before any TLS handshake, so they hold no descriptor. All listeners together
  also stay under `FD_SHARE` of the process's RLIMIT_NOFILE, leaving the rest to
  ``/healthz``, the store and the spool.
- ``idle_timeout``: a connection that sends nothing (or reads none of its ACKs) that long
  is closed.
- ``max_frame``: a frame that grows past it is answered with AE and its connection closed;
  nothing is buffered beyond it.
- An accept that fails (EMFILE: out of descriptors) rests the port for `ACCEPT_RETRY`.
  asyncio's own accept loop would log a traceback at each try, many times a second; every
  warning a peer can repeat here is written once and then summed up every `LOG_EVERY`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import structlog

from probe.durations import format_duration
from probe.errors import ConnectError, ProtocolError
from probe.model import Sighting, utcnow
from probe.transports.mllp import hl7v2
from probe.transports.mllp.framing import FrameReader, frame
from probe.transports.specs import (
    MLLP_IDLE_TIMEOUT,
    MLLP_MAX_CONNECTIONS,
    MLLP_MAX_FRAME,
    MllpDestination,
    MllpServerTLS,
    split_listen,
)

log = structlog.get_logger("probe.transports.mllp.transport")

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
_BACKLOG = 100  # connections the kernel queues, and taken per wake-up (as asyncio does)
ACCEPT_RETRY = 0.5  # how long a port rests after accept() failed (asyncio rests 1 s)
LOG_EVERY = 60.0  # a warning a peer can repeat is written once, then summed up this often
# All listeners' connections together stay under this share of the process's descriptors,
# whatever their max_connections: the rest is for /healthz, the store and the spool.
FD_SHARE = 0.75
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() resets the connection


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
    oversized: int = 0  # frames refused for their size (AE, then the connection closed)
    broken_frames: int = 0  # connections closed in the middle of a frame
    refused: int = 0  # connections reset at once: max_connections, or descriptors, reached
    idle_closed: int = 0  # connections closed after idle_timeout
    accept_errors: int = 0  # failed accept() calls (EMFILE ...), each followed by a rest


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


class _Throttled:
    """A log line a peer could repeat without end: written the first time, then summed up
    every `LOG_EVERY` while it goes on (``count``, and ``detail``: "N more like this in the
    last 1m"), and a last time when the listener closes."""

    def __init__(self, event: str, listen: str, *, level: int) -> None:
        self.event, self.listen, self.level = event, listen, level
        self._count = 0
        self._fields: dict[str, Any] = {}  # those of the latest occurrence
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def note(self, **fields: Any) -> None:
        if self._timer is None:
            log.log(self.level, self.event, listen=self.listen, **fields)
            self._open_window()
        else:
            self._count += 1
            self._fields = fields

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._sum_up()

    def _open_window(self) -> None:
        self._since = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(LOG_EVERY, self._window_ended)

    def _window_ended(self) -> None:
        self._timer = None
        if self._sum_up():
            self._open_window()  # it goes on: the next window is summed up too

    def _sum_up(self) -> bool:
        if not self._count:
            return False
        count, self._count = self._count, 0
        window = format_duration(max(1, round(time.monotonic() - self._since)))
        detail = f"{count} more like this in the last {window}"
        fields = {**self._fields, "count": count, "detail": detail}
        log.log(self.level, self.event, listen=self.listen, **fields)
        return True


@dataclass(slots=True)
class _Descriptors:
    """The connections of every listener in this process, against its descriptor limit."""

    taken: int = 0

    def available(self) -> bool:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft == resource.RLIM_INFINITY or self.taken < soft * FD_SHARE


_DESCRIPTORS = _Descriptors()


@dataclass(eq=False, slots=True)
class _Connection:
    sock: socket.socket
    handed_over: bool = False  # from here on asyncio's transport owns (and closes) the socket
    writer: asyncio.StreamWriter | None = None  # once the transport (and TLS) is up


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
        self._tracks: dict[str, _Track] = {}
        self._pruned = 0.0
        self._sockets: list[socket.socket] = []  # listening
        self._context: ssl.SSLContext | None = None
        self._resting: dict[socket.socket, asyncio.TimerHandle] = {}  # after accept() failed
        self._handlers: dict[asyncio.Task[None], _Connection] = {}
        self._throttles: dict[str, _Throttled] = {}
        self._lock = asyncio.Lock()
        self._closed = False

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
        return bool(self._sockets)

    @property
    def open_connections(self) -> int:
        """Connections being served, TLS handshakes included."""
        return len(self._handlers)

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
                self._context = server_context(self.tls) if self.tls.enabled else None
                self._sockets = await _bind(self.host, self.port)
            except (OSError, ValueError) as exc:
                message = f"cannot listen on {self.listen}: {exc}"
                raise ConnectError(message, reason="listen") from exc
            self.port = self._sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            for sock in self._sockets:
                loop.add_reader(sock.fileno(), self._accept, sock)

    async def aclose(self) -> None:
        """Stop listening, drop every connection, and wake everyone waiting."""
        async with self._lock:
            self._closed = True
            loop = asyncio.get_running_loop()
            for sock in self._sockets:
                loop.remove_reader(sock.fileno())
                sock.close()
            self._sockets = []
            for timer in self._resting.values():
                timer.cancel()
            self._resting.clear()
            # An aborted connection ends its handler's read at once; one in its TLS
            # handshake ends when its socket is shut down; one not started sees _closed.
            handlers = list(self._handlers)
            for connection in self._handlers.values():
                if connection.writer is not None:
                    connection.writer.transport.abort()
                elif connection.handed_over:
                    with contextlib.suppress(OSError):
                        connection.sock.shutdown(socket.SHUT_RDWR)
            if handlers:
                _, stuck = await asyncio.wait(handlers, timeout=2 * _CLOSE_GRACE)
                for task in stuck:
                    task.cancel()
            for throttle in self._throttles.values():
                throttle.close()
            for track in self._tracks.values():
                _wake(track)

    def _accept(self, sock: socket.socket) -> None:
        """The port is readable: take what waits, serving each connection or resetting it.

        Our own accept loop, not `asyncio.start_server`'s: that one logs a traceback for
        every failed accept (and, on Python 3.11, up to 100 a wake-up), and it accepts
        without a cap, holding each connection through its TLS handshake.
        """
        for _ in range(_BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing left waiting
            except OSError as exc:
                self._rest(sock, exc)
                return
            if len(self._handlers) >= self.max_connections or not _DESCRIPTORS.available():
                self._turn_away(conn)
                continue
            conn.setblocking(False)
            connection = _Connection(conn)
            task = asyncio.create_task(self._connection(connection))
            self._handlers[task] = connection
            _DESCRIPTORS.taken += 1
            task.add_done_callback(self._connection_ended)

    def _turn_away(self, conn: socket.socket) -> None:
        """Over a limit: reset the connection at once, so that it holds no descriptor."""
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        conn.close()
        self.stats.refused += 1
        full = len(self._handlers) >= self.max_connections
        self._log_limited(
            "mllp_connection_refused",
            reason="max_connections" if full else "descriptors",
            max_connections=self.max_connections,
            open=len(self._handlers),
        )

    def _rest(self, sock: socket.socket, exc: OSError) -> None:
        """accept() failed (EMFILE, ENFILE, ENOBUFS ...): retrying at once would fail again
        and, as the port stays readable, spin. Rest the port instead."""
        self.stats.accept_errors += 1
        error = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self._log_limited("mllp_accept_failed", error=error, retry_s=ACCEPT_RETRY)
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        self._resting[sock] = loop.call_later(ACCEPT_RETRY, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        del self._resting[sock]
        if sock in self._sockets:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    async def _connection(self, connection: _Connection) -> None:
        if self._closed:
            return  # `_connection_ended` closes the socket
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        connection.handed_over = True
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection.sock,
                ssl=self._context,
                ssl_handshake_timeout=min(self.idle_timeout, 60.0) if self._context else None,
            )
        except OSError as exc:  # a failed or timed out TLS handshake, a peer already gone
            log.debug("mllp_handshake_failed", listen=self.listen, error=type(exc).__name__)
            return
        connection.writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._serve(reader, connection.writer)

    def _connection_ended(self, task: asyncio.Task[None]) -> None:
        connection = self._handlers.pop(task)
        _DESCRIPTORS.taken -= 1
        if not connection.handed_over:
            connection.sock.close()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("mllp_connection_failed", listen=self.listen, exc_info=exc)

    def _log_limited(self, event: str, *, level: int = logging.WARNING, **fields: Any) -> None:
        """Log ``event``, once and then summed up every `LOG_EVERY` (see `_Throttled`)."""
        throttle = self._throttles.get(event)
        if throttle is None:
            throttle = self._throttles[event] = _Throttled(event, self.listen, level=level)
        throttle.note(**fields)

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
        self.stats.connections += 1
        frames = FrameReader(max_size=self.max_frame)
        counted = (0, 0)
        try:
            while not self._closed:
                async with asyncio.timeout(self.idle_timeout):
                    data = await reader.read(65536)
                if not data:
                    break
                # Stamped before any parsing: this is the arrival time latency is taken from.
                seen_mono, seen_at = time.monotonic(), utcnow()
                for payload in frames.feed(data):
                    try:
                        self._on_frame(payload, writer, seen_mono=seen_mono, seen_at=seen_at)
                    except Exception:  # a bug costs one message, never the listener
                        log.exception("mllp_frame_failed", listen=self.listen)
                counted = self._count_junk(frames, counted)
                if frames.oversized:
                    await self._refuse_oversized(frames, writer)
                    break
                async with asyncio.timeout(self.idle_timeout):  # a peer that reads no ACK
                    await writer.drain()
        except TimeoutError:
            self.stats.idle_closed += 1
            self._log_limited(
                "mllp_idle_closed", level=logging.INFO, idle_timeout_s=self.idle_timeout
            )
        except OSError as exc:  # reset, TLS trouble: this connection only
            log.debug("mllp_connection_error", listen=self.listen, error=type(exc).__name__)
        finally:
            if frames.partial and not frames.oversized:
                self.stats.broken_frames += 1
                self._log_limited("mllp_closed_mid_frame")
            await close_writer(writer)

    def _count_junk(self, frames: FrameReader, counted: tuple[int, int]) -> tuple[int, int]:
        junk, oversized = frames.junk - counted[0], frames.oversized - counted[1]
        if junk or oversized:
            self.stats.junk_bytes += junk
            self.stats.oversized += oversized
            if counted == (0, 0) and not oversized:  # an oversized frame is logged as such
                self._log_limited("mllp_junk", junk_bytes=junk)
        return frames.junk, frames.oversized

    async def _refuse_oversized(self, frames: FrameReader, writer: asyncio.StreamWriter) -> None:
        """AE for a frame over `max_frame`, naming its MSH-10; the caller then closes."""
        text = frames.oversized_head.decode(self.encoding, errors="replace")
        control_id = _UNSAFE_ID.sub("", hl7v2.raw_control_id(text))[:50]
        self._log_limited("mllp_frame_too_large", control_id=control_id, max_frame=self.max_frame)
        reason = f"message larger than max_frame ({self.max_frame} bytes)"
        reply = hl7v2.ack_for_garbage(control_id, reason)
        writer.write(frame(reply.encode(self.encoding, errors="replace")))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_GRACE):
                await writer.drain()

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
        self._log_limited("mllp_unparsable", control_id=control_id, error=error)
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


async def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host``, made as `asyncio.start_server` makes
    them: SO_REUSEADDR, IPv6 sockets IPv6-only, non-blocking."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"no address for {host!r}")
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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
