"""A destination the simulator forwards HL7 v2 to over MLLP, such as the daemon's listener.

One persistent connection, opened on first use and again after any failure. Each due
message is written as a frame (twice back-to-back for a duplicate) and its ACKs are read
before the next one is written, the way an engine's outbound MLLP connection works.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

import structlog

from probe.errors import TransportError
from probe.sim.config import MllpDestinationConfig
from probe.sim.destinations.base import Fate, QueuedDestination
from probe.sim.payload import Message, as_hl7, mangle
from probe.sim.truth import TruthLog
from probe.transports.mllp.framing import FrameReader, frame, read_frame
from probe.transports.mllp.hl7v2 import ACK_CODES_OK, read_ack

log = structlog.get_logger("probe.sim")

# Tries to reach the target before a message is `undeliverable`, and the pause before the
# second try (doubled before each later one): short, because later messages wait behind.
ATTEMPTS = 3
_BACKOFF_SECONDS = 0.1
_CONNECT_TIMEOUT_SECONDS = 1.0
# A listener that ACKs at all does so at once; one that does not is treated as broken.
_ACK_TIMEOUT_SECONDS = 2.0


class MllpDestination(QueuedDestination):
    """Forwards each due message to `target`; `visible_at` is when its frame was written."""

    kind = "mllp"

    def __init__(
        self, name: str, config: MllpDestinationConfig, *, seed: int, truth: TruthLog
    ) -> None:
        super().__init__(name, config, seed=seed, truth=truth)
        self.host, self.port, self.encoding = config.host, config.port, config.encoding
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._frames = FrameReader()
        self._backlog: list[bytes] = []

    async def write(self, message: Message, fate: Fate) -> None:
        """Write the frame(s), record the truth, then read the ACK(s)."""
        text = as_hl7(message, encoding=self.encoding)
        # Mojibake a receiver decoding with `encoding` will see, in characters it can carry.
        misread_as: Literal["cp1252", "latin-1"] = (
            "latin-1" if self.encoding == "latin-1" else "cp1252"
        )
        sent = mangle(text, misread_as=misread_as) if fate.corrupt else text
        data = frame(sent.encode(self.encoding, errors="replace")) * fate.copies
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
            written_at = await self._send(data)
            if written_at is not None:
                # Recorded before the ACK: the frame is out whatever the listener answers.
                corrupted = sent != text
                self._record(message, fate, "delivered", visible_at=written_at, corrupted=corrupted)
                await self._read_acks(message.probe_id, fate.copies)
                return
        log.warning(
            "sim_mllp_undeliverable",
            destination=self.name,
            probe_id=message.probe_id,
            target=f"{self.host}:{self.port}",
        )
        self._record(message, fate, "undeliverable")

    async def close(self) -> None:
        """Close the connection, if one is open."""
        await self._disconnect()

    async def _send(self, data: bytes) -> float | None:
        """Write on the connection, opening one if needed: the time written, or None."""
        try:
            writer = await self._connection()
        except (OSError, TimeoutError) as exc:
            log.info("sim_mllp_connect_failed", destination=self.name, error=_describe(exc))
            return None
        writer.write(data)
        written_at = time.time()
        if writer.transport.is_closing():
            # The kernel refused the bytes at once (a reset peer): nothing went out.
            await self._disconnect()
            return None
        return written_at

    async def _connection(self) -> asyncio.StreamWriter:
        if self._stream is not None:
            reader, writer = self._stream
            # A peer that closed between messages has sent its EOF by now: do not write
            # into a connection that is already gone.
            if not reader.at_eof() and not writer.is_closing():
                return writer
            await self._disconnect()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout=_CONNECT_TIMEOUT_SECONDS
        )
        self._stream = (reader, writer)
        self._frames, self._backlog = FrameReader(), []
        return writer

    async def _read_acks(self, probe_id: str, count: int) -> None:
        """Read one ACK per frame written; log any that is not AA/CA, drop the link on error."""
        assert self._stream is not None
        reader = self._stream[0]
        for _ in range(count):
            try:
                payload = await asyncio.wait_for(
                    read_frame(reader, self._frames, self._backlog), timeout=_ACK_TIMEOUT_SECONDS
                )
                result = read_ack(payload.decode(self.encoding, errors="replace"))
            except (TransportError, OSError, TimeoutError) as exc:
                log.warning(
                    "sim_mllp_no_ack",
                    destination=self.name,
                    probe_id=probe_id,
                    error=_describe(exc),
                )
                await self._disconnect()
                return
            if result.code not in ACK_CODES_OK:
                log.warning(
                    "sim_mllp_nack",
                    destination=self.name,
                    probe_id=probe_id,
                    code=result.code,
                    text=result.text,
                )

    async def _disconnect(self) -> None:
        if self._stream is None:
            return
        writer = self._stream[1]
        self._stream = None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
