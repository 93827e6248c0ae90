"""The simulator's MLLP engine and its MLLP and SQL destinations, on real sockets and databases.

The "daemon side" is a tiny MLLP listener written here that ACKs everything and notes when
each frame arrived; GS is a plain MLLP client on one persistent connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from probe.errors import ConnectError
from probe.sim import Simulator, TruthRecord, parse_sim_config, read_truth
from probe.sim.config import MllpDestinationConfig
from probe.sim.destinations import draw_fate
from probe.sim.destinations.sql import inbox_table
from probe.store import create_engine
from probe.transports.mllp import hl7v2
from probe.transports.mllp.framing import FrameReader, frame, read_frame
from tests.helpers import closed_port, wait_for

NAME = "Testperson^Åse Ærø"


def probe_id(n: int) -> str:
    return f"PR{n:018X}"


def gs_message(n: int, *, name: str = NAME, encoding: str = "latin-1") -> str:
    """An ADT^A08 as GS sends it, with the probe id in MSH-10 and PID-3."""
    return hl7v2.build(
        hl7v2.TEMPLATES["adt_a08"],
        probe_id=probe_id(n),
        id_field="PID-3",
        header=hl7v2.Header(sending_application="GS"),
        patient_id="6504611234",
        patient_name=name,
        encoding=encoding,
        sent_at=datetime.now(UTC),
    )


class Receiver:
    """The daemon side: ACKs every frame with `code` and notes (arrival time, payload)."""

    def __init__(self, *, code: str = "AA", close_after_each: bool = False) -> None:
        self.code = code
        self.close_after_each = close_after_each
        self.frames: list[tuple[float, bytes]] = []
        self.connections = 0
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def texts(self, encoding: str = "utf-8") -> list[str]:
        return [payload.decode(encoding) for _, payload in self.frames]

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.connections += 1
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                now = time.time()
                for payload in frames.feed(data):
                    self.frames.append((now, payload))
                    message = hl7v2.parse(payload.decode("latin-1"))
                    writer.write(frame(hl7v2.ack(message, self.code).encode("latin-1")))
                await writer.drain()
                if self.close_after_each:
                    break
        except OSError:
            pass
        finally:
            self._handlers.discard(handler)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Gs:
    """GS: sends frames on one connection to the MLLP engine and reads what comes back."""

    def __init__(self, address: tuple[str, int], *, encoding: str = "latin-1") -> None:
        self.address = address
        self.encoding = encoding
        self._frames = FrameReader()
        self._queue: list[bytes] = []

    async def __aenter__(self) -> Gs:
        self.reader, self.writer = await asyncio.open_connection(*self.address)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def send(self, text: str, *, reply: bool = True) -> hl7v2.AckResult | None:
        self.writer.write(frame(text.encode(self.encoding)))
        await self.writer.drain()
        return await self.reply() if reply else None

    async def reply(self, *, within: float = 10.0) -> hl7v2.AckResult:
        payload = await asyncio.wait_for(
            read_frame(self.reader, self._frames, self._queue), timeout=within
        )
        return hl7v2.read_ack(payload.decode(self.encoding))


@asynccontextmanager
async def running(**config: Any) -> AsyncIterator[Simulator]:
    config.setdefault("mllp_engine", {"encoding": "latin-1"})
    async with Simulator(parse_sim_config(config)) as sim:
        yield sim


@asynccontextmanager
async def connected(**config: Any) -> AsyncIterator[tuple[Simulator, Gs]]:
    """A running simulator and GS connected to its MLLP engine."""
    async with running(**config) as sim, Gs(sim.address("mllp_engine")) as gs:
        yield sim, gs


def mllp(receiver: Receiver, **more: Any) -> dict[str, Any]:
    return {"kind": "mllp", "target": receiver.target, **more}


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# An outage window opens when the simulator starts, long enough that what a test does
# "during the outage" happens inside it even on a busy machine.
WINDOW = 1.0


def outage(
    mode: str, start: str = "0s", duration: str = f"{WINDOW}s", **more: str
) -> dict[str, str]:
    return {"mode": mode, "start": start, "duration": duration, **more}


async def refused(address: tuple[str, int]) -> bool:
    try:
        _, writer = await asyncio.open_connection(*address)
    except ConnectionRefusedError:
        return True
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


async def accepting(address: tuple[str, int]) -> bool:
    return not await refused(address)


# --- MLLP in, MLLP out --------------------------------------------------------------------


async def test_forwarded_after_the_delay_in_the_destination_encoding() -> None:
    async with Receiver() as rx:
        labka = mllp(rx, delay={"fixed": "1s"}, encoding="utf-8")
        async with connected(destinations={"labka": labka}) as (sim, gs):
            sent = time.monotonic()
            ack = await gs.send(gs_message(1))
            assert rx.frames == []  # the ACK does not wait for the forward
            # The delay is the thing under test: 0.2 s into its 1 s, nothing shows yet.
            await asyncio.sleep(0.2 - (time.monotonic() - sent))
            assert rx.frames == []
            await eventually(lambda: len(rx.frames) == 1)

    assert ack == hl7v2.AckResult("AA", probe_id(1), "")
    [truth] = sim.truth
    assert (truth.probe_id, truth.destination, truth.action) == (probe_id(1), "labka", "delivered")
    assert (truth.engine, truth.copies, truth.corrupted) == ("mllp", 1, False)
    assert truth.delay_s == 1.0
    assert truth.visible_at is not None
    assert truth.visible_at - truth.received_at >= 1.0  # never early
    [(arrived, _)] = rx.frames
    assert truth.visible_at <= arrived  # written, then read
    # Sent as latin-1, forwarded as UTF-8: the receiver decodes æøå strictly as UTF-8.
    [text] = rx.texts("utf-8")
    assert "Testperson^Åse Ærø" in text
    assert hl7v2.field_text(hl7v2.parse(text), "MSH-10") == probe_id(1)


@pytest.mark.parametrize(
    ("encoding", "mangled"),
    [
        pytest.param("utf-8", "Testperson^Ã…se Ã†rÃ\xb8", id="utf-8"),
        pytest.param("latin-1", "Testperson^Ã\x85se Ã\x86rÃ\xb8", id="latin-1"),
    ],
)
async def test_corrupt_turns_non_ascii_into_mojibake(encoding: str, mangled: str) -> None:
    async with Receiver() as rx:
        labka = mllp(rx, corrupt=1.0, encoding=encoding)
        async with connected(destinations={"labka": labka}) as (sim, gs):
            await gs.send(gs_message(1))
            await gs.send(gs_message(2, name="Testperson^Ase"))
            await eventually(lambda: len(rx.frames) == 2)

    first, second = rx.texts(encoding)
    assert mangled in first
    assert "Testperson^Ase" in second, "ASCII text is never mangled"
    assert [(r.probe_id, r.corrupted) for r in sim.truth] == [
        (probe_id(1), True),
        (probe_id(2), False),
    ]


async def test_duplicate_is_two_frames() -> None:
    labka = {"duplicates": 1.0}
    async with Receiver() as rx, connected(destinations={"labka": mllp(rx, **labka)}) as (sim, gs):
        await gs.send(gs_message(1))
        await eventually(lambda: len(rx.frames) == 2)
        await asyncio.sleep(0.05)  # time for a third copy that must not come

    assert rx.frames[0][1] == rx.frames[1][1]
    assert len(rx.frames) == 2
    assert [(r.action, r.copies) for r in sim.truth] == [("delivered", 2)]


async def fates(seed: int, count: int) -> tuple[list[str], list[str]]:
    """labka's actions in message order, and the probe ids the receiver got."""
    async with Receiver() as rx:
        labka = mllp(rx, loss=0.5)
        async with connected(seed=seed, destinations={"labka": labka}) as (sim, gs):
            for n in range(count):
                await gs.send(gs_message(n))
            await eventually(lambda: len(sim.truth) == count)
            delivered = sum(r.action == "delivered" for r in sim.truth)
            await eventually(lambda: len(rx.frames) == delivered)  # and the receiver read them
    actions = {r.probe_id: r.action for r in sim.truth}
    got = [hl7v2.field_text(hl7v2.parse(text), "MSH-10") for text in rx.texts("latin-1")]
    return [actions[probe_id(n)] for n in range(count)], got


async def test_loss_is_reproducible_with_a_seed() -> None:
    first, got = await fates(11, 30)
    again, _ = await fates(11, 30)

    assert first == again
    assert set(first) == {"delivered", "lost"}
    assert got == [probe_id(n) for n, action in enumerate(first) if action == "delivered"]
    assert first != (await fates(12, 30))[0]


def _seed_holding_only_the_first(config: dict[str, Any]) -> int:
    """A seed whose first message is held back and whose second is not."""
    model = MllpDestinationConfig.model_validate(config)
    for seed in range(1000):
        rng = random.Random(f"{seed}:labka")
        if [draw_fate(rng, model).reordered for _ in range(2)] == [True, False]:
            return seed
    raise AssertionError("no such seed")


async def test_reorder_lets_a_later_message_overtake() -> None:
    async with Receiver() as rx:
        labka = mllp(rx, delay={"fixed": "50ms"}, reorder=0.5, reorder_delay="300ms")
        seed = _seed_holding_only_the_first(labka)
        async with connected(seed=seed, destinations={"labka": labka}) as (sim, gs):
            await gs.send(gs_message(1))
            await gs.send(gs_message(2))
            await eventually(lambda: len(rx.frames) == 2)

    got = [hl7v2.field_text(hl7v2.parse(text), "MSH-10") for text in rx.texts("latin-1")]
    assert got == [probe_id(2), probe_id(1)]
    held, overtaking = sorted(sim.truth, key=lambda r: r.probe_id)
    assert held.reordered
    assert held.delay_s == pytest.approx(0.35)
    assert (overtaking.reordered, overtaking.delay_s) == (False, 0.05)


async def test_messages_are_written_in_the_order_they_fall_due() -> None:
    async with Receiver() as rx:
        labka = mllp(rx, delay={"uniform": ["0ms", "150ms"]})
        async with connected(seed=5, destinations={"labka": labka}) as (sim, gs):
            for n in range(20):
                await gs.send(gs_message(n))
            await eventually(lambda: len(rx.frames) == 20)

    due = sorted(sim.truth, key=lambda r: r.received_at + (r.delay_s or 0.0))
    got = [hl7v2.field_text(hl7v2.parse(text), "MSH-10") for text in rx.texts("latin-1")]
    assert got == [r.probe_id for r in due]
    assert [r.visible_at for r in sim.truth] == sorted(r.visible_at or 0.0 for r in sim.truth)


async def test_reconnects_when_the_listener_closes() -> None:
    rx = Receiver(close_after_each=True)
    async with rx, connected(destinations={"labka": mllp(rx)}) as (sim, gs):
        for n in range(3):
            await gs.send(gs_message(n))
            await eventually(lambda n=n: len(rx.frames) == n + 1)  # type: ignore[misc]
            await asyncio.sleep(0.02)  # the listener's close reaches the simulator

    assert rx.connections == 3
    assert [r.action for r in sim.truth] == ["delivered"] * 3


async def test_unreachable_target_is_undeliverable(tmp_path: Path) -> None:
    async with Receiver() as rx:
        target = rx.target
    path = tmp_path / "truth.jsonl"
    labka = {"kind": "mllp", "target": target}
    async with connected(truth=str(path), destinations={"labka": labka}) as (sim, gs):
        ack = await gs.send(gs_message(1))
        await eventually(lambda: len(sim.truth) == 1)

    assert ack is not None
    assert ack.code == "AA"
    assert read_truth(path) == [
        TruthRecord(probe_id(1), "labka", sim.truth[0].received_at, "undeliverable", engine="mllp")
    ]


async def test_a_nack_from_the_listener_is_logged() -> None:
    async with Receiver(code="AE") as rx:
        with capture_logs() as logs:
            async with connected(destinations={"labka": mllp(rx)}) as (sim, gs):
                await gs.send(gs_message(1))
                await eventually(lambda: any(e["event"] == "sim_mllp_nack" for e in logs))

    [nack] = [e for e in logs if e["event"] == "sim_mllp_nack"]
    assert (nack["destination"], nack["probe_id"], nack["code"]) == ("labka", probe_id(1), "AE")
    assert sim.truth[0].action == "delivered"


# --- the MLLP engine's own behaviour ------------------------------------------------------


async def test_unparsable_input_gets_ae_and_the_engine_keeps_serving() -> None:
    async with Receiver() as rx, connected(destinations={"labka": mllp(rx)}) as (sim, gs):
        garbage = await gs.send(f"hello {probe_id(7)}")
        short = await gs.send("MSH|^~\\&|GS")
        good = await gs.send(gs_message(1))
        await eventually(lambda: len(rx.frames) == 1)

    assert garbage is not None
    assert short is not None
    assert (garbage.code, short.code) == ("AE", "AE")
    assert garbage.text.startswith("not an HL7 v2 message")
    assert good == hl7v2.AckResult("AA", probe_id(1), "")
    rejected = [(r.probe_id, r.destination, r.action, r.engine) for r in sim.truth[:2]]
    assert rejected == [(probe_id(7), "", "rejected", "mllp"), ("", "", "rejected", "mllp")]


async def test_an_ack_is_never_acked() -> None:
    ack_text = hl7v2.ack(hl7v2.parse(gs_message(9)))
    async with connected(destinations={}) as (sim, gs):
        await gs.send(ack_text, reply=False)
        reply = await gs.send(gs_message(1))

    # The first reply on the connection answers the second frame: the ACK got none.
    assert reply == hl7v2.AckResult("AA", probe_id(1), "")
    assert sim.truth == []


async def test_ae_outage_rejects_then_recovers() -> None:
    async with Receiver() as rx:
        config = {"encoding": "latin-1", "outages": [outage("ae")]}
        async with connected(mllp_engine=config, destinations={"labka": mllp(rx)}) as (sim, gs):
            started = time.monotonic()
            during = await gs.send(gs_message(1))
            await asyncio.sleep(WINDOW + 0.05 - (time.monotonic() - started))  # past the window
            after = await gs.send(gs_message(2))
            await eventually(lambda: len(rx.frames) == 1)

    assert during == hl7v2.AckResult("AE", probe_id(1), "simulated outage")
    assert after == hl7v2.AckResult("AA", probe_id(2), "")
    assert [(r.probe_id, r.destination, r.action) for r in sim.truth] == [
        (probe_id(1), "", "rejected"),
        (probe_id(2), "labka", "delivered"),
    ]


@pytest.mark.parametrize("where", ["engine", "destination"])
async def test_drop_outage_acks_and_forwards_nothing(where: str) -> None:
    async with Receiver() as rx:
        dropping = {"outages": [outage("drop")]}
        engine = {"encoding": "latin-1", **(dropping if where == "engine" else {})}
        labka = mllp(rx, **(dropping if where == "destination" else {}))
        async with connected(mllp_engine=engine, destinations={"labka": labka}) as (sim, gs):
            ack = await gs.send(gs_message(1))
            await eventually(lambda: len(sim.truth) == 1)  # its fate decided: dropped
            assert rx.frames == []

    assert ack == hl7v2.AckResult("AA", probe_id(1), "")
    assert [(r.destination, r.action) for r in sim.truth] == [("labka", "dropped_outage")]


async def test_stall_forwards_at_once_and_holds_the_ack() -> None:
    async with Receiver() as rx:
        engine = {"outages": [outage("stall", duration="5s", stall="1s")]}
        async with connected(mllp_engine=engine, destinations={"labka": mllp(rx)}) as (sim, gs):
            sent = time.monotonic()
            await gs.send(gs_message(1), reply=False)
            await eventually(lambda: len(rx.frames) == 1)
            forwarded_in = time.monotonic() - sent
            ack = await gs.reply()
            acked_in = time.monotonic() - sent

    assert acked_in >= 1.0  # the stall holds the ACK, never shorter
    assert acked_in - forwarded_in > 0.5  # the forward did not wait for it
    assert ack.code == "AA"
    assert sim.truth[0].action == "delivered"


async def test_refuse_closes_connections_and_the_port_then_reopens() -> None:
    engine = {"outages": [outage("refuse", start=f"{WINDOW}s")]}
    async with running(mllp_engine=engine, destinations={}) as sim:
        address = sim.address("mllp_engine")
        async with Gs(address) as gs:
            assert (await gs.send(gs_message(1))) is not None  # before the window
            await wait_for(lambda: refused(address), limit=10, every=0.05)
            with pytest.raises(ConnectError):  # the open connection was closed
                await gs.send(gs_message(2))
        await wait_for(lambda: accepting(address), limit=10, every=0.05)
        async with Gs(address) as gs:
            ack = await gs.send(gs_message(3))
        assert sim.address("mllp_engine") == address

    assert ack is not None
    assert ack.code == "AA"


# --- SQL destinations, and the HTTP engine into MLLP and SQL ------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQL destination's database: a new SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'epm3.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def rows(url: str, table: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            inbox = inbox_table(table)
            return list((await conn.execute(select(inbox).order_by(inbox.c.id))).fetchall())
    finally:
        await engine.dispose()


def epoch(value: datetime) -> float:
    """SQLite hands back naive datetimes, in UTC as written."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def test_sql_destination_inserts_rows_after_the_delay(inbox_url: str) -> None:
    epm3 = {
        "kind": "sql",
        "url": inbox_url,
        "table": "epm3_inbox",
        "delay": {"fixed": "1s"},
        "duplicates": 1.0,
    }
    async with connected(destinations={"epm3": epm3}) as (sim, gs):
        await gs.send(gs_message(1))
        await asyncio.sleep(0.1)  # the delay is the thing under test: 0.1 s into 1 s
        assert await rows(inbox_url, "epm3_inbox") == []
        await eventually(lambda: len(sim.truth) == 1)
        found = await rows(inbox_url, "epm3_inbox")

    [truth] = sim.truth
    assert (truth.action, truth.copies) == ("delivered", 2)
    assert truth.visible_at is not None
    assert truth.visible_at - truth.received_at >= 1.0  # never early
    assert [(row.id, row.probe_id) for row in found] == [(1, probe_id(1)), (2, probe_id(1))]
    assert epoch(found[0].received_at) == pytest.approx(truth.visible_at, abs=1e-5)
    assert "Testperson^Åse Ærø" in found[0].message


async def test_http_engine_reaches_mllp_and_sql_destinations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'epm3.db'}"
    async with Receiver() as rx:
        destinations = {
            "labka": mllp(rx),
            "epm3": {"kind": "sql", "url": url, "table": "epm3_inbox"},
            "web": {},
        }
        async with running(destinations=destinations) as sim, httpx.AsyncClient() as client:
            body = {"probe_id": probe_id(1), "note": "æøå"}
            reply = await client.post(f"{sim.url('engine')}/gs/events", json=body)
            await eventually(lambda: len(sim.truth) == 3)
            found = await rows(url, "epm3_inbox")

    assert reply.status_code == 202
    [text] = rx.texts("utf-8")
    adt = hl7v2.parse(text)
    assert (hl7v2.message_type(adt), hl7v2.field_text(adt, "MSH-10")) == ("ADT", probe_id(1))
    assert [row.probe_id for row in found] == [probe_id(1)]
    assert '"note":"æøå"' in found[0].message
    assert {(r.destination, r.action, r.engine) for r in sim.truth} == {
        ("labka", "delivered", "http"),
        ("epm3", "delivered", "http"),
        ("web", "delivered", "http"),
    }


# --- config, truth, lifecycle -------------------------------------------------------------


async def test_addresses_and_endpoints(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'epm3.db'}"
    destinations = {
        "labka": {"kind": "mllp", "target": "127.0.0.1:2576"},
        "epm3": {"kind": "sql", "url": url, "table": "epm3_inbox"},
    }
    async with running(destinations=destinations) as sim:
        host, port = sim.address("mllp_engine")
        with pytest.raises(KeyError, match="known: engine"):
            sim.url("labka")
        endpoints = sim.endpoints()

    assert (host, port > 0) == ("127.0.0.1", True)
    assert endpoints["mllp_engine"] == f"mllp://127.0.0.1:{port}"
    assert endpoints["labka"] == "mllp://127.0.0.1:2576"
    assert endpoints["epm3"] == f"{url} epm3_inbox"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {
                "destinations": {
                    "labka": {
                        "kind": "mllp",
                        "target": "127.0.0.1:1",
                        "outages": [{"mode": "refuse", "start": 0, "duration": 1}],
                    }
                }
            },
            "destinations.labka.outages[0].mode: mode refuse means nothing for an mllp or sql "
            "destination, which the simulator connects out to; only drop is possible",
            id="refuse-on-mllp",
        ),
        pytest.param(
            {"destinations": {"labka": {"kind": "smtp"}}},
            "destinations.labka: kind must be one of http, mllp, sql",
            id="unknown-kind",
        ),
        pytest.param(
            {"destinations": {"labka": {"kind": "mllp"}}},
            "destinations.labka.target: missing required key",
            id="no-target",
        ),
        pytest.param(
            {"destinations": {"labka": {"kind": "mllp", "target": "127.0.0.1:0"}}},
            "destinations.labka.target: invalid target address '127.0.0.1:0': "
            "port 0 cannot be connected to",
            id="target-port-0",
        ),
        pytest.param(
            {"destinations": {"labka": {"target": "127.0.0.1:2576"}}},
            "destinations.labka.target: unknown key",
            id="target-on-http",
        ),
        pytest.param(
            {"destinations": {"epm3": {"kind": "sql", "url": "nonsense"}}},
            "destinations.epm3.url: not a SQLAlchemy URL, e.g. sqlite+aiosqlite:///epm3.db",
            id="bad-url",
        ),
        pytest.param(
            {
                "destinations": {
                    "epm3": {"kind": "sql", "url": "sqlite+aiosqlite://", "table": "x;"}
                }
            },
            "destinations.epm3.table: a table name is letters, digits and _, "
            "not starting with a digit",
            id="bad-table",
        ),
        pytest.param(
            {"mllp_engine": {"outages": [{"mode": "http_500", "start": 0, "duration": 1}]}},
            "mllp_engine.outages[0].mode: Input should be 'refuse', 'ae', 'drop' or 'stall'",
            id="http-mode-on-mllp-engine",
        ),
        pytest.param(
            {"mllp_engine": {"encoding": "ascii"}},
            "mllp_engine.encoding: Input should be 'utf-8', 'latin-1' or 'cp1252'",
            id="bad-encoding",
        ),
        pytest.param(
            {"engine": {"listen": "127.0.0.1:9000"}, "mllp_engine": {"listen": "127.0.0.1:9000"}},
            "mllp_engine.listen: port 9000 is already used by engine",
            id="same-port",
        ),
        pytest.param(
            {"destinations": {"mllp_engine": {}}},
            "destinations: the name 'mllp_engine' is reserved or empty",
            id="reserved-name",
        ),
        pytest.param(
            {"destinations": {"labka": {"reorder": 1.5}}},
            "destinations.labka.reorder: Input should be less than or equal to 1",
            id="reorder-above-one",
        ),
    ],
)
def test_invalid_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="invalid simulator config") as caught:
        parse_sim_config(config)
    assert str(caught.value) == f"invalid simulator config <config>:\n  {message}"


def test_truth_lines_from_before_the_new_fields_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"probe_id":"PR1","destination":"labka","received_at":1.5,"action":"delivered",'
        '"delay_s":0.3,"visible_at":1.8,"copies":1}\n'
    )
    assert read_truth(path) == [TruthRecord("PR1", "labka", 1.5, "delivered", 0.3, 1.8, 1)]
    path.write_text(path.read_text().replace('"copies":1', '"copies":1,"colour":"red"'))
    with pytest.raises(ValueError, match="wrong keys"):
        read_truth(path)


async def test_a_database_that_cannot_be_reached_fails_start() -> None:
    # PostgreSQL on a closed port, not a SQLite file in a missing folder: aiosqlite's
    # worker thread outlives a failed connect and would trip over the closed event loop.
    url = f"postgresql+psycopg://probe@127.0.0.1:{closed_port()}/epm3"
    sim = Simulator(parse_sim_config({"destinations": {"epm3": {"kind": "sql", "url": url}}}))
    with pytest.raises(OperationalError, match="refused"):
        await sim.start()
    await sim.stop()
