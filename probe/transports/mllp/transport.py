"""HL7 v2 over MLLP: a source that sends a probe and reads its ACK, and an observer.

The source keeps one connection and does one exchange at a time, since MLLP has no way to
tell which ACK answers which message other than order. The observer waits on the listener
its address shares (`probe.transports.mllp.listener`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from probe.errors import CheckFailed, ConnectError, ProtocolError, TransportError
from probe.model import ProbeMessage, Receipt, Sighting
from probe.transports.base import Destination, Resources
from probe.transports.mllp import hl7v2
from probe.transports.mllp.accept import close_writer
from probe.transports.mllp.arrivals import Arrival
from probe.transports.mllp.framing import FrameReader, frame, read_frame
from probe.transports.mllp.listener import REPORTED_FIELDS, MllpListener
from probe.transports.mllp.raw import RawMessage
from probe.transports.mllp.spec import MllpClientTLS, MllpDestination, MllpSource

log = structlog.get_logger("probe.transports.mllp.transport")


@contextmanager
def map_mllp_errors(target: str) -> Iterator[None]:
    """Translate socket and TLS errors into our tree, in one place, naming the peer."""
    try:
        yield
    except ssl.SSLError as exc:  # before OSError: it is one
        raise ConnectError(f"TLS failure with {target}: {exc}", reason="tls") from exc
    except OSError as exc:  # refused, reset, unreachable, unknown host
        raise ConnectError(f"cannot talk to {target}: {exc or type(exc).__name__}") from exc
    except TransportError as exc:  # from `read_frame`, which does not know the peer
        raise type(exc)(f"{target}: {exc}", reason=exc.reason) from exc


def client_context(tls: MllpClientTLS) -> ssl.SSLContext:
    """The client side of MLLP over TLS: the server is verified unless ``verify: false``."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: FrameReader = field(default_factory=FrameReader)
    queue: list[bytes] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        """Closed or broken while idle, or holding bytes nobody asked for."""
        reader = self.reader
        return (
            reader.at_eof()
            or reader.exception() is not None
            or self.writer.is_closing()
            or bool(self.queue)
            or self.frames.partial
        )


class MllpProbeSource:
    """``source: {type: mllp, ...}``: one message per probe; MSA-1 and MSA-2 decide.

    AA/CA for MSH-10 is a `Receipt` that reports PID-5 as sent; AE/AR/CE/CR is
    `CheckFailed` with reason ``ack_ae`` etc.; an ACK for another message is
    ``ack_mismatch``; a reply without MSA is a `ProtocolError`.
    """

    def __init__(self, config: MllpSource, resources: Resources) -> None:
        self.config = config
        self.target = f"{config.host}:{config.port}"
        self._header = hl7v2.Header(**config.msh.model_dump())
        self._template: Template | None = None
        self._tls: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()
        self._conn: _Connection | None = None

    async def send(self, probe: ProbeMessage) -> Receipt:
        text, reported = self._build(probe)
        try:
            payload = frame(text.encode(self.config.encoding))
        except UnicodeEncodeError as exc:
            message = f"the message cannot be encoded as {self.config.encoding}: {exc.reason}"
            raise TransportError(message, reason="encoding") from None
        async with self._lock:
            reply = await self._exchange(payload)
            try:
                return self._classify(reply, probe.probe_id, reported=reported)
            except (ProtocolError, CheckFailed) as exc:
                if exc.reason in ("protocol", "ack_mismatch"):
                    self._drop()  # out of step with the peer: start the next probe afresh
                raise

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_writer(conn.writer)

    def _build(self, probe: ProbeMessage) -> tuple[str, dict[str, str]]:
        """The message text, and the `REPORTED_FIELDS` as sent."""
        cfg = self.config
        try:
            if self._template is None:  # a template_file is read and parsed once
                self._template = Template(
                    cfg.template,
                    id_field=cfg.probe_field,
                    header=self._header,
                    patient_id=cfg.patient.id,
                    patient_name=cfg.patient.name,
                    encoding=cfg.encoding,
                )
            return self._template.fill(probe.probe_id, probe.sent_at)
        except Exception as exc:  # the file, or anything the hl7 package makes of it
            message = f"cannot build the message from the template: {exc}"
            raise TransportError(message, reason="template") from exc

    async def _exchange(self, payload: bytes) -> str:
        conn = await self._connect()
        try:
            with map_mllp_errors(self.target):
                conn.writer.write(payload)
                await conn.writer.drain()
                reply = await read_frame(conn.reader, conn.frames, conn.queue)
        except BaseException:
            # Cancelled by the runner's timeout, or broken after the message may have gone
            # out: a late ACK here would be read as the next probe's reply. No resend, as
            # the peer may have taken it.
            self._drop()
            raise
        return reply.decode(self.config.encoding, errors="replace")

    async def _connect(self) -> _Connection:
        if self._conn is not None and not self._conn.stale:
            return self._conn
        self._drop()  # nothing of this probe went out on it, so a new connection is safe
        context = self._context()
        with map_mllp_errors(self.target):
            reader, writer = await asyncio.open_connection(
                self.config.host, self.config.port, ssl=context
            )
        self._conn = _Connection(reader, writer)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Synchronous, so it also works while a cancellation is being delivered.
            conn.writer.transport.abort()

    def _context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls.enabled and self._tls is None:
            try:
                self._tls = client_context(tls)
            except (OSError, ValueError) as exc:
                message = f"cannot set up TLS for {self.target}: {exc}"
                raise ConnectError(message, reason="tls") from exc
        return self._tls

    def _classify(self, reply: str, probe_id: str, *, reported: dict[str, str]) -> Receipt:
        ack = read_ack(reply)
        code = ack.code
        if code in hl7v2.ACK_CODES_ERROR:
            text = ack.text or "no error text"
            raise CheckFailed(f"ACK {code}: {text}", reason=f"ack_{code.lower()}")
        if ack.control_id != probe_id:
            message = f"ACK {code} is for {ack.control_id!r}, not for {probe_id}"
            raise CheckFailed(message, reason="ack_mismatch")
        if code not in hl7v2.ACK_CODES_OK:
            raise ProtocolError(f"ACK with unknown MSA-1 {code!r} from {self.target}")
        return Receipt(detail=f"ACK {code}", fields={k: v for k, v in reported.items() if v})


# Stand-ins for each probe's own values; two sets, to check where each one lands.
_STAND_INS = (
    ("PRFFFFFFFFFFFFFFFFFF", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("PREEEEEEEEEEEEEEEEEE", datetime(9998, 11, 30, 22, 58, 58, tzinfo=UTC)),
)


def _stamp(sent_at: datetime) -> str:
    return sent_at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


class Template:
    """`hl7v2.build` for one source, parsed once: each probe's id and time go into the text.

    The message is built with two different sets of stand-ins, and the text way is used only
    if putting the second set into the first message gives exactly the second message (so
    it gives what `build` gives for any probe); otherwise every probe is built by `build`.
    A template with the time in several fields (MSH-7 and EVN-2) is filled as text too:
    the `hl7v2.Builder` this replaces fell back to `build` for it, for every probe.
    """

    def __init__(self, template: str, **args: Any) -> None:
        self.args: dict[str, Any] = {"template": template, **args}
        (id_a, at_a), (id_b, at_b) = _STAND_INS
        first = hl7v2.build(probe_id=id_a, sent_at=at_a, **self.args)
        second = hl7v2.build(probe_id=id_b, sent_at=at_b, **self.args)
        same = first.replace(id_a, id_b).replace(_stamp(at_a), _stamp(at_b)) == second
        fits = same and id_b not in first and _stamp(at_b) not in first
        self.skeleton = first if fits else None
        self._stand_in = _stamp(at_a)
        parsed = hl7v2.parse(first)
        self.reported = {name: hl7v2.field_text(parsed, name) for name in REPORTED_FIELDS}

    def fill(self, probe_id: str, sent_at: datetime) -> tuple[str, dict[str, str]]:
        """The message for one probe, and its `REPORTED_FIELDS`."""
        if self.skeleton is None:
            text = hl7v2.build(probe_id=probe_id, sent_at=sent_at, **self.args)
            parsed = hl7v2.parse(text)
            return text, {name: hl7v2.field_text(parsed, name) for name in REPORTED_FIELDS}
        id_a, stand_in = _STAND_INS[0][0], self._stand_in
        stamp = _stamp(sent_at)
        reported = {
            name: value.replace(id_a, probe_id).replace(stand_in, stamp)
            for name, value in self.reported.items()
        }
        return self.skeleton.replace(id_a, probe_id).replace(stand_in, stamp), reported


def read_ack(text: str) -> hl7v2.AckResult:
    """`hl7v2.read_ack`, by splitting when the reply has the standard separators and its
    error text (if any) is in MSA-3; anything else goes through `hl7v2.read_ack`."""
    raw = RawMessage.of(text)
    if raw is not None and raw.has("MSA"):
        error = raw.field("MSA-3")
        if error or not raw.has("ERR"):
            return hl7v2.AckResult(raw.field("MSA-1"), raw.field("MSA-2"), error)
    return hl7v2.read_ack(text)


class MllpObserver:
    """``destinations: [{type: mllp, ...}]``: waits for the probe on a shared listener.

    After the first copy, copies are counted for ``duplicate_window`` more (within the
    deadline). Fields in ``compare`` (default: those the source reported) are checked
    against the first copy; a reported field outside what listeners record is not checked.
    """

    def __init__(self, config: MllpDestination, resources: Resources) -> None:
        self.config = config

        def make() -> MllpListener:
            return MllpListener.from_config(config)

        self.listener = resources.shared(("mllp", config.listen), make)
        if (self.listener.encoding, self.listener.tls) != (config.encoding, config.tls):
            log.warning(
                "mllp_listener_shared",
                listen=config.listen,
                destination=config.name,
                detail="encoding and tls are taken from the first destination on this address",
            )
        compared = config.compare if config.compare is not None else REPORTED_FIELDS
        self._interest = self.listener.register(config.match, compared, destination=config.name)
        self.start_error: str | None = None

    @classmethod
    def for_destination(cls, spec: Destination, resources: Resources) -> MllpObserver:
        """The observer of a resolved ``destinations:`` entry (the registry's factory)."""
        assert isinstance(spec.config, MllpDestination)
        return cls(spec.config, resources)

    async def start(self) -> None:
        """Listen. A port that cannot be bound is logged here, kept in `start_error` (a
        config reload refuses it) and reported by `expect`."""
        try:
            await self.listener.start()
        except ConnectError as exc:
            self.start_error = str(exc)
            log.error("mllp_listen_failed", destination=self.config.name, error=str(exc))

    # The listener records each arrival itself, before its ACK (see `set_recorder`).
    records_sightings = True

    def set_recorder(self, record: Callable[[Sighting], None]) -> None:
        """Record every arrival for this destination with ``record`` (the store)."""
        self.listener.set_recorder(self._interest, record)

    async def aclose(self) -> None:
        """The listener is shared and closed by its owner."""
        self.listener.unregister(self._interest)

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None:
        listener, match = self.listener, self.config.match
        if not listener.running:
            await listener.start()  # try again: the port may be free now
        first = await listener.first(probe.probe_id, match=match, deadline=deadline)
        if first is None:
            if not listener.running:
                message = f"the MLLP listener on {self.config.listen} stopped"
                raise ConnectError(message, reason="listen")
            return None
        window_end = min(first.seen_mono + self.config.duplicate_window, deadline)
        delay = window_end - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # a fixed window, not polling: copies are counted after
        return Sighting(
            probe_id=probe.probe_id,
            destination=self.config.name,
            seen_at=first.seen_at,
            seen_mono=first.seen_mono,
            count=len(listener.copies(probe.probe_id, match=match)),
            mismatched=self._mismatched(probe, first),
        )

    def _mismatched(self, probe: ProbeMessage, first: Arrival) -> tuple[str, ...]:
        expected = probe.expected
        names = self.config.compare if self.config.compare is not None else list(expected)
        return tuple(
            name
            for name in names
            if name in expected and name in first.fields and first.fields[name] != expected[name]
        )
