"""The MLLP listener's limits, on real sockets: a connection cap, an idle timeout, a frame
size limit and accept errors that are summed up rather than logged one by one.

The flood test runs the real daemon (`python -m probe run`) with a soft limit of 256 open
files, floods its MLLP port with thousands of connections that send nothing, and checks
what an operator would: `/healthz` answers, the log stays short, and an engine that
connects after the flood gets its ACKs and has its sightings stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import yaml
from sqlalchemy import select
from structlog.testing import capture_logs

from probe.model import new_probe_id
from probe.store import create_engine
from probe.store.migrate import upgrade
from probe.store.tables import sightings
from probe.transports.mllp import accept as mllp_accept
from probe.transports.mllp import hl7v2
from probe.transports.mllp.accept import close_writer
from probe.transports.mllp.framing import START, FrameReader, frame
from probe.transports.mllp.listener import MllpListener
from probe.transports.mllp.spec import MllpDestination
from tests.helpers import child_process, closed_port, log_events, probe_argv, wait_for, wait_ready

LIMIT = 20.0  # no wait of a test may last longer than this
FD_LIMIT = 256  # the daemon's soft RLIMIT_NOFILE in the flood test
FLOOD = 5_000  # connections the flood test attempts (fewer if this process may not open them)
ENGINE_MESSAGES = 20
DEFAULT_MAX_CONNECTIONS = 64
# What asyncio's own accept loop writes when it runs out of descriptors, and our summary.
ACCEPT_ERROR_MARKS = ("out of system resource", "Too many open files", "mllp_accept_failed")


@pytest.fixture(autouse=True)
async def _no_loop_errors() -> AsyncIterator[None]:
    """Errors asyncio would only log (a failed callback, a task exception never read) fail."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield
    loop.set_exception_handler(None)
    assert not errors, [context.get("message") for context in errors]


def _message(probe_id: str) -> bytes:
    text = (
        f"MSH|^~\\&|GS|RH|LABKA|RH|20261126100000||ADT^A08|{probe_id}|P|2.5\r"
        f"PID|1||6504611234^^^CPR~{probe_id}^^^PROBE||Testperson^Ib\r"
    )
    return frame(text.encode())


def _destination(**options: Any) -> MllpDestination:
    return MllpDestination.model_validate(
        {"name": "labka", "type": "mllp", "listen": "127.0.0.1:0", **options}
    )


@asynccontextmanager
async def _listener(**options: Any) -> AsyncIterator[MllpListener]:
    listener = MllpListener.from_config(_destination(**options))
    listener.register("MSH-10", [], destination="labka")
    await listener.start()
    try:
        yield listener
    finally:
        await listener.aclose()


async def _replies(reader: asyncio.StreamReader, count: int) -> list[hl7v2.AckResult]:
    frames, found = FrameReader(), list[hl7v2.AckResult]()
    async with asyncio.timeout(LIMIT):
        while len(found) < count:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("closed before the reply")
            found += [hl7v2.read_ack(p.decode()) for p in frames.feed(data)]
    return found


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Wait until the other side closes (or resets) the connection; True when it does."""
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass
    return True


async def _served(port: int, probe_ids: list[str]) -> list[hl7v2.AckResult]:
    """Connect as a well-behaved engine, send each message and read its ACK. A connection
    closed at once (the listener is full) is tried again until one is served."""
    acks: list[hl7v2.AckResult] = []

    async def attempt() -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionResetError:
            return False
        try:
            for probe_id in probe_ids:
                writer.write(_message(probe_id))
                acks.extend(await _replies(reader, 1))
        except OSError:
            acks.clear()
            return False
        finally:
            await close_writer(writer)
        return True

    await wait_for(attempt, limit=LIMIT, every=0.05)
    return acks


# --- the connection cap ------------------------------------------------------------------


async def test_connections_beyond_the_cap_are_closed_at_once_and_logged_once() -> None:
    with capture_logs() as logs:
        async with _listener(max_connections=3) as listener:
            flood = Flood(listener.port)
            try:
                await flood.open(50)
                await wait_for(_true(lambda: listener.stats.refused == 47), limit=LIMIT)
                assert listener.open_connections == 3
                # Every refused one is closed from the listener's side; the three held not.
                await wait_for(_true(lambda: flood.closed_by_listener == 47), limit=LIMIT)
                held = flood.still_open()
                assert len(held) == 3
                # A slot given back is taken by the next engine.
                held[0].transport.abort()
                probe_id = new_probe_id()
                (ack,) = await _served(listener.port, [probe_id])
            finally:
                await flood.close()
    assert (ack.code, ack.control_id) == ("AA", probe_id)
    refused = [e for e in logs if e["event"] == "mllp_connection_refused"]
    # One line at the first refusal, and the sum of the rest when the listener closed.
    assert len(refused) == 2, refused
    assert refused[1]["count"] == listener.stats.refused - 1


async def test_all_listeners_together_keep_to_a_share_of_the_descriptors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever their max_connections, two listeners together hold no more connections
    than `FD_SHARE` of the open-file limit (made 6 here), so /healthz keeps the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    monkeypatch.setattr(mllp_accept, "FD_SHARE", 5.5 / soft)  # "fewer than 5.5" is 6
    with capture_logs() as logs:
        async with _listener(max_connections=100) as one, _listener(max_connections=100) as two:
            floods = [Flood(one.port), Flood(two.port)]
            try:
                await floods[0].open(4)
                await floods[1].open(4)
                refused = _true(lambda: one.stats.refused + two.stats.refused == 2)
                await wait_for(refused, limit=LIMIT)
                assert one.open_connections + two.open_connections == 6
            finally:
                for flood in floods:
                    await flood.close()
    lines = [e for e in logs if e["event"] == "mllp_connection_refused"]
    assert [e["reason"] for e in lines] == ["descriptors", "descriptors"]  # the first, the sum


def _true(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


# --- idle connections --------------------------------------------------------------------


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not() -> None:
    async with _listener(idle_timeout="300ms") as listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            async with asyncio.timeout(LIMIT):
                assert await _closed_by_peer(reader)
        finally:
            await close_writer(writer)
        # A connection that sent a message (and got its ACK) is idle from then on.
        probe_id = new_probe_id()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            writer.write(_message(probe_id))
            (ack,) = await _replies(reader, 1)
            async with asyncio.timeout(LIMIT):
                assert await _closed_by_peer(reader)
        finally:
            await close_writer(writer)
        assert listener.stats.idle_closed == 2
        assert listener.open_connections == 0
    assert (ack.code, ack.control_id) == ("AA", probe_id)


# --- frame size --------------------------------------------------------------------------


def test_an_unterminated_frame_never_grows_the_buffer() -> None:
    reader = FrameReader(max_size=64 * 1024)
    chunk = b"x" * 65536
    reader.feed(START + b"MSH|^~\\&|GS|RH|LABKA|RH|T||ADT^A08|BIG1|P|2.5\r")
    for _ in range(160):  # 10 MiB without a frame end
        reader.feed(chunk)
        assert reader.buffered <= 64 * 1024 + len(chunk)
    assert reader.oversized == 1
    assert reader.oversized_head.startswith(b"MSH|")


async def test_a_frame_over_max_frame_is_refused_and_the_connection_closed() -> None:
    max_frame = 64 * 1024
    head = b"MSH|^~\\&|GS|RH|LABKA|RH|20261126100000||ADT^A08|BIG1|P|2.5\rNTE|1||"
    chunk = b"x" * 65536
    async with _listener(max_frame=max_frame) as listener:
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", listener.port))
        sock.setblocking(False)

        async def flood() -> None:
            # sock_sendall sends from the one chunk: no copy of ours counts as the listener's.
            with contextlib.suppress(OSError):
                await loop.sock_sendall(sock, START + head)
                for _ in range(128):  # 8 MiB, unless the listener closes first
                    await loop.sock_sendall(sock, chunk)

        tracemalloc.start()
        try:
            sender = asyncio.create_task(flood())
            replies, frames = [], FrameReader()
            async with asyncio.timeout(LIMIT):
                with contextlib.suppress(ConnectionResetError):
                    while data := await loop.sock_recv(sock, 65536):
                        replies += frames.feed(data)
            _, peak = tracemalloc.get_traced_memory()
            await sender
        finally:
            tracemalloc.stop()
            sock.close()
        stats = listener.stats
        probe_id = new_probe_id()
        (ack,) = await _served(listener.port, [probe_id])  # the listener serves on
    (refusal,) = [hl7v2.read_ack(reply.decode()) for reply in replies]
    assert (refusal.code, refusal.control_id) == ("AE", "BIG1")
    assert "max_frame" in refusal.text
    assert stats.oversized == 1
    assert stats.junk_bytes < max_frame + 2 * len(chunk)  # read no further than needed
    assert peak < 2 * 1024 * 1024, peak  # the listener never held the frame
    assert (ack.code, ack.control_id) == ("AA", probe_id)


# --- accept errors -----------------------------------------------------------------------


async def test_accept_errors_are_summed_up_rather_than_logged_each() -> None:
    """Out of descriptors (EMFILE), asyncio's accept loop would log a traceback at each try;
    the listener writes one line, rests, tries again, and sums up the rest."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with capture_logs() as logs:
        async with _listener() as listener:
            loop = asyncio.get_running_loop()
            sock = socket.socket()  # made while descriptors are still to be had
            sock.setblocking(False)
            try:
                lowest_free = os.open(os.devnull, os.O_RDONLY)
                os.close(lowest_free)
                # From here on, no new descriptor for this process: accept() gets EMFILE.
                resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
                try:
                    await loop.sock_connect(sock, ("127.0.0.1", listener.port))
                    await wait_for(_true(lambda: listener.stats.accept_errors >= 3), limit=LIMIT)
                finally:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                # With descriptors again, the waiting connection is taken and served.
                probe_id = new_probe_id()
                await loop.sock_sendall(sock, _message(probe_id))
                replies, frames = [], FrameReader()
                async with asyncio.timeout(LIMIT):
                    while not replies:
                        replies += frames.feed(await loop.sock_recv(sock, 65536))
            finally:
                sock.close()
            errors = listener.stats.accept_errors
    (ack,) = [hl7v2.read_ack(reply.decode()) for reply in replies]
    assert (ack.code, ack.control_id) == ("AA", probe_id)
    lines = [e for e in logs if e["event"] == "mllp_accept_failed"]
    assert len(lines) == 2, lines  # the first, and the sum when the listener closed
    assert lines[0]["error"] == errno.errorcode[errno.EMFILE]
    assert lines[1]["count"] == errors - 1


# --- config ------------------------------------------------------------------------------


def test_limits_have_defaults_and_are_read_from_the_destination() -> None:
    default = MllpListener.from_config(_destination())
    assert (default.max_connections, default.idle_timeout, default.max_frame) == (
        DEFAULT_MAX_CONNECTIONS,
        300.0,
        1024 * 1024,
    )
    chosen = _destination(max_connections=5, idle_timeout="2m", max_frame=4096)
    listener = MllpListener.from_config(chosen)
    assert (listener.max_connections, listener.idle_timeout, listener.max_frame) == (5, 120, 4096)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"max_connections": 0},
            "Input should be greater than or equal to 1",
            id="no-connections",
        ),
        pytest.param(
            {"idle_timeout": "0s"},
            "Value error, invalid duration '0s': must be greater than zero",
            id="zero-idle-timeout",
        ),
        pytest.param(
            {"max_frame": 100},
            "Input should be greater than or equal to 1024",
            id="tiny-frame",
        ),
    ],
)
def test_invalid_limits_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        _destination(**options)
    (error,) = raised.value.errors()
    assert error["msg"] == message


# --- the flood, against the real daemon --------------------------------------------------


def _limited_probe(*args: str) -> list[str]:
    """`python -m probe ARGS` with a soft limit of `FD_LIMIT` open files."""
    code = (
        "import resource, runpy, sys\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, hard))\n"
        "sys.argv = ['probe', *sys.argv[1:]]\n"
        "runpy.run_module('probe', run_name='__main__', alter_sys=True)\n"
    )
    argv = probe_argv(*args)
    return [argv[0], "-c", code, *args]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _healthz(port: int) -> int | str:
    """The status of ``GET /healthz``, or the kind of error that stood in its way."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def _accept_error_lines(log: Path) -> int:
    return sum(
        any(mark in line for mark in ACCEPT_ERROR_MARKS)
        for line in log.read_text(errors="replace").splitlines()
    )


class Flood:
    """Connections that connect and send nothing, each watched for a close by the listener.

    A connection the listener resets at once may already fail its connect: it counts as
    connected and closed by the listener.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.attempted = self.connected = self.failed = self.reset_at_connect = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.watchers: list[asyncio.Task[bool]] = []

    @property
    def closed_by_listener(self) -> int:
        return self.reset_at_connect + sum(task.done() for task in self.watchers)

    def still_open(self) -> list[asyncio.StreamWriter]:
        pairs = zip(self.writers, self.watchers, strict=True)
        return [writer for writer, watcher in pairs if not watcher.done()]

    async def open(self, count: int) -> None:
        gate = asyncio.Semaphore(1000)

        async def one() -> None:
            async with gate:
                try:
                    async with asyncio.timeout(5):
                        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except ConnectionResetError:
                    self.connected += 1
                    self.reset_at_connect += 1
                    return
                except (OSError, TimeoutError):
                    self.failed += 1
                    return
                self.connected += 1
                self.writers.append(writer)
                self.watchers.append(asyncio.create_task(_closed_by_peer(reader)))

        self.attempted = count
        await asyncio.gather(*(one() for _ in range(count)))

    def poke(self) -> None:
        """Send a byte on every connection not yet closed by the listener.

        On a busy machine the listener's accept queue fills, and the kernel then ignores
        the last ACK of a handshake: the client counts the connection as open, while the
        server side waits in SYN-RECV and, after its SYN-ACK retries, forgets it without a
        word. Such a connection is held by no one, but it never sees a close. A byte
        completes its handshake (or draws a reset), so the listener takes it and turns it
        away like the others."""
        for writer in self.still_open():
            with contextlib.suppress(OSError):
                writer.write(b"\x0b")

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.gather(*self.watchers)


async def test_a_connection_flood_leaves_healthz_and_the_engine_served(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    listen, http = closed_port(), closed_port()
    config = {
        "store": {"url": url, "flush_interval": "100ms", "spool_dir": str(tmp_path / "spool")},
        "server": {"listen": f"127.0.0.1:{http}"},
        "flows": [
            {
                "name": "gs-adt",
                "interval": "1h",
                "source": {"type": "mllp", "host": "127.0.0.1", "port": closed_port()},
                "destinations": [
                    {"name": "labka", "type": "mllp", "listen": f"127.0.0.1:{listen}"}
                ],
            }
        ],
    }
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "probe.log"
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    attempts = min(FLOOD, soft - 500)  # what this process may open besides its own files
    flood = Flood(listen)
    figures: dict[str, Any] = {"attempted": attempts}
    try:
        async with child_process(_limited_probe("run", "-c", str(path)), log, cwd=tmp_path) as proc:
            await wait_ready(proc, log, http)
            limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
            (files,) = [line for line in limits if line.startswith("Max open files")]
            assert files.split()[3] == str(FD_LIMIT)
            figures["rss_kib_before"] = _rss_kib(proc.pid)
            lines_before = len(log.read_text(errors="replace").splitlines())

            await flood.open(attempts)

            # Whatever the listener does not hold it closes: wait until it has. Each step
            # only measures, so that a failure still shows every figure.
            async def held() -> bool:
                flood.poke()
                return flood.connected - flood.closed_by_listener <= 64

            with contextlib.suppress(AssertionError):  # 5,000 closes: slow on a busy machine
                await wait_for(held, limit=6 * LIMIT, every=1.0)
            figures |= {
                "connected": flood.connected,
                "connect_failed": flood.failed,
                "held": flood.connected - flood.closed_by_listener,
                "healthz": await _healthz(http),
                "rss_kib_flood": _rss_kib(proc.pid),
            }
            await flood.close()

            probe_ids = [new_probe_id() for _ in range(ENGINE_MESSAGES)]
            with contextlib.suppress(AssertionError):
                acks = await _served(listen, probe_ids)
                figures["acked"] = sum(a.code == "AA" for a in acks)

            async def stored() -> bool:
                async with engine.connect() as conn:
                    rows = (await conn.execute(select(sightings.c.probe_id))).fetchall()
                figures["stored"] = len({row.probe_id for row in rows} & set(probe_ids))
                return bool(figures["stored"] == len(probe_ids))

            with contextlib.suppress(AssertionError):
                await wait_for(stored, limit=LIMIT)
            lines = log.read_text(errors="replace").splitlines()
            figures |= {
                "log_lines_during_flood": len(lines) - lines_before,
                "log_bytes": log.stat().st_size,
                "accept_error_lines": _accept_error_lines(log),
                "refused_lines": sum(
                    e.get("event") == "mllp_connection_refused" for e in log_events(log)
                ),
                "rss_kib_after": _rss_kib(proc.pid),
            }
    finally:
        await flood.close()
        await engine.dispose()
        print(f"\nflood figures: {figures}", file=sys.stderr)

    assert figures["connected"] == attempts
    assert figures["held"] == DEFAULT_MAX_CONNECTIONS
    assert figures["healthz"] == 200
    assert figures.get("acked") == ENGINE_MESSAGES  # each one the engine sent
    assert figures["stored"] == ENGINE_MESSAGES  # every ACKed arrival is in the store
    assert figures["accept_error_lines"] <= 2
    assert figures["refused_lines"] <= 2
    assert figures["log_lines_during_flood"] < 50
