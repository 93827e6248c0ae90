"""The simulated HL7 v2 engine that GS sends to over MLLP.

Each connection is read with its own `FrameReader`, so a peer may send any number of
messages, in pieces or several to a read. For each message the engine decodes it with its
`encoding`, parses it and answers an ACK, then hands it to every destination:

- not HL7 v2 (or an MSH too short to acknowledge): AE ACK, truth `rejected`, nothing
  forwarded; the connection keeps being served;
- an ACK: never acknowledged, nothing forwarded;
- otherwise AA, and the text goes to every destination; the probe id is MSH-10 if it has
  the probe id's shape, else the first ``PR`` + 18 hex digits token, else MSH-10 as is
  (an empty one is rejected with AE).

Outages: `refuse` closes the port and every open connection; `ae` answers AE and
forwards nothing (truth `rejected`, destination ""); `drop` answers AA and forwards
nothing (truth `dropped_outage` per destination); `stall` forwards at once and holds the
ACK for `stall` seconds.

The port is bound by us with ``IPPROTO_TCP`` so asyncio sets TCP_NODELAY on accepted
connections, and while refusing it stays bound without listening (see `probe.web.listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence

import hl7
import structlog

from probe.errors import ProtocolError
from probe.sim.config import MllpEngineConfig, MllpEngineOutage
from probe.sim.destinations import Destination
from probe.sim.outage import OutageSchedule
from probe.sim.payload import Message, find_probe_id_text
from probe.sim.truth import TruthLog, TruthRecord
from probe.transports.mllp import hl7v2
from probe.transports.mllp.framing import FrameReader, frame
from probe.web.listener import bind_tcp

log = structlog.get_logger("probe.sim")

_READ_SIZE = 65536


class MllpEngine:
    """The MLLP engine: a TCP port that can refuse (pause) and listen again (resume)."""

    name = "mllp_engine"

    def __init__(
        self, destinations: Sequence[Destination], *, config: MllpEngineConfig, truth: TruthLog
    ) -> None:
        self.outages: OutageSchedule[MllpEngineOutage] = OutageSchedule(config.outages)
        self.host, self.port, self.encoding = config.host, config.port, config.encoding
        self._destinations = tuple(destinations)
        self._truth = truth
        self._released = asyncio.Event()
        self._family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._lock = asyncio.Lock()
        self._reserved: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()

    @property
    def listening(self) -> bool:
        """Whether the port currently accepts connections."""
        return self._server is not None

    async def start(self, *, listening: bool = True) -> None:
        """Bind the port (learning it, if it was 0), and listen unless told not to yet."""
        async with self._lock:
            self._reserved = self._bind()
            self.port = self._reserved.getsockname()[1]
            if listening:
                await self._listen()

    async def pause(self) -> None:
        """Refuse: stop listening, drop every connection, keep the port bound."""
        async with self._lock:
            if self._server is not None:
                await self._shut_down()
                self._reserved = self._bind()

    async def resume(self) -> None:
        """Listen again on the same port; no-op if listening or stopped."""
        async with self._lock:
            if self._server is None and self._reserved is not None:
                await self._listen()

    async def stop(self) -> None:
        """Stop listening, drop every connection and release the port. Safe to call twice."""
        self.release_stalls()
        async with self._lock:
            if self._server is not None:
                await self._shut_down()
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None

    def release_stalls(self) -> None:
        """Send every held ACK now and hold no more, so connections can close."""
        self._released.set()

    def _bind(self) -> socket.socket:
        return bind_tcp(self.host, self.port, family=self._family)

    async def _listen(self) -> None:
        # No reserved socket if rebinding failed when the port was closed; try again now.
        sock = self._reserved if self._reserved is not None else self._bind()
        self._reserved = None
        try:
            self._server = await asyncio.start_server(self._serve, sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _shut_down(self) -> None:
        server, self._server = self._server, None
        assert server is not None
        server.close()  # closes the listening socket at once: refusal is immediate
        # A connection accepted just now has a handler task not yet started: let it start
        # (it sees no server and closes) before cutting off the others.
        await asyncio.sleep(0)
        while self._connections:
            handlers = list(self._connections)
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._connections.add(handler)
        frames = FrameReader()
        try:
            while self._server is not None and (data := await reader.read(_READ_SIZE)):
                received_at = time.time()  # the frame(s) in `data` are complete now
                for payload in frames.feed(data):
                    reply = await self._answer(payload, received_at)
                    if reply is not None:
                        writer.write(frame(reply.encode(self.encoding, errors="replace")))
                        await writer.drain()
        except OSError:  # the peer reset or vanished: nothing left to answer
            pass
        except Exception:  # a bug must not leave a task exception nobody retrieves
            log.exception("sim_mllp_engine_failed")
        finally:
            self._connections.discard(handler)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, payload: bytes, received_at: float) -> str | None:
        """The ACK to send for one frame, or None (for an ACK); forwards what it accepts."""
        text = payload.decode(self.encoding, errors="replace")
        try:
            message = hl7v2.parse(text)
        except ProtocolError as exc:
            return self._reject_garbage(text, received_at, str(exc))
        if hl7v2.message_type(message) == "ACK":
            log.info("sim_mllp_engine_ignored_ack", control_id=hl7v2.raw_control_id(text))
            return None
        try:
            accepted = hl7v2.ack(message, "AA")
        except Exception:  # the hl7 package fails in several ways on a short MSH
            return self._reject_garbage(text, received_at, "MSH lacks fields an ACK needs")
        probe_id = _probe_id(message, text)
        if not probe_id:
            self._reject(probe_id, received_at)
            return hl7v2.ack(message, "AE", "no message control id (MSH-10)")
        if self.outages.active("ae") is not None:
            self._reject(probe_id, received_at)
            return hl7v2.ack(message, "AE", "simulated outage")
        dropped = self.outages.active("drop") is not None
        forwarded = Message(probe_id, received_at, text, hl7=True, engine="mllp")
        for destination in self._destinations:
            destination.forward(forwarded, dropped=dropped)
        await self._stall()
        return accepted

    def _reject_garbage(self, text: str, received_at: float, reason: str) -> str:
        control_id = hl7v2.raw_control_id(text)
        self._reject(find_probe_id_text(text) or control_id, received_at)
        return hl7v2.ack_for_garbage(control_id, reason)

    def _reject(self, probe_id: str, received_at: float) -> None:
        self._truth.write(TruthRecord(probe_id, "", received_at, "rejected", engine="mllp"))

    async def _stall(self) -> None:
        window = self.outages.active("stall")
        if window is not None and not self._released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=window.stall)


def _probe_id(message: hl7.Message, text: str) -> str:
    """MSH-10 if it is shaped like a probe id, else the first such token, else MSH-10."""
    control_id = hl7v2.field_text(message, "MSH-10")
    if len(control_id) == 20 and find_probe_id_text(control_id) == control_id:
        return control_id
    return find_probe_id_text(text) or control_id
