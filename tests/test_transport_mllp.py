"""The MLLP transport on real loopback sockets: interoperability, framing, ACKs, listener.

hl7apy is an independent HL7 v2 implementation: what our source sends must parse there,
and ACKs it builds must be read correctly by our source.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from hl7apy.core import Message  # type: ignore[import-untyped]
from hl7apy.parser import parse_message  # type: ignore[import-untyped]
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from probe.config.models import DestinationSpec
from probe.errors import CheckFailed, ConnectError, ProtocolError
from probe.model import ProbeMessage, Sighting, new_probe_id
from probe.transports import Resources, make_observer, make_source
from probe.transports.mllp import arrivals as mllp_arrivals
from probe.transports.mllp import hl7v2
from probe.transports.mllp import raw as mllp_raw
from probe.transports.mllp.accept import close_writer
from probe.transports.mllp.framing import END, START, FrameReader, frame
from probe.transports.mllp.listener import MllpListener
from probe.transports.mllp.spec import MllpDestination, MllpSource
from probe.transports.mllp.transport import MllpObserver, MllpProbeSource, Template, read_ack
from tests.helpers import closed_port, wait_for

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
NAME = "Testperson^Ææ Øø Åå"
LIMIT = 10.0  # no single step of a test may hang longer than this

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
async def _no_loop_errors() -> AsyncIterator[None]:
    """Errors asyncio would only log (a failed callback, a task exception never read) fail."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield
    loop.set_exception_handler(None)
    assert not errors, [context.get("message") for context in errors]


def _probe(probe_id: str | None = None, **expected: str) -> ProbeMessage:
    return ProbeMessage(
        probe_id=probe_id or new_probe_id(),
        flow="gs-adt",
        slot=NOW,
        sent_at=datetime.now(UTC),
        expected=expected,
    )


def _source(port: int, **options: Any) -> MllpProbeSource:
    config = MllpSource.model_validate(
        {"type": "mllp", "host": "127.0.0.1", "port": port, "patient": {"name": NAME}, **options}
    )
    return MllpProbeSource(config, Resources())


def _destination(name: str = "labka", **options: Any) -> MllpDestination:
    return MllpDestination.model_validate(
        {"name": name, "type": "mllp", "listen": "127.0.0.1:0", **options}
    )


def _message(probe_id: str, *, name: str = NAME, kind: str = "ADT^A08") -> bytes:
    """A minimal HL7 message, framed, in utf-8."""
    text = (
        f"MSH|^~\\&|GS|RH|LABKA|RH|20261126100000||{kind}|{probe_id}|P|2.5\r"
        f"PID|1||6504611234^^^CPR~{probe_id}^^^PROBE||{name}\r"
    )
    return frame(text.encode())


def _hl7apy_ack(code: str, control_id: str, *, text: str = "", err: str = "") -> bytes:
    """An ACK built by hl7apy, framed."""
    ack = Message("ACK", version="2.5")
    ack.msh.msh_3 = "LABKA"
    ack.msh.msh_9 = "ACK^A08^ACK"
    ack.msh.msh_10 = "A1"
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    if text:
        ack.msa.msa_3 = text
    if err:
        ack.add_segment("ERR")
        ack.err.err_3 = "207^Application internal error^HL70357"
        ack.err.err_4 = "E"
        ack.err.err_8 = err
    return bytes(ack.to_mllp(), "utf-8")


class Peer:
    """A tiny MLLP server that hands every frame it receives to an ``answer`` function."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.connections = 0
        self.closed = asyncio.Event()  # a client connection ended
        self.port = 0
        self._tasks: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = writer
        self.connections += 1
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                for payload in frames.feed(data):
                    self.received.append(payload)
                    await self.answer(payload, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            del self._tasks[task]
            await close_writer(writer)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for writer in self._tasks.values():
            writer.transport.abort()  # not cancel(): Python 3.11 logs a cancelled handler
        if tasks:
            await asyncio.wait(tasks, timeout=LIMIT)


@asynccontextmanager
async def peer(answer: Answer, *, context: ssl.SSLContext | None = None) -> AsyncIterator[Peer]:
    server_peer = Peer(answer)
    server = await asyncio.start_server(server_peer.serve, "127.0.0.1", 0, ssl=context)
    server_peer.port = server.sockets[0].getsockname()[1]
    try:
        yield server_peer
    finally:
        server.close()
        await server_peer.stop()
        await server.wait_closed()


def acking(code: str = "AA", **options: str) -> Answer:
    """An answer that ACKs with hl7apy, for the received MSH-10."""

    async def answer(payload: bytes, writer: asyncio.StreamWriter) -> None:
        control_id = hl7v2.raw_control_id(payload.decode("latin-1"))
        writer.write(_hl7apy_ack(code, control_id, **options))
        await writer.drain()

    return answer


@asynccontextmanager
async def listening(*configs: MllpDestination) -> AsyncIterator[list[MllpObserver]]:
    """Observers for ``configs`` on shared listeners, started; everything closed after."""
    resources = Resources()
    observers = [MllpObserver(config, resources) for config in configs]
    try:
        for observer in observers:
            await observer.start()
        yield observers
    finally:
        for observer in observers:
            await observer.aclose()
        await resources.aclose()


@asynccontextmanager
async def client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        await close_writer(writer)


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[hl7v2.AckResult]:
    """The next ``count`` reply frames, read as ACKs."""
    frames, found = FrameReader(), list[hl7v2.AckResult]()
    async with asyncio.timeout(LIMIT):
        while len(found) < count:
            data = await reader.read(65536)
            assert data, "the listener closed the connection"
            found += [hl7v2.read_ack(p.decode()) for p in frames.feed(data)]
    assert len(found) == count, "more replies than messages"
    return found


async def nothing_comes(reader: asyncio.StreamReader, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await reader.read(1)


# --- interoperability with hl7apy -------------------------------------------------------


@pytest.mark.parametrize("template", ["adt_a08", "orm_o01"])
@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
async def test_sent_messages_parse_in_hl7apy_and_its_acks_are_accepted(
    template: str, encoding: str
) -> None:
    async with peer(acking("AA")) as server:
        source = _source(server.port, message=template, encoding=encoding)
        probe = _probe()
        try:
            receipt = await source.send(probe)
        finally:
            await source.aclose()
    assert receipt.detail == "ACK AA"
    assert receipt.fields == {"PID-5": NAME}
    parsed = parse_message(server.received[0].decode(encoding), find_groups=False)
    assert parsed.msh.msh_10.to_er7() == probe.probe_id
    assert parsed.pid.pid_5.to_er7() == NAME
    if template == "adt_a08":
        ids = [rep.to_er7() for rep in parsed.pid.pid_3]
        assert ids == ["6504611234^^^CPR", f"{probe.probe_id}^^^PROBE"]
    else:
        assert parsed.orc.orc_2.to_er7() == probe.probe_id


@pytest.mark.parametrize(
    ("code", "options", "reason", "text"),
    [
        pytest.param("AE", {"text": "Patient unknown"}, "ack_ae", "Patient unknown", id="AE-msa3"),
        pytest.param("AR", {"text": "Route closed"}, "ack_ar", "Route closed", id="AR-msa3"),
        pytest.param("CE", {"err": "Patient Åse unknown"}, "ack_ce", "Åse", id="CE-err"),
        pytest.param("CR", {"err": "Rejected"}, "ack_cr", "Rejected", id="CR-err"),
    ],
)
async def test_hl7apy_error_acks_are_send_errors(
    code: str, options: dict[str, str], reason: str, text: str
) -> None:
    async with peer(acking(code, **options)) as server:
        source = _source(server.port)
        try:
            with pytest.raises(CheckFailed) as caught:
                await source.send(_probe())
        finally:
            await source.aclose()
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"ACK {code}: ")
    assert text in str(caught.value)


async def test_hl7apy_messages_get_an_ack_that_hl7apy_reads() -> None:
    probe_id = new_probe_id()
    message = Message("ADT_A01", version="2.5")
    message.msh.msh_3 = "GS"
    message.msh.msh_9 = "ADT^A08^ADT_A01"
    message.msh.msh_10 = probe_id
    message.msh.msh_11 = "P"
    message.pid.pid_3 = "6504611234^^^CPR"
    message.pid.pid_5 = NAME
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(bytes(message.to_mllp(), "utf-8"))
        payload = await _one_frame(reader)
    ack = parse_message(payload.decode(), find_groups=False)
    assert ack.msa.msa_1.to_er7() == "AA"
    assert ack.msa.msa_2.to_er7() == probe_id
    assert ack.msh.msh_9.to_er7().startswith("ACK")


async def _one_frame(reader: asyncio.StreamReader) -> bytes:
    frames: list[bytes] = []
    reassembly = FrameReader()
    async with asyncio.timeout(LIMIT):
        while not frames:
            data = await reader.read(65536)
            assert data
            frames = reassembly.feed(data)
    return frames[0]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
async def test_aeoeaa_arrive_intact(encoding: str) -> None:
    async with listening(_destination(encoding=encoding)) as (observer,):
        source = _source(observer.listener.port, encoding=encoding)
        probe = _probe()
        try:
            receipt = await source.send(probe)
        finally:
            await source.aclose()
        probe = ProbeMessage(probe.probe_id, probe.flow, probe.slot, probe.sent_at, receipt.fields)
        sighting = await observer.expect(probe, time.monotonic() + LIMIT)
    assert sighting is not None
    assert sighting.mismatched == ()
    assert receipt.fields["PID-5"] == NAME


@pytest.mark.parametrize(("sent", "read"), [("latin-1", "utf-8"), ("utf-8", "latin-1")])
async def test_a_peer_reading_the_wrong_charset_shows_as_a_mismatch(sent: str, read: str) -> None:
    async with listening(_destination(encoding=read, duplicate_window="10ms")) as (observer,):
        source = _source(observer.listener.port, encoding=sent)
        try:
            receipt = await source.send(probe := _probe())
        finally:
            await source.aclose()
        expected = _probe(probe.probe_id, **receipt.fields)
        sighting = await observer.expect(expected, time.monotonic() + LIMIT)
    assert sighting is not None
    assert sighting.mismatched == ("PID-5",)


# --- framing ----------------------------------------------------------------------------


async def test_a_frame_split_byte_by_byte_is_acked() -> None:
    probe_id = new_probe_id()
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        for byte in _message(probe_id):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.0005)  # so the listener really reads in small pieces
        (ack,) = await read_replies(reader, 1)
    assert (ack.code, ack.control_id) == ("AA", probe_id)


async def test_three_frames_in_one_write_get_three_acks_in_order() -> None:
    ids = [new_probe_id() for _ in range(3)]
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(b"".join(_message(probe_id) for probe_id in ids))
        acks = await read_replies(reader, 3)
    assert [(a.code, a.control_id) for a in acks] == [("AA", i) for i in ids]


async def test_a_one_megabyte_message_is_acked_and_seen() -> None:
    probe_id = new_probe_id()
    big = _message(probe_id)[:-2] + b"NTE|1||" + b"x" * 1_000_000 + b"\r" + END
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(big)
        (ack,) = await read_replies(reader, 1)
        sighting = await observer.expect(_probe(probe_id), time.monotonic() + LIMIT)
    assert (ack.code, ack.control_id) == ("AA", probe_id)
    assert sighting is not None


async def test_a_message_without_start_byte_is_junk_and_the_next_is_acked() -> None:
    lost, good = new_probe_id(), new_probe_id()
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(_message(lost)[1:])
        await writer.drain()
        await nothing_comes(reader)
        writer.write(_message(good))
        (ack,) = await read_replies(reader, 1)
        stats = observer.listener.stats
    assert (ack.code, ack.control_id) == ("AA", good)
    assert stats.junk_bytes == len(_message(lost)) - 1
    assert stats.acks_sent == 1


async def test_junk_between_frames_is_counted_and_skipped() -> None:
    first, second = new_probe_id(), new_probe_id()
    junk = b"\r\nGET / HTTP/1.1\r\n\x1c\r"
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(_message(first) + junk + _message(second))
        acks = await read_replies(reader, 2)
    assert [a.control_id for a in acks] == [first, second]
    assert observer.listener.stats.junk_bytes == len(junk)


async def test_a_client_closing_mid_frame_does_not_stop_the_listener() -> None:
    probe_id = new_probe_id()
    async with listening(_destination()) as (observer,):
        listener = observer.listener
        async with client(listener.port) as (_, writer):
            writer.write(_message(new_probe_id())[:40])
            await writer.drain()
        async with client(listener.port) as (reader, writer):
            writer.write(_message(probe_id))
            (ack,) = await read_replies(reader, 1)
            assert listener.stats.broken_frames == 1
    assert (ack.code, ack.control_id) == ("AA", probe_id)


async def test_a_peer_closing_mid_ack_is_a_protocol_error() -> None:
    async def half_ack(payload: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(_hl7apy_ack("AA", hl7v2.raw_control_id(payload.decode()))[:20])
        await writer.drain()
        writer.close()

    async with peer(half_ack) as server:
        source = _source(server.port)
        try:
            with pytest.raises(ProtocolError) as caught:
                await source.send(_probe())
        finally:
            await source.aclose()
    assert caught.value.reason == "protocol"


async def test_a_peer_that_never_answers_is_cut_off_and_the_next_send_works() -> None:
    mode = {"answer": False}

    async def sometimes(payload: bytes, writer: asyncio.StreamWriter) -> None:
        if mode["answer"]:
            await acking("AA")(payload, writer)

    async with peer(sometimes) as server:
        source = _source(server.port)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await source.send(_probe())
            # The cut-off connection is closed, so a late ACK cannot be taken for the next one.
            async with asyncio.timeout(LIMIT):
                await server.closed.wait()
            mode["answer"] = True
            receipt = await asyncio.wait_for(source.send(_probe()), LIMIT)
        finally:
            await source.aclose()
    assert receipt.detail == "ACK AA"
    assert server.connections == 2


async def test_a_connection_closed_by_the_peer_while_idle_is_replaced() -> None:
    async def ack_and_hang_up(payload: bytes, writer: asyncio.StreamWriter) -> None:
        await acking("AA")(payload, writer)
        writer.close()

    async with peer(ack_and_hang_up) as server:
        source = _source(server.port)
        try:
            await source.send(_probe())
            async with asyncio.timeout(LIMIT):
                await server.closed.wait()
            # The close reached the source's side: the idle connection reads as closed.
            await wait_for(lambda: source._conn is None or source._conn.stale, limit=LIMIT)
            receipt = await source.send(_probe())
        finally:
            await source.aclose()
    assert receipt.detail == "ACK AA"
    assert server.connections == 2


async def test_one_connection_carries_many_probes() -> None:
    async with peer(acking("AA")) as server:
        source = _source(server.port)
        try:
            for _ in range(5):
                await source.send(_probe())
        finally:
            await source.aclose()
    assert (server.connections, len(server.received)) == (1, 5)


# --- property: arbitrary bytes never break the listener -------------------------------


# Arbitrary bytes, and pieces that make frames and near-HL7 likely rather than rare.
_CHUNKS = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([START, END, b"\x1c", b"\r", b"MSH|^~\\&|", b"|ACK|", b"\rMSA|AA|"]),
    st.builds(lambda body: START + body + END, st.binary(max_size=100)),
)


def test_arbitrary_bytes_never_stop_the_listener() -> None:
    with asyncio.Runner() as runner:
        errors: list[dict[str, Any]] = []
        runner.get_loop().set_exception_handler(lambda _, context: errors.append(context))
        resources = Resources()
        observer = MllpObserver(_destination(), resources)
        runner.run(observer.start())
        port = observer.listener.port

        @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(chunks=st.lists(_CHUNKS, max_size=8))
        @example(chunks=[START, b"MSH|^~\\&|", END])  # parses, but cannot be acknowledged
        @example(chunks=[START, b"MSH|^~\\&|", b"|ACK|", b"\rMSA|AA|", END])
        @example(chunks=[START + b"MSH|" + b"x" * 300])  # left open, then a new START
        def check(chunks: list[bytes]) -> None:
            runner.run(_garbage_then_valid(port, chunks))

        try:
            with capture_logs() as logs:
                check()
            assert observer.listener.running
        finally:
            runner.run(resources.aclose())
        assert not errors, [context.get("message") for context in errors]
    assert not [e for e in logs if e["log_level"] == "error"]  # no message hit the safety net


async def _garbage_then_valid(port: int, chunks: list[bytes]) -> None:
    async with client(port) as (reader, writer):
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.001)  # so the listener reads (and reacts to) each piece
        # A fresh START ends whatever frame the garbage left open.
        probe_id = new_probe_id()
        writer.write(START + _message(probe_id))
        await _ack_for(reader, probe_id)
    probe_id = new_probe_id()
    async with client(port) as (reader, writer):
        writer.write(_message(probe_id))
        await _ack_for(reader, probe_id)


async def _ack_for(reader: asyncio.StreamReader, probe_id: str) -> None:
    """Read replies (the garbage may have earned some) until the AA for ``probe_id``."""
    frames = FrameReader()
    async with asyncio.timeout(LIMIT):
        while True:
            data = await reader.read(65536)
            assert data, "the listener closed the connection"
            for payload in frames.feed(data):
                ack = hl7v2.read_ack(payload.decode("utf-8", errors="replace"))
                if ack.control_id == probe_id:
                    assert ack.code == "AA"
                    return


# --- source: how ACKs and failures are classified ---------------------------------------


def _raw_answer(template: str) -> Answer:
    async def answer(payload: bytes, writer: asyncio.StreamWriter) -> None:
        control_id = hl7v2.raw_control_id(payload.decode())
        writer.write(frame(template.format(id=control_id).encode()))
        await writer.drain()

    return answer


_MSH = "MSH|^~\\&|LABKA|RH|||20261126100000||ACK|A1|P|2.3\r"


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        pytest.param(
            _MSH + "MSA|AA|PR00000000000000000X\r", CheckFailed, "ack_mismatch", id="msa2"
        ),
        pytest.param(_MSH + "MSA|AA|\r", CheckFailed, "ack_mismatch", id="msa2-empty"),
        pytest.param(_MSH + "MSA|AE|{id}\rERR|Unknown ward\r", CheckFailed, "ack_ae", id="err1"),
        pytest.param(_MSH + "MSA|XX|{id}\r", ProtocolError, "protocol", id="unknown-code"),
        pytest.param(_MSH, ProtocolError, "protocol", id="no-msa"),
        pytest.param("HTTP/1.1 400 Bad Request\r\n", ProtocolError, "protocol", id="not-hl7"),
    ],
)
async def test_bad_replies_are_classified(reply: str, error: type[Exception], reason: str) -> None:
    async with peer(_raw_answer(reply)) as server:
        source = _source(server.port)
        try:
            with pytest.raises(error) as caught:
                await source.send(_probe())
        finally:
            await source.aclose()
    assert getattr(caught.value, "reason", None) == reason


async def test_err_text_reaches_the_error_message() -> None:
    async with peer(_raw_answer(_MSH + "MSA|AE|{id}\rERR|Unknown ward\r")) as server:
        source = _source(server.port)
        try:
            with pytest.raises(CheckFailed, match="ACK AE: Unknown ward"):
                await source.send(_probe())
        finally:
            await source.aclose()


async def test_a_mismatched_ack_drops_the_connection() -> None:
    replies = iter([_MSH + "MSA|AA|PR00000000000000000X\r", _MSH + "MSA|AA|{id}\r"])

    async def answer(payload: bytes, writer: asyncio.StreamWriter) -> None:
        await _raw_answer(next(replies))(payload, writer)

    async with peer(answer) as server:
        source = _source(server.port)
        try:
            with pytest.raises(CheckFailed):
                await source.send(_probe())
            receipt = await source.send(_probe())
        finally:
            await source.aclose()
    assert receipt.detail == "ACK AA"
    assert server.connections == 2


async def test_a_refused_port_is_a_connect_error() -> None:
    source = _source(closed_port())
    try:
        with pytest.raises(ConnectError) as caught:
            await source.send(_probe())
    finally:
        await source.aclose()
    assert caught.value.reason == "connect"


async def test_registry_builds_mllp_transports() -> None:
    resources = Resources()
    config = _destination()
    spec = DestinationSpec(
        name="labka", config=config, poll=1.0, slo_latency=30.0, slo_objective=0.995
    )
    source_config = MllpSource(type="mllp", host="127.0.0.1", port=2575)
    try:
        assert isinstance(make_source(source_config, resources), MllpProbeSource)
        observer = make_observer(spec, resources)
        assert isinstance(observer, MllpObserver)
        assert observer is not make_observer(spec, resources)
        assert observer.listener is make_observer(spec, resources).listener  # type: ignore[attr-defined]
    finally:
        await resources.aclose()


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    files = {
        "ca": tmp_path / "ca.pem",
        "server": tmp_path / "server.pem",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    ca.issue_cert("gs.example").private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return {name: str(path) for name, path in files.items()}


async def test_mllp_over_tls_is_verified(tls_files: dict[str, str]) -> None:
    server_tls = {"enabled": True, "cert_file": tls_files["server"]}
    async with listening(_destination(tls=server_tls)) as (observer,):
        port = observer.listener.port
        trusting = _source(port, tls={"enabled": True, "ca_file": tls_files["ca"]})
        default = _source(port, tls={"enabled": True})
        try:
            receipt = await trusting.send(probe := _probe())
            with pytest.raises(ConnectError) as caught:
                await default.send(_probe())
            sighting = await observer.expect(probe, time.monotonic() + LIMIT)
        finally:
            await trusting.aclose()
            await default.aclose()
    assert receipt.detail == "ACK AA"
    assert sighting is not None
    assert caught.value.reason == "tls"


async def test_a_listener_can_require_client_certificates(tls_files: dict[str, str]) -> None:
    server_tls = {"enabled": True, "cert_file": tls_files["server"], "ca_file": tls_files["ca"]}
    client_tls = {"enabled": True, "ca_file": tls_files["ca"]}
    async with listening(_destination(tls=server_tls)) as (observer,):
        port = observer.listener.port
        with_cert = _source(port, tls={**client_tls, "cert_file": tls_files["client"]})
        without = _source(port, tls=client_tls)
        try:
            receipt = await with_cert.send(_probe())
            with pytest.raises(ConnectError):
                await asyncio.wait_for(without.send(_probe()), LIMIT)
        finally:
            await with_cert.aclose()
            await without.aclose()
    assert receipt.detail == "ACK AA"


# --- observer ---------------------------------------------------------------------------


async def test_an_ack_is_never_acked() -> None:
    probe_id = new_probe_id()
    ack = _MSH + f"MSA|AA|{probe_id}\r"
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(frame(ack.encode()))
        await writer.drain()
        await nothing_comes(reader)
        writer.write(_message(probe_id))
        (reply,) = await read_replies(reader, 1)
        stats = observer.listener.stats
    assert (reply.code, reply.control_id) == ("AA", probe_id)
    assert (stats.acks_ignored, stats.acks_sent) == (1, 1)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"hello", id="not-hl7"),
        pytest.param(b"", id="empty"),
        pytest.param(b"MSH|^~\\&|||||||||PR1234\rPID", id="empty-msh9"),
        pytest.param(b"MSH|", id="short"),
    ],
)
async def test_unparsable_messages_get_an_ae_and_the_listener_keeps_serving(
    garbage: bytes,
) -> None:
    probe_id = new_probe_id()
    async with listening(_destination()) as (observer,), client(observer.listener.port) as conn:
        reader, writer = conn
        writer.write(frame(garbage) + _message(probe_id))
        refused, accepted = await read_replies(reader, 2)
    assert refused.code == "AE"
    assert (accepted.code, accepted.control_id) == ("AA", probe_id)
    assert observer.listener.stats.unparsable == 1


async def test_duplicates_within_the_window_are_counted() -> None:
    probe_id = new_probe_id()
    async with (
        listening(_destination(duplicate_window="1s")) as (observer,),
        client(observer.listener.port) as (reader, writer),
    ):
        writer.write(_message(probe_id))
        await read_replies(reader, 1)
        expecting = asyncio.create_task(observer.expect(_probe(probe_id), time.monotonic() + LIMIT))
        writer.write(_message(probe_id) * 2)
        await read_replies(reader, 2)
        sighting = await expecting
    assert sighting is not None
    assert sighting.count == 3


async def test_an_arrival_before_expect_is_found_with_its_own_time() -> None:
    probe_id = new_probe_id()
    async with listening(_destination(duplicate_window="10ms")) as (observer,):
        async with client(observer.listener.port) as (reader, writer):
            before = time.monotonic()
            writer.write(_message(probe_id))
            await read_replies(reader, 1)
            acked = time.monotonic()
        await asyncio.sleep(0.2)  # the arrival is old when `expect` starts: the time under test
        sighting = await observer.expect(_probe(probe_id), time.monotonic() + LIMIT)
    assert sighting is not None
    # Stamped when the frame was read: between our write and the ACK coming back.
    assert before <= sighting.seen_mono <= acked
    assert sighting.count == 1


async def test_two_flows_share_one_listener_and_each_gets_its_own_probe() -> None:
    by_msh = _destination("labka", match="MSH-10", duplicate_window="10ms")
    by_pid = _destination("epm3", match="PID-3", duplicate_window="10ms")
    one, two = new_probe_id(), new_probe_id()
    rewritten = _message(two).replace(two.encode(), b"ENGINE0001", 1)  # MSH-10 rewritten
    async with listening(by_msh, by_pid) as (first, second):
        assert first.listener is second.listener
        async with client(first.listener.port) as (reader, writer):
            writer.write(_message(one) + rewritten)
            await read_replies(reader, 2)
        deadline = time.monotonic() + 0.3
        seen = await asyncio.gather(
            first.expect(_probe(one), deadline),
            first.expect(_probe(two), deadline),  # its MSH-10 lost the id
            second.expect(_probe(one), deadline),
            second.expect(_probe(two), deadline),
        )
    assert [s is not None for s in seen] == [True, False, True, True]
    assert [s.destination for s in seen if s is not None] == ["labka", "epm3", "epm3"]


async def test_expect_returns_none_at_the_deadline_without_polling() -> None:
    async with listening(_destination()) as (observer,):
        start, cpu = time.monotonic(), time.process_time()
        sighting = await asyncio.wait_for(observer.expect(_probe(), start + 0.5), LIMIT)
        elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    assert sighting is None
    assert 0.49 <= elapsed < 5
    assert cpu < 0.2  # waiting is a future, not a loop


async def test_expect_past_the_deadline_still_looks_once() -> None:
    probe_id = new_probe_id()
    async with listening(_destination(duplicate_window="10ms")) as (observer,):
        async with client(observer.listener.port) as (reader, writer):
            writer.write(_message(probe_id))
            await read_replies(reader, 1)
        assert await observer.expect(_probe(probe_id), time.monotonic() - 1) is not None
        assert await observer.expect(_probe(), time.monotonic() - 1) is None


async def test_a_listener_that_cannot_bind_is_an_observe_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with listening(_destination(listen=f"127.0.0.1:{port}")) as (observer,):
            assert not observer.listener.running
            with pytest.raises(ConnectError) as caught:
                await observer.expect(_probe(), time.monotonic() + 1)
    assert caught.value.reason == "listen"


async def test_closing_the_listener_ends_waiting_with_an_error() -> None:
    resources = Resources()
    observer = MllpObserver(_destination(), resources)
    await observer.start()
    waiting = asyncio.create_task(observer.expect(_probe(), time.monotonic() + LIMIT))
    await asyncio.sleep(0)  # one turn of the loop: `expect` runs until it waits for arrivals
    assert not waiting.done()
    await resources.aclose()
    with pytest.raises(ConnectError):
        await asyncio.wait_for(waiting, LIMIT)


async def test_old_arrivals_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mllp_arrivals, "ARRIVAL_TTL", 0.0)
    monkeypatch.setattr(mllp_arrivals, "_PRUNE_EVERY", 0.0)
    old, new = new_probe_id(), new_probe_id()
    async with listening(_destination()) as (observer,):
        async with client(observer.listener.port) as (reader, writer):
            writer.write(_message(old))
            await read_replies(reader, 1)
            writer.write(_message(new))
            await read_replies(reader, 1)
        listener: MllpListener = observer.listener
        assert listener.copies(old, match="MSH-10") == []
        assert len(listener.copies(new, match="MSH-10")) == 1


# --- reading by splitting: the same answers as the hl7 package --------------------------

_READ_ALIKE = [
    pytest.param(_message("PR0123456789ABCDEF01").strip(b"\x0b\x1c\r").decode(), id="adt"),
    pytest.param(_MSH + "MSA|AA|PR0123456789ABCDEF01\r", id="ack"),
    pytest.param(_MSH + "MSA|AE|{id}|bad ward\rERR|x\r", id="ae-msa3"),
    pytest.param(
        _MSH + "MSA|AE|X\rERR|^^^207&Application error&HL70357||E|||||Unknown\r", id="ae-err8"
    ),
    pytest.param(_MSH + "MSA|AA\r", id="msa-short"),
    pytest.param(_MSH + "MSA\r", id="msa-bare"),
    pytest.param(_MSH + "MSA|CA|A1|\r\n", id="trailing-newline"),
    pytest.param(_MSH + "MSA|AA|A1  \r  ", id="trailing-blanks"),
    pytest.param("MSH|^~\\&|A|B\rPID|1||a~b^c&d^^\\F\\||N^M~O\rPID|2||second\r", id="rep-comp"),
    pytest.param("MSH|^~\\&|A\rZZZ\rMSA|AA|x", id="bare-segment"),
    pytest.param("MSH#^~\\&#A#B#C#D#T##ACK#X#P#2.5\rMSA#AA#X\r", id="other-separators"),
    pytest.param("MSH|^~\\&\rMSA|AA|x\r", id="msh-without-fields"),
]
_FIELDS = ["MSH-1", "MSH-2", "MSH-3", "MSH-9", "MSH-10", "MSH-12", "MSH-40", "PID-3", "PID-5",
           "PID-1", "MSA-1", "MSA-2", "MSA-3", "MSA-9", "ERR-1", "ZZZ-1", "ORC-2"]  # fmt: skip


@pytest.mark.parametrize("text", _READ_ALIKE)
def test_raw_fields_and_acks_read_as_the_hl7_package_reads_them(text: str) -> None:
    parsed = hl7v2.parse(text)
    raw = mllp_raw.RawMessage.of(text)
    if raw is None:  # other separators: these go through the hl7 package
        assert not text.startswith("MSH|^~\\&|")
    else:
        assert {name: raw.field(name) for name in _FIELDS} == {
            name: hl7v2.field_text(parsed, name) for name in _FIELDS
        }
        assert raw.is_reply() is mllp_raw.is_reply(parsed)
    try:
        expected: object = hl7v2.read_ack(text)
    except ProtocolError as exc:
        expected = str(exc)
    try:
        got: object = read_ack(text)
    except ProtocolError as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize("text", ["", "MSH", " MSH|^~\\&|A\rMSA|AA|x", "HTTP/1.1 200 OK\r\n"])
def test_text_that_is_not_plain_hl7_is_left_to_the_hl7_package(text: str) -> None:
    assert mllp_raw.RawMessage.of(text) is None


@pytest.mark.parametrize("message", ["adt_a08", "orm_o01"])
@pytest.mark.parametrize("probe_field", [None, "MSH-10", "PID-3", "PID-5", "ZZZ-2"])
@pytest.mark.parametrize(
    "patient_name",
    [NAME, "PRFFFFFFFFFFFFFFFFFF", "99991231235959+0000"],  # the last two: the stand-ins
    ids=["name", "id-stand-in", "time-stand-in"],
)
def test_the_template_fills_in_what_build_gives(
    message: str, probe_field: str | None, patient_name: str
) -> None:
    options: dict[str, Any] = {"message": message, "patient": {"name": patient_name}}
    if probe_field:
        options["id_field"] = probe_field
    config = MllpSource.model_validate({"type": "mllp", "host": "h", "port": 1, **options})
    args: dict[str, Any] = {
        "id_field": config.probe_field, "header": hl7v2.Header(**config.msh.model_dump()),
        "patient_id": config.patient.id, "patient_name": config.patient.name,
        "encoding": config.encoding,
    }  # fmt: skip
    template = Template(config.template, **args)
    if patient_name == NAME:  # the time is in MSH-7 and EVN-2 of adt_a08: filled in both
        assert template.skeleton is not None
    for probe_id, sent_at in [
        ("PR0123456789ABCDEF01", NOW),
        (new_probe_id(), datetime(2027, 3, 28, 1, 59, 59, 999999, tzinfo=UTC)),
    ]:
        text, reported = template.fill(probe_id, sent_at)
        built = hl7v2.build(config.template, probe_id=probe_id, sent_at=sent_at, **args)
        assert text == built
        parsed = hl7v2.parse(built)
        assert reported == {"PID-5": hl7v2.field_text(parsed, "PID-5")}


async def test_flows_sharing_a_destination_name_record_each_arrival_once() -> None:
    """Many flows on one listener: one sighting per destination name, by the first flow that
    records it; when that flow goes (a reload), the next one records."""
    listener = MllpListener("127.0.0.1:0")
    recorded: dict[str, list[tuple[str, str]]] = {"a": [], "b": [], "c": []}

    def recorder(flow: str) -> Callable[[Sighting], None]:
        return lambda s: recorded[flow].append((s.probe_id, s.destination))

    a = listener.register("PID-3", ["PID-5"], destination="labka")
    b = listener.register("PID-3", ["PID-5"], destination="labka")
    c = listener.register("MSH-10", [], destination="epm3")
    for flow, interest in (("a", a), ("b", b), ("c", c)):
        listener.set_recorder(interest, recorder(flow))
    await listener.start()
    try:
        one, two = new_probe_id(), new_probe_id()
        async with client(listener.port) as (reader, writer):
            writer.write(_message(one))
            await read_replies(reader, 1)
            listener.unregister(a)
            writer.write(_message(two))
            await read_replies(reader, 1)
        assert recorded == {
            "a": [(one, "labka")],
            "b": [(two, "labka")],
            "c": [(one, "epm3"), (two, "epm3")],
        }
        (copy,) = listener.copies(one, match="PID-3")
        assert copy.found_in == {"PID-3", "MSH-10"}
        assert copy.fields == {"PID-5": NAME}
    finally:
        await listener.aclose()


def _masked(ack: str) -> str:
    """An ACK with its MSH-7 (the time it was made) blanked."""
    msh, _, rest = ack.partition("\r")
    fields = msh.split("|")
    fields[6] = "T"
    return "|".join(fields) + "\r" + rest


@pytest.mark.parametrize(
    "text",
    [
        _message("PR0123456789ABCDEF01").strip(b"\x0b\x1c\r").decode(),
        "MSH|^~\\&|GS^X|RH&Y|LABKA|RH|20261126||ADT^A08^ADT_A01|ID1|P|2.5|||AL|NE\rPID|1",
        "MSH|^~\\&|GS|RH|||T||ORM^O01|A|T|2.3",
        "MSH|^~\\&|GS|RH|||T||ADT^|A||",  # empty trigger, MSH-11 and MSH-12
        "MSH|^~\\&|GS|RH|||T||ADT^A08|" + "X" * 30 + "|P|2.5",  # a long MSH-10
        "MSH|^~\\&|GS|RH|||T||ADT|A|P|2.5",  # no trigger: the hl7 package refuses it
        "MSH|^~\\&|GS|RH|||T||ADT^A08~X^Y|A|P|2.5",  # a repetition: left to the package
        "MSH|^~\\&|GS|RH|||T||ADT^A08|A|P",  # no MSH-12: the package refuses it
    ],
)
def test_raw_acks_are_what_the_hl7_package_makes(text: str) -> None:
    raw = mllp_raw.RawMessage.of(text)
    assert raw is not None
    try:
        expected: str | None = _masked(hl7v2.ack(hl7v2.parse(text), "AA"))
    except ProtocolError:
        expected = None
    made = raw.ack()
    if made is not None:
        assert _masked(made) == expected
    # Where the raw way declines, the listener asks the hl7 package (which may refuse).
    elif expected is not None:
        assert _masked(hl7v2.ack(hl7v2.parse(raw.header), "AA")) == expected
