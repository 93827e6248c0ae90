"""What an MLLP listener says on each connection: AA for a message, AE for garbage, and
nothing at all for an ACK (answering one could start an ACK storm).

    responder = Responder(listen, encoding="utf-8", max_frame=1 << 20, idle_timeout=300.0,
                          stats=stats, notes=notes, record=record, closed=lambda: False)
    await responder.serve(reader, writer)   # until the peer leaves, idles or oversteps

Each message is stamped the moment its last byte was read, and handed to ``record``
*before* its ACK goes out: once the engine has its ACK it will not send again.

- ``idle_timeout``: a connection that sends nothing (or reads none of its ACKs) that long
  is closed.
- ``max_frame``: a frame that grows past it is answered with AE and its connection closed;
  nothing is buffered beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Protocol

from probe.errors import ProtocolError
from probe.model import utcnow
from probe.transports.mllp import hl7v2
from probe.transports.mllp.accept import CLOSE_GRACE, close_writer
from probe.transports.mllp.framing import FrameReader, frame
from probe.transports.mllp.raw import RawMessage, is_reply
from probe.transports.mllp.telemetry import ListenerStats, ThrottledLog, log

_UNSAFE_ID = re.compile(r"[^0-9A-Za-z._-]")

Read = Callable[[str], str]
"""A message's field as text, by name (``read("MSH-10")``)."""


class Record(Protocol):
    """Records the arrival of one message, whose fields ``read`` gives."""

    def __call__(self, read: Read, *, seen_mono: float, seen_at: datetime) -> None: ...


class Responder:
    """Serves the connections of one listener, one `serve` call per connection."""

    def __init__(
        self,
        listen: str,
        *,
        encoding: str,
        max_frame: int,
        idle_timeout: float,
        stats: ListenerStats,
        notes: ThrottledLog,
        record: Record,
        closed: Callable[[], bool],
    ) -> None:
        self.listen = listen
        self.encoding = encoding
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.stats = stats
        self.notes = notes
        self.record = record
        self.closed = closed

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer every frame on this connection, then close it."""
        self.stats.connections += 1
        frames = FrameReader(max_size=self.max_frame)
        counted = (0, 0)
        try:
            while not self.closed():
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
            self.notes.note(
                "mllp_idle_closed", level=logging.INFO, idle_timeout_s=self.idle_timeout
            )
        except OSError as exc:  # reset, TLS trouble: this connection only
            log.debug("mllp_connection_error", listen=self.listen, error=type(exc).__name__)
        finally:
            if frames.partial and not frames.oversized:
                self.stats.broken_frames += 1
                self.notes.note("mllp_closed_mid_frame")
            await close_writer(writer)

    def _count_junk(self, frames: FrameReader, counted: tuple[int, int]) -> tuple[int, int]:
        junk, oversized = frames.junk - counted[0], frames.oversized - counted[1]
        if junk or oversized:
            self.stats.junk_bytes += junk
            self.stats.oversized += oversized
            if counted == (0, 0) and not oversized:  # an oversized frame is logged as such
                self.notes.note("mllp_junk", junk_bytes=junk)
        return frames.junk, frames.oversized

    async def _refuse_oversized(self, frames: FrameReader, writer: asyncio.StreamWriter) -> None:
        """AE for a frame over `max_frame`, naming its MSH-10; the caller then closes."""
        text = frames.oversized_head.decode(self.encoding, errors="replace")
        control_id = _UNSAFE_ID.sub("", hl7v2.raw_control_id(text))[:50]
        self.notes.note("mllp_frame_too_large", control_id=control_id, max_frame=self.max_frame)
        reason = f"message larger than max_frame ({self.max_frame} bytes)"
        reply = hl7v2.ack_for_garbage(control_id, reason)
        writer.write(frame(reply.encode(self.encoding, errors="replace")))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE):
                await writer.drain()

    def _on_frame(
        self, payload: bytes, writer: asyncio.StreamWriter, *, seen_mono: float, seen_at: datetime
    ) -> None:
        self.stats.messages += 1
        # Undecodable bytes become U+FFFD, so the message still parses and shows as changed.
        text = payload.decode(self.encoding, errors="replace")
        try:
            answer = self._answer(text)
        except Exception as exc:  # the hl7 package raises several unrelated types
            self._refuse(text, writer, exc)
            return
        if answer is None:
            self.stats.acks_ignored += 1  # answering an ACK could start an ACK storm
            return
        reply, read = answer
        try:
            self.record(read, seen_mono=seen_mono, seen_at=seen_at)  # before the ACK
        except Exception:
            # Not acknowledged, so the engine sends it again: better than a lost sighting.
            log.exception("mllp_record_failed", listen=self.listen)
            return
        writer.write(frame(reply.encode(self.encoding, errors="replace")))
        self.stats.acks_sent += 1

    def _answer(self, text: str) -> tuple[str, Read] | None:
        """The AA for a message and how to read its fields; None for a reply (an ACK)."""
        raw = RawMessage.of(text)
        if raw is not None:  # the usual case: read by splitting, as hl7.parse would
            if raw.is_reply():
                return None
            return raw.ack() or hl7v2.ack(hl7v2.parse(raw.header), "AA"), raw.field
        message = hl7v2.parse(text)
        if is_reply(message):
            return None
        return hl7v2.ack(message, "AA"), partial(hl7v2.field_text, message)

    def _refuse(self, text: str, writer: asyncio.StreamWriter, exc: Exception) -> None:
        self.stats.unparsable += 1
        control_id = _UNSAFE_ID.sub("", hl7v2.raw_control_id(text))[:50]
        # Only the kind of error: its text could quote the message, and so a patient.
        error = str(exc).split(":", 1)[0] if isinstance(exc, ProtocolError) else type(exc).__name__
        self.notes.note("mllp_unparsable", control_id=control_id, error=error)
        reply = hl7v2.ack_for_garbage(control_id, f"unparsable HL7 message: {error}")
        writer.write(frame(reply.encode(self.encoding, errors="replace")))
