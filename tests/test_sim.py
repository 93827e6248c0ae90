"""The simulator, against real servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.errors import ConfigError
from probe.sim import Simulator, TruthRecord, load_sim_config, parse_sim_config, read_truth
from probe.sim.config import EngineOutage
from probe.sim.outage import is_open, next_edge
from probe.sim.run import run_sim
from tests.helpers import wait_for

DEMO = Path(__file__).parent.parent / "config" / "demo-sim.yaml"


def probe_id(n: int) -> str:
    return f"PR{n:018X}"


@asynccontextmanager
async def running(**config: Any) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    async with Simulator(parse_sim_config(config)) as sim, httpx.AsyncClient() as client:
        yield sim, client


async def post(sim: Simulator, client: httpx.AsyncClient, n: int) -> httpx.Response:
    return await client.post(f"{sim.url('engine')}/gs/events", json={"probe_id": probe_id(n)})


async def received(sim: Simulator, client: httpx.AsyncClient, name: str, n: int) -> list[Any]:
    reply = await client.get(f"{sim.url(name)}/received", params={"probe_id": probe_id(n)})
    assert reply.status_code == 200
    events: list[Any] = reply.json()["events"]
    return events


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- delivery -----------------------------------------------------------------------------


async def _shown(sim: Simulator, client: httpx.AsyncClient, n: int) -> bool:
    return bool(await received(sim, client, "labka", n))


async def test_fixed_delay_is_honoured() -> None:
    async with running(destinations={"labka": {"delay": {"fixed": "1s"}}}) as (sim, client):
        sent = time.monotonic()
        reply = await post(sim, client, 1)
        assert (reply.status_code, reply.json()) == (202, {"accepted": probe_id(1)})

        # The delay is the thing under test: 0.2 s into its 1 s, nothing shows yet.
        await asyncio.sleep(0.2 - (time.monotonic() - sent))
        assert await received(sim, client, "labka", 1) == []
        await wait_for(lambda: _shown(sim, client, 1), limit=10, every=0.05)
        [event] = await received(sim, client, "labka", 1)

    [truth] = sim.truth
    assert (truth.action, truth.delay_s, truth.copies) == ("delivered", 1.0, 1)
    assert event["probe_id"] == probe_id(1)
    assert event["received_at"].endswith("+00:00")
    # Never early; how late, a busy machine decides.
    assert epoch(event["received_at"]) - truth.received_at >= 1.0
    assert truth.visible_at == pytest.approx(epoch(event["received_at"]), abs=1e-6)


async def fates(seed: int, destinations: dict[str, Any], count: int) -> list[str]:
    """The actions recorded for labka, in message order."""
    async with running(seed=seed, destinations=destinations) as (sim, client):
        for n in range(count):
            await post(sim, client, n)
        await eventually(lambda: len(sim.truth) == count * len(destinations))
    by_probe = {r.probe_id: r.action for r in sim.truth if r.destination == "labka"}
    return [by_probe[probe_id(n)] for n in range(count)]


@pytest.mark.slow
async def test_loss_is_reproducible_and_near_the_ratio() -> None:
    labka = {"loss": 0.25}
    first = await fates(7, {"labka": labka}, 200)
    again = await fates(7, {"labka": labka}, 200)
    with_epm3 = await fates(7, {"epm3": {"loss": 0.5}, "labka": labka}, 200)

    assert first == again
    assert first == with_epm3, "another destination must not change labka's draws"
    assert set(first) == {"delivered", "lost"}
    assert 0.15 < first.count("lost") / 200 < 0.35
    assert first != await fates(8, {"labka": labka}, 200)


async def test_duplicate_shows_two_events() -> None:
    async with running(destinations={"labka": {"duplicates": 1.0}}) as (sim, client):
        await post(sim, client, 1)
        await eventually(lambda: len(sim.truth) == 1)
        events = await received(sim, client, "labka", 1)

    assert [e["seq"] for e in events] == [1, 2]
    assert events[0]["received_at"] == events[1]["received_at"]
    assert sim.truth[0].copies == 2


async def test_events_since() -> None:
    async with running(destinations={"labka": {}}) as (sim, client):
        await post(sim, client, 1)
        await eventually(lambda: len(sim.truth) == 1)
        await asyncio.sleep(0.01)  # a clock tick between the first event and `since`
        since = time.time()
        await post(sim, client, 2)
        await eventually(lambda: len(sim.truth) == 2)
        url = f"{sim.url('labka')}/events"

        everything = (await client.get(url)).json()["events"]
        recent = (await client.get(url, params={"since": since})).json()["events"]
        bad = await client.get(url, params={"since": "yesterday"})

    assert [e["probe_id"] for e in everything] == [probe_id(1), probe_id(2)]
    assert [(e["probe_id"], e["seq"]) for e in recent] == [(probe_id(2), 2)]
    assert bad.status_code == 400


HL7 = b"MSH|^~\\&|GS|||||ORM^O01|PR00000000000000ABCD|P|2.5"


@pytest.mark.parametrize(
    ("body", "status", "accepted"),
    [
        pytest.param(HL7, 202, "PR00000000000000ABCD", id="hl7"),
        pytest.param(b'{"note": "PR0000000000000000FF"}', 202, "PR0000000000000000FF", id="json"),
        pytest.param(b'{"probe_id": "custom-1"}', 202, "custom-1", id="json-field"),
        pytest.param(b"no id here", 400, None, id="nothing"),
    ],
)
async def test_probe_id_from_body(body: bytes, status: int, accepted: str | None) -> None:
    async with running(destinations={"labka": {}}) as (sim, client):
        reply = await client.post(f"{sim.url('engine')}/gs/events", content=body)

    assert reply.status_code == status
    if accepted is not None:
        assert reply.json() == {"accepted": accepted}
        assert [r.probe_id for r in sim.truth] == [accepted]


# --- outages ------------------------------------------------------------------------------


# An outage window opens when the simulator starts. It is long enough that what a test does
# "during the outage" happens inside it even on a busy machine; what comes after it is
# awaited as a condition where the simulator shows one.
WINDOW = 1.0


def outage(
    mode: str, start: str = "0s", duration: str = f"{WINDOW}s", **more: str
) -> dict[str, str]:
    return {"mode": mode, "start": start, "duration": duration, **more}


async def refused(client: httpx.AsyncClient, url: str) -> bool:
    """``url`` refuses the connection, or closes a kept-alive one (the window opened)."""
    try:
        await client.get(url)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


async def answering(client: httpx.AsyncClient, url: str) -> bool:
    return not await refused(client, url)


async def events_of(sim: Simulator, client: httpx.AsyncClient, name: str, n: int) -> int | None:
    """How many events ``name`` shows for probe ``n``; None while it answers no JSON 200."""
    reply = await client.get(f"{sim.url(name)}/received", params={"probe_id": probe_id(n)})
    try:
        return len(reply.json()["events"]) if reply.status_code == 200 else None
    except ValueError:  # the garbage of an outage
        return None


async def test_destination_refuse_closes_and_reopens_the_port() -> None:
    labka = {"outages": [outage("refuse", start=f"{WINDOW}s")]}
    async with running(destinations={"labka": labka}) as (sim, client):
        url = f"{sim.url('labka')}/events"
        assert (await client.get(url)).status_code == 200  # before the window
        await wait_for(lambda: refused(client, url), limit=10, every=0.05)
        await wait_for(lambda: answering(client, url), limit=10, every=0.05)
        assert (await client.get(url)).status_code == 200
        assert sim.url("labka") == url.removesuffix("/events")


async def test_destination_http_500_and_garbage() -> None:
    destinations = {
        "labka": {"outages": [outage("http_500")]},
        "epm3": {"outages": [outage("garbage")]},
    }
    async with running(destinations=destinations) as (sim, client):
        await post(sim, client, 1)
        failing = await client.get(f"{sim.url('labka')}/received", params={"probe_id": probe_id(1)})
        garbled = await client.get(f"{sim.url('epm3')}/events")
        # After the outage both show the message that came in during it.
        await wait_for(lambda: _shows_one(sim, client, 1), limit=10, every=0.05)

    assert failing.status_code == 500
    assert garbled.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        garbled.json()


async def _shows_one(sim: Simulator, client: httpx.AsyncClient, n: int) -> bool:
    return await events_of(sim, client, "labka", n) == 1 == await events_of(sim, client, "epm3", n)


async def test_destination_drop() -> None:
    async with running(destinations={"labka": {"outages": [outage("drop")]}}) as (sim, client):
        started = time.monotonic()
        await post(sim, client, 1)
        await asyncio.sleep(WINDOW + 0.05 - (time.monotonic() - started))  # past the window
        await post(sim, client, 2)
        await eventually(lambda: len(sim.truth) == 2)
        assert await received(sim, client, "labka", 1) == []
        assert len(await received(sim, client, "labka", 2)) == 1

    assert [(r.probe_id, r.action) for r in sim.truth] == [
        (probe_id(1), "dropped_outage"),
        (probe_id(2), "delivered"),
    ]


async def test_engine_refuse() -> None:
    async with running(engine={"outages": [outage("refuse")]}) as (sim, client):
        health = f"{sim.url('engine')}/health"
        with pytest.raises(httpx.ConnectError):
            await client.get(health)
        await wait_for(lambda: answering(client, health), limit=10, every=0.05)
        assert (await client.get(health)).json() == {"status": "ok"}


async def test_engine_http_500_is_rejected_in_truth() -> None:
    engine = {"outages": [outage("http_500")]}
    async with running(engine=engine, destinations={"labka": {}}) as (sim, client):
        reply = await post(sim, client, 1)
        health = await client.get(f"{sim.url('engine')}/health")

    assert (reply.status_code, health.status_code) == (500, 500)
    assert sim.truth == [TruthRecord(probe_id(1), "", sim.truth[0].received_at, "rejected")]


async def test_engine_drop_forwards_nothing() -> None:
    engine = {"outages": [outage("drop")]}
    async with running(engine=engine, destinations={"labka": {}, "epm3": {}}) as (sim, client):
        reply = await post(sim, client, 1)
        await eventually(lambda: len(sim.truth) == 2)  # both fates decided: dropped
        assert await received(sim, client, "labka", 1) == []

    assert reply.status_code == 202
    assert {(r.destination, r.action) for r in sim.truth} == {
        ("labka", "dropped_outage"),
        ("epm3", "dropped_outage"),
    }


async def test_engine_stall_outlasts_the_caller_and_still_stops_fast() -> None:
    engine = {"outages": [outage("stall", duration="5s", stall="10s")]}
    async with running(engine=engine, destinations={"labka": {}}) as (sim, client):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{sim.url('engine')}/gs/events", json={"probe_id": "x"}, timeout=0.3)
        await eventually(lambda: len(sim.truth) == 1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5  # far less than the 10 s stall: not waited for
    # The engine committed the message; only its answer was late.
    assert sim.truth[0].action == "delivered"


@pytest.mark.parametrize(
    ("elapsed", "open_", "edge"),
    [
        pytest.param(0.5, False, 1.0, id="before"),
        pytest.param(1.0, True, 3.0, id="opening"),
        pytest.param(3.0, False, 11.0, id="closing"),
        pytest.param(12.0, True, 13.0, id="second-cycle"),
        pytest.param(13.5, False, 21.0, id="between"),
    ],
)
def test_repeating_window(elapsed: float, open_: bool, edge: float) -> None:
    window = EngineOutage(mode="refuse", start=1.0, duration=2.0, every=10.0)
    assert (is_open(window, elapsed), next_edge(window, elapsed)) == (open_, edge)


def test_single_window_has_no_edge_after_closing() -> None:
    window = EngineOutage(mode="refuse", start=1.0, duration=2.0)
    assert (is_open(window, 3.5), next_edge(window, 3.5)) == (False, None)


# --- truth, lifecycle ---------------------------------------------------------------------


async def test_truth_file_matches_what_happened(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    destinations = {
        "labka": {"delay": {"uniform": ["10ms", "50ms"]}, "duplicates": 0.3},
        "epm3": {"loss": 0.3, "delay": {"lognormal": {"median": "20ms", "sigma": 0.3}}},
    }
    async with running(truth=str(path), seed=3, destinations=destinations) as (sim, client):
        for n in range(20):
            await post(sim, client, n)
        await eventually(lambda: len(sim.truth) == 40)
        labka = [await received(sim, client, "labka", n) for n in range(20)]
        epm3 = [await received(sim, client, "epm3", n) for n in range(20)]

    records = read_truth(path)
    assert records == sim.truth
    for name, seen in (("labka", labka), ("epm3", epm3)):
        truth = {r.probe_id: r for r in records if r.destination == name}
        for n, events in enumerate(seen):
            record = truth[probe_id(n)]
            assert len(events) == record.copies
            if record.action == "delivered":
                assert record.delay_s is not None
                assert record.visible_at is not None
                assert record.visible_at - record.received_at >= record.delay_s - 0.002
    assert {r.action for r in records} == {"delivered", "lost"}
    assert any(r.copies == 2 for r in records)


async def test_in_flight_messages_are_cancelled_on_stop(tmp_path: Path) -> None:
    path, labka = tmp_path / "truth.jsonl", {"delay": {"fixed": "1h"}}
    async with running(truth=str(path), destinations={"labka": labka}) as (sim, client):
        await post(sim, client, 1)
    assert read_truth(path) == []


async def test_starts_and_stops_many_times_on_the_same_port() -> None:
    port = 0
    for _ in range(5):
        listen = f"127.0.0.1:{port}"
        async with running(engine={"listen": listen}) as (sim, client):
            assert (await client.get(f"{sim.url('engine')}/health")).status_code == 200
            port = int(sim.url("engine").rpartition(":")[2])


async def test_url_and_lifecycle_errors() -> None:
    sim = Simulator(parse_sim_config({}))
    with pytest.raises(RuntimeError, match="after start"):
        sim.url("engine")
    await sim.start()
    try:
        with pytest.raises(KeyError, match="known: engine"):
            sim.url("labka")
        with pytest.raises(RuntimeError, match="only once"):
            await sim.start()
    finally:
        await sim.stop()
        await sim.stop()


# --- config -------------------------------------------------------------------------------


def test_demo_config_loads() -> None:
    config = load_sim_config(DEMO)
    assert (config.seed, str(config.truth), config.engine.port) == (7, "sim-truth.jsonl", 18080)
    assert set(config.destinations) == {"labka", "epm3"}
    assert config.destinations["epm3"].outages[0].every == 600.0


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        pytest.param(
            "destinations: {labka: {delay: {fixed: 3 days}}}",
            "destinations.labka.delay.fixed: invalid duration '3 days': "
            "use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 90d",
            id="bad-duration",
        ),
        pytest.param(
            "destinations: {labka: {delya: {fixed: 1s}}}",
            "destinations.labka.delya: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            "destinations: {labka: {delay: {fixed: 1s, uniform: [1s, 2s]}}}",
            "destinations.labka.delay: expected exactly one of fixed, uniform, lognormal",
            id="two-delays",
        ),
        pytest.param(
            "destinations: {labka: {outages: [{mode: stall, start: 0, duration: 1}]}}",
            "destinations.labka.outages[0].mode: "
            "Input should be 'refuse', 'http_500', 'garbage' or 'drop'",
            id="engine-only-mode",
        ),
        pytest.param(
            "engine: {outages: [{mode: drop, start: 0, duration: 1m, every: 30s}]}",
            "engine.outages[0]: every must be longer than duration, or the outage never ends",
            id="endless-outage",
        ),
        pytest.param(
            "engine: {listen: '127.0.0.1:9000'}\ndestinations: {labka: {listen: '127.0.0.1:9000'}}",
            "destinations.labka.listen: port 9000 is already used by engine",
            id="same-port",
        ),
        pytest.param(
            "destinations: {labka: {loss: 2}}",
            "destinations.labka.loss: Input should be less than or equal to 1",
            id="loss-above-one",
        ),
    ],
)
def test_invalid_config(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match="invalid simulator config") as caught:
        load_sim_config(path)
    assert str(caught.value) == f"invalid simulator config {path}:\n  {message}"


def test_config_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("engine: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_sim_config(path)


async def test_run_sim_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("destinations: {labka: {}}")
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    assert await run_sim(path, stop=stop) == 0

    path.write_text("destinations: {labka: {delay: {fixed: soon}}}")
    with pytest.raises(ConfigError) as caught:
        await run_sim(path)
    assert caught.value.problems[1].startswith("  destinations.labka.delay.fixed: invalid duration")
