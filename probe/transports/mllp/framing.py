"""MLLP framing: ``0x0B payload 0x1C 0x0D``, as a sans-IO reader plus two stream helpers.

`FrameReader` takes bytes as they come off the socket, in pieces of any size, and hands
back whole frames. It never raises on bad input: bytes outside a frame are dropped and
counted as junk, a frame that grows past ``max_size`` is dropped whole (its first bytes
are kept in ``oversized_head``, so a refusal can name its MSH-10), and a start byte inside
an unfinished frame begins a new frame (the old one is junk). A listener can therefore keep
serving whatever a peer sends, and never holds more than ``max_size`` plus one read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from probe.errors import ConnectError, ProtocolError

START = b"\x0b"
END = b"\x1c\x0d"
MAX_FRAME = 16 * 1024 * 1024
_HEAD = 1024  # bytes of an oversized frame kept: its MSH segment, as a rule


def frame(payload: bytes) -> bytes:
    """Wrap one message for the wire."""
    return START + payload + END


@dataclass(slots=True)
class FrameReader:
    """Reassembles frames from a byte stream. ``junk`` counts bytes thrown away."""

    max_size: int = MAX_FRAME
    junk: int = 0
    oversized: int = 0
    oversized_head: bytes = b""  # the start of the last frame dropped for its size
    _buffer: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _dropping: bool = False  # inside a frame that grew too large: discard to its end
    _scanned: int = 0  # bytes of the buffer already searched, so a long frame is not rescanned

    @property
    def partial(self) -> bool:
        """True while a frame has started and not ended."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the end of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the payloads of every frame they complete, in order."""
        self._buffer += data
        frames: list[bytes] = []
        while self._buffer:
            if not self._in_frame:
                start = self._buffer.find(START)
                if start < 0:
                    self._drop(len(self._buffer))
                    break
                self._drop(start)
                del self._buffer[:1]
                self._in_frame, self._dropping, self._scanned = True, False, 0
            if not self._step(frames):
                break
        return frames

    def _step(self, frames: list[bytes]) -> bool:
        """Advance inside a frame; False when more bytes are needed."""
        buf = self._buffer
        since = max(0, self._scanned - 1)  # an END may straddle two reads
        end = buf.find(END, since)
        restart = buf.find(START, since)
        if restart >= 0 and (end < 0 or restart < end):
            # A new frame starts before this one ended: the unfinished one is junk.
            self._drop(restart)
            self.junk += 0 if self._dropping else 1  # its start byte
            self._in_frame = False
            return True
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self.max_size:
                if not self._dropping:
                    self._too_large()
                self._dropping = True
                self._drop(len(buf) - 1)  # keep a last byte that may begin the END
            return False
        if end > self.max_size and not self._dropping:
            self._too_large()
            self._dropping = True
        if self._dropping:
            self._drop(end + len(END))
        else:
            frames.append(bytes(buf[:end]))
            del buf[: end + len(END)]
        self._in_frame = False
        return True

    def _too_large(self) -> None:
        self.oversized += 1
        self.junk += 1  # its start byte
        self.oversized_head = bytes(self._buffer[:_HEAD])

    def _drop(self, count: int) -> None:
        self.junk += count
        del self._buffer[:count]
        self._scanned = max(0, self._scanned - count)


async def read_frame(
    reader: asyncio.StreamReader, frames: FrameReader, queue: list[bytes]
) -> bytes:
    """The next whole frame from ``reader``, keeping extra frames of one read in ``queue``.

    Raises `ConnectError` on a clean close between frames and `ProtocolError` on a close
    in the middle of one.
    """
    while not queue:
        data = await reader.read(65536)
        if not data:
            if frames.partial:
                raise ProtocolError("connection closed in the middle of an MLLP frame")
            raise ConnectError("connection closed")
        queue.extend(frames.feed(data))
    return queue.pop(0)
