"""The JSON API against a real daemon probing the real simulator, checked by schemathesis too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from probe.config.models import Config, resolve_flows
from probe.config.windows import Calendar
from probe.engine.daemon import Daemon
from probe.model import Outcome, Result, new_probe_id
from probe.store import create_engine, open_store
from probe.store.tables import probes, results
from probe.web.api import DEFAULT_LIMIT, MAX_LIMIT, Api, ApiContext
from probe.web.openapi import schemas
from probe.web.server import make_app
from probe.web.status import Recent, State, classify, snapshot
from tests.helpers import fetch_rows, running, simulator, wait_for, write_config

# The tests that share the module's daemon run in the module's event loop, and on one
# xdist worker, so that the daemon starts once.
module_loop = pytest.mark.asyncio(loop_scope="module")
pytestmark = pytest.mark.xdist_group("api-daemon")

TOKEN = "api-token-for-tests-0123"
SIM = {
    "destinations": {
        "labka": {"delay": {"fixed": "10ms"}},
        "epm3": {"delay": {"fixed": "300ms"}},  # later than its 100ms SLO: late
        "archive": {"outages": [{"mode": "http_500", "start": 0, "duration": "1h"}]},
    }
}
EXPECTED = {
    "gs-adt": ("down", {"labka": "ok", "epm3": "degraded", "archive": "down"}),
    "labka-api": ("ok", {"": "ok"}),
    "night-batch": ("unknown", {"": "unknown"}),
    "gs-patch": ("maintenance", {"": "maintenance"}),
}


def _dest(name: str, base: str, **extra: Any) -> dict[str, Any]:
    url = base + "/received?probe_id=${probe_id}"
    match = {"jsonpath": "$.events[*].probe_id"}
    return {"name": name, "type": "http", "url": url, "match": match, **extra}


def _config(tmp_path: Path, sim: Any, *, token: str | None = TOKEN) -> dict[str, Any]:
    health = {"type": "http", "url": sim.url("engine") + "/health"}
    now = datetime.now(UTC)
    return {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0", "api_token": token},
        "shutdown_grace": "5s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "50ms"},
        "maintenance": [
            {
                "name": "patching",
                "flows": ["gs-patch"],
                "once": {"start": (now - timedelta(minutes=5)).isoformat(), "duration": "1h"},
            }
        ],
        "flows": [
            {
                "name": "gs-adt",
                "description": "GS patient updates reach Labka and EPM3",
                "source": {
                    "type": "http",
                    "method": "POST",
                    "url": sim.url("engine") + "/gs/events",
                    "body": '{"probe_id": "${probe_id}"}',
                    "expect_status": [202],
                },
                "destinations": [
                    _dest("labka", sim.url("labka")),
                    _dest("epm3", sim.url("epm3"), slo={"latency": "100ms"}),
                    _dest("archive", sim.url("archive")),
                ],
            },
            {"name": "labka-api", "source": health},
            {"name": "night-batch", "cron": "0 3 1 1 *", "source": health},
            {"name": "gs-patch", "source": health},
        ],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Daemon]:
    """One daemon for the module, running until every flow shows its expected state."""
    async with _settled(tmp_path_factory) as d:
        yield d


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Daemon]:
    """A daemon of its own for schemathesis: its runs (``POST .../run`` on night-batch too)
    would change what the tests of `daemon` expect, in whatever order the tests run."""
    async with _settled(tmp_path_factory) as d:
        yield d


@asynccontextmanager
async def _settled(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Daemon]:
    tmp_path = tmp_path_factory.mktemp("api")
    async with simulator(SIM) as sim, running(write_config(tmp_path, _config(tmp_path, sim))) as d:

        async def settled() -> bool:
            return _states(await _get(d, "/api/v1/flows")) == EXPECTED

        await wait_for(settled, limit=20)
        yield d


async def _get(daemon: Daemon, path: str, **params: Any) -> dict[str, Any]:
    response = await _request(daemon, "GET", path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _request(daemon: Daemon, method: str, path: str, **kwargs: Any) -> httpx.Response:
    assert daemon.server is not None
    async with httpx.AsyncClient(base_url=daemon.server.url, timeout=30) as client:
        return await client.request(method, path, **kwargs)


def _states(body: dict[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        f["name"]: (f["state"], {d["name"]: d["state"] for d in f["destinations"]})
        for f in body["flows"]
    }


# --- states ------------------------------------------------------------------------------

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def _recent(*outcomes: str, step: float = 60.0, first: float = 0.0) -> list[Recent]:
    """Results newest first: ``first`` seconds before NOW, then one every ``step`` back."""
    return [
        Recent(
            f"P{i}", "d", NOW - timedelta(seconds=first + step * i), Outcome(o), None, None, False,
            NOW,
        )
        for i, o in enumerate(outcomes)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("recent", "expected"),
    [
        pytest.param([], State.UNKNOWN, id="no-results"),
        pytest.param(_recent("delivered", first=1801), State.UNKNOWN, id="stale"),
        pytest.param(_recent(*["delivered"] * 10), State.OK, id="all-delivered"),
        pytest.param(_recent("lost", "lost", "send_error", "delivered"), State.DOWN, id="last-3"),
        pytest.param(_recent("observe_error"), State.DOWN, id="only-result-failed"),
        pytest.param(_recent("lost", "delivered", "delivered"), State.DEGRADED, id="last-bad"),
        pytest.param(_recent("delivered", "lost", "delivered"), State.DEGRADED, id="recent-loss"),
        pytest.param(_recent("late", "late", "late"), State.DEGRADED, id="late-is-not-down"),
        pytest.param(
            _recent("delivered", *["lost"] * 3, step=3601), State.OK, id="loss-over-an-hour-ago"
        ),
    ],
)
def test_state_rules(recent: list[Recent], expected: State) -> None:
    assert classify(recent, now=NOW, stale_after=timedelta(minutes=30)) == expected


# --- the same queries on SQLite and PostgreSQL, without a daemon --------------------------


async def test_status_and_paging_on_each_store(store_url: str) -> None:
    """Exact numbers from known rows; the keyset pages through rows that share a slot."""
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    store = await open_store(store_url, flush_interval=0.05)
    store.start()
    for minute in range(1, 91):  # one probe a minute for 90 minutes, two destinations
        slot = now - timedelta(minutes=minute)
        probe_id = new_probe_id(slot.timestamp())
        for dest, outcome in (("a", "delivered"), ("b", "lost" if minute <= 3 else "delivered")):
            store.add_result(_result(probe_id, dest, slot, outcome))
    store.add_result(_result("PROLD", "a", now - timedelta(days=10), "lost"))
    # Neither a probe-side fault nor an ad hoc `probe once --store` result says anything
    # about destination a: its state and availability stay as measured.
    newest = now - timedelta(seconds=20)
    fault = _result(new_probe_id(newest.timestamp()), "a", newest, "observe_error")
    store.add_result(replace(fault, reason="listen"))
    adhoc = _result(new_probe_id(newest.timestamp() + 1), "a", newest, "lost")
    store.add_result(replace(adhoc, adhoc=True))
    await store.close()
    config = Config.model_validate({"flows": [{"name": "f", "source": {
        "type": "http", "url": "http://127.0.0.1:9/"}, "destinations": [
        {"name": d, "type": "http", "url": "http://127.0.0.1:9/", "match": {"regex": "x"}}
        for d in ("a", "b")]}]})  # fmt: skip
    flows = resolve_flows(config)
    calendar = Calendar([], ZoneInfo("UTC"))
    engine = create_engine(store_url)
    try:
        found = await snapshot(engine, flows, calendar, now=now)
        (flow,) = found.flows
        a, b = flow.destinations
        assert (flow.state, a.state, b.state) == (State.DOWN, State.OK, State.DOWN)
        # Down since the first slot of the open incident, derived in slot order.
        assert (a.down_since, b.down_since) == (None, now - timedelta(minutes=3))
        assert a.availability == {"1h": 1.0, "24h": 1.0, "30d": 90 / 91}
        assert b.availability == {"1h": 57 / 60, "24h": 87 / 90, "30d": 87 / 90}
        assert [h.counted for h in a.hours[-3:]] == [0, 60, 30]  # now is half past
        assert b.hours[-2].state(0.995) is State.OK
        assert b.hours[-1].state(0.995) is State.DEGRADED  # 3 of 30 lost: not over 10 %
        assert a.hours[0].state(0.995) is State.UNKNOWN  # no data: grey

        async def run_now(_: object) -> None:
            return None

        api = Api(ApiContext(engine, config, flows, calendar, run_now))
        app = make_app(exposition=lambda: iter([b""]), readiness=_ready, api=api)
        transport = httpx.ASGITransport(app=app)
        start = (now - timedelta(hours=2)).isoformat()
        params: dict[str, Any] = {"from": start, "to": now.isoformat(), "limit": 7}
        seen = []
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            while True:
                page = (await client.get("/api/v1/flows/f/results", params=params)).json()
                seen += [(r["slot"], r["probe_id"], r["destination"]) for r in page["results"]]
                if not page["next"]:
                    break
                params["cursor"] = page["next"]
    finally:
        await engine.dispose()
    keys = [(datetime.fromisoformat(t), p, d) for t, p, d in seen]
    assert len(keys) == 182  # the raw record keeps the fault and the ad hoc result too
    assert keys == sorted(set(keys))


def _result(probe_id: str, dest: str, slot: datetime, outcome: str) -> Result:
    latency = 0.1 if outcome == "delivered" else None
    return Result(probe_id, "f", dest, Outcome(outcome), latency, None, 0, None, slot, slot)


async def _ready() -> dict[str, bool]:
    return {}


# --- GET /api/v1/flows ---------------------------------------------------------------------


@module_loop
async def test_flows_list_states_last_probe_and_availability(daemon: Daemon) -> None:
    body = await _get(daemon, "/api/v1/flows")
    assert body["timezone"] == "UTC"
    assert _states(body) == EXPECTED
    flows = {f["name"]: f for f in body["flows"]}
    adt = {d["name"]: d for d in flows["gs-adt"]["destinations"]}
    assert flows["gs-adt"]["description"] == "GS patient updates reach Labka and EPM3"
    assert adt["labka"]["last_probe"]["outcome"] == "delivered"
    assert adt["labka"]["last_probe"]["probe_id"].startswith("PR")
    assert adt["epm3"]["last_probe"]["outcome"] == "late"
    assert adt["epm3"]["slo"] == {"objective": 0.995, "latency_seconds": 0.1}
    archive = adt["archive"]["last_probe"]
    assert (archive["outcome"], archive["reason"], archive["latency_seconds"]) == (
        "observe_error",
        "http_5xx",
        None,
    )
    assert adt["labka"]["down_since"] is None
    assert datetime.fromisoformat(adt["archive"]["down_since"]) <= datetime.now(UTC)
    assert adt["labka"]["availability"]["1h"] == 1.0
    assert adt["labka"]["availability"]["24h"] == 1.0
    assert adt["archive"]["availability"] == {"1h": 0.0, "24h": 0.0, "30d": 0.0}
    # Never 100 % without data, and no invented last probe.
    (batch,) = flows["night-batch"]["destinations"]
    assert batch["availability"] == {"1h": None, "24h": None, "30d": None}
    assert batch["last_probe"] is None
    # Maintenance: the window is named; its results are left out of availability.
    patch = flows["gs-patch"]
    assert patch["maintenance"]["name"] == "patching"
    assert patch["destinations"][0]["last_probe"]["maintenance"] is True
    assert patch["destinations"][0]["availability"]["1h"] is None


# --- GET /api/v1/flows/{flow}/results ------------------------------------------------------


@module_loop
async def test_results_cursor_walks_every_row_once_in_order(daemon: Daemon) -> None:
    async def enough() -> bool:
        return len(await _stored(daemon, datetime.now(UTC) - timedelta(seconds=2.5))) >= 15

    await wait_for(enough, limit=15)
    # A range in which every probe has all its results (on a busy machine, 2.5 s after a
    # slot some may still be open).
    end = datetime.now(UTC) - timedelta(seconds=2.5)
    start = end - timedelta(minutes=10)
    await wait_for(lambda: _complete(daemon, start, end), limit=30)
    params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "limit": 7}
    seen: list[tuple[str, str, str]] = []
    pages = 0
    while True:
        page = await _get(daemon, "/api/v1/flows/gs-adt/results", **params)
        pages += 1
        assert len(page["results"]) <= 7
        seen += [(r["slot"], r["probe_id"], r["destination"]) for r in page["results"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    stored = await _stored(daemon, end, start=start)
    keys = [(datetime.fromisoformat(s), p, d) for s, p, d in seen]
    assert keys == sorted(keys), "not in (slot, probe_id, destination) order"
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert {(p, d) for _, p, d in seen} == stored
    assert pages == -(-len(stored) // 7)  # no empty page at the end


async def _complete(daemon: Daemon, start: datetime, end: datetime) -> bool:
    """Every gs-adt probe with a slot in [start, end) has a result for each destination."""
    (flow,) = [f for f in daemon.flows if f.name == "gs-adt"]
    engine = create_engine(daemon.config.store.url)
    try:
        async with engine.connect() as conn:
            query = select(probes.c.probe_id).where(
                probes.c.flow == "gs-adt", probes.c.slot_at >= start, probes.c.slot_at < end
            )
            ids = {r.probe_id for r in await conn.execute(query)}
    finally:
        await engine.dispose()
    stored = await _stored(daemon, end, start=start)
    return {(p, d.name) for p in ids for d in flow.destinations} <= stored


async def _stored(
    daemon: Daemon, end: datetime, *, start: datetime | None = None
) -> set[tuple[str, str]]:
    """(probe_id, destination) of the gs-adt results stored with a slot in [start, end)."""
    start = start or end - timedelta(minutes=10)
    engine = create_engine(daemon.config.store.url)
    try:
        async with engine.connect() as conn:
            query = select(results.c.probe_id, results.c.destination).where(
                results.c.flow == "gs-adt", results.c.slot_at >= start, results.c.slot_at < end
            )
            return {(r.probe_id, r.destination) for r in await conn.execute(query)}
    finally:
        await engine.dispose()


@module_loop
async def test_results_filter_by_destination(daemon: Daemon) -> None:
    page = await _get(daemon, "/api/v1/flows/gs-adt/results", destination="archive", limit=5)
    assert page["results"]
    assert {r["outcome"] for r in page["results"]} == {"observe_error"}
    assert {r["destination"] for r in page["results"]} == {"archive"}


_LONG_AGO = "2026-01-01T00:00:00+00:00"


@module_loop
@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        pytest.param("/api/v1/flows/nope/results", {}, 404, "no flow named 'nope'", id="flow"),
        pytest.param("/api/v1/nothing", {}, 404, "Not Found", id="unknown-path"),
        pytest.param("/api/v1/flows/gs-adt/results", {"from": "yesterday"}, 422,
                     "from is not an ISO 8601 time", id="unparsable"),
        pytest.param("/api/v1/flows/gs-adt/results", {"to": "2026-10-01T00:00:00"}, 422,
                     "to needs a UTC offset", id="naive"),
        pytest.param("/api/v1/flows/gs-adt/results",
                     {"from": "2026-10-02T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, 422,
                     "from must not be after to", id="reversed"),
        pytest.param("/api/v1/flows/gs-adt/results",
                     {"from": _LONG_AGO, "to": "2026-02-01T00:00:01+00:00"}, 422,
                     "at most 31 days", id="too-long"),
        pytest.param("/api/v1/flows/gs-adt/results", {"from": "0001-01-01T00:00:00+01:00"}, 422,
                     "out of range", id="overflow"),
        pytest.param("/api/v1/flows/gs-adt/results", {"limit": "0"}, 422,
                     "limit must be an integer from 1 to 1000", id="limit-0"),
        pytest.param("/api/v1/flows/gs-adt/results", {"limit": "1001"}, 422,
                     "limit must be", id="limit-1001"),
        pytest.param("/api/v1/flows/gs-adt/results", {"limit": "ten"}, 422,
                     "limit must be", id="limit-text"),
        pytest.param("/api/v1/flows/gs-adt/results", {"cursor": "bm9wZQ"}, 422,
                     "invalid cursor", id="cursor"),
        pytest.param("/api/v1/flows/gs-adt/results", {"destination": "x"}, 422,
                     "flow 'gs-adt' has no destination 'x'", id="destination"),
        pytest.param("/api/v1/reports/monthly/2026-13", {}, 400, "YYYY-MM", id="month"),
    ],
)  # fmt: skip
async def test_errors_are_json_with_a_clear_message(
    daemon: Daemon, path: str, params: dict[str, str], status: int, message: str
) -> None:
    response = await _request(daemon, "GET", path, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert message in body["error"]


@module_loop
async def test_an_unencoded_plus_in_the_offset_is_understood(daemon: Daemon) -> None:
    response = await _request(
        daemon,
        "GET",
        "/api/v1/flows/gs-adt/results?from=2026-10-01T00:00:00+02:00&to=2026-10-02T00:00:00+02:00",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2026-09-30T22:00:00+00:00", "2026-10-01T22:00:00+00:00")


# --- POST /api/v1/flows/{flow}/run -----------------------------------------------------------


@module_loop
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="empty"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer"),
    ],
)
async def test_run_rejects_a_missing_or_wrong_token(
    daemon: Daemon, headers: dict[str, str]
) -> None:
    response = await _request(daemon, "POST", "/api/v1/flows/labka-api/run", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert set(response.json()) == {"error"}


@module_loop
async def test_run_probes_now_and_stores_the_results(
    daemon: Daemon, capfd: pytest.CaptureFixture[str]
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = await _request(daemon, "POST", "/api/v1/flows/gs-adt/run", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    outcomes = {r["destination"]: r["outcome"] for r in body["results"]}
    assert outcomes == {"labka": "delivered", "epm3": "late", "archive": "observe_error"}
    (probe_id,) = {r["probe_id"] for r in body["results"]}
    assert body["slot"] == body["results"][0]["slot"]

    async def stored() -> bool:
        _, rows = await fetch_rows(daemon.config.store.url)
        return len([r for r in rows if r.probe_id == probe_id]) == 3

    await wait_for(stored, limit=5)
    missing = await _request(daemon, "POST", "/api/v1/flows/nope/run", headers=auth)
    assert missing.status_code == 404
    wrong_method = await _request(daemon, "GET", "/api/v1/flows/gs-adt/run", headers=auth)
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    assert TOKEN not in "".join(capfd.readouterr())


@module_loop
async def test_run_twice_at_once_is_a_conflict(daemon: Daemon) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first, second = await asyncio.gather(
        _request(daemon, "POST", "/api/v1/flows/gs-adt/run", headers=auth),
        _request(daemon, "POST", "/api/v1/flows/gs-adt/run", headers=auth),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]


async def test_run_is_disabled_without_a_configured_token(tmp_path: Path) -> None:
    async with simulator(SIM) as sim:
        config = _config(tmp_path, sim, token=None)
        async with running(write_config(tmp_path, config)) as d:
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                response = await _request(d, "POST", "/api/v1/flows/labka-api/run", headers=headers)
                assert response.status_code == 403
                assert "server.api_token" in response.json()["error"]


# --- the OpenAPI document, checked against the live daemon ---------------------------------


@module_loop
@pytest.mark.slow
async def test_openapi_document_matches_what_is_served(fuzzed: Daemon) -> None:
    assert fuzzed.server is not None
    document = await _get(fuzzed, "/api/v1/openapi.json")
    assert document["openapi"].startswith("3.")
    parameters = document["paths"]["/api/v1/flows/{flow}/results"]["get"]["parameters"]
    assert parameters[0]["schema"]["enum"] == list(EXPECTED)
    limit = parameters[3]["schema"]
    assert (limit["maximum"], limit["default"]) == (MAX_LIMIT, DEFAULT_LIMIT)
    # The schemas are the models' own, as generated: every key of the report is required.
    assert document["components"]["schemas"] == schemas()
    report = document["components"]["schemas"]["ReportRow"]
    assert report["required"] == list(report["properties"])
    assert report["additionalProperties"] is False
    calls = await asyncio.to_thread(_schemathesis, document, fuzzed.server.url)
    assert calls >= 40, calls


@module_loop
async def test_schemathesis_fails_an_answer_the_document_does_not_describe(
    daemon: Daemon,
) -> None:
    """The run above can fail: once the document says ``timezone`` is an integer, the live
    answer of ``GET /api/v1/flows`` (a string) violates it, and schemathesis says so."""
    from schemathesis.openapi.checks import JsonSchemaError

    assert daemon.server is not None
    document = await _get(daemon, "/api/v1/openapi.json")
    document["components"]["schemas"]["FlowList"]["properties"]["timezone"] = {"type": "integer"}
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.to_thread(_schemathesis, document, daemon.server.url, only="listFlows")
    assert caught.value.subgroup(lambda e: isinstance(e, JsonSchemaError)) is not None


def _schemathesis(document: dict[str, Any], base_url: str, *, only: str | None = None) -> int:
    """Positive and negative examples for every operation (or the one named `only`), and the
    report of this month, which has data; returns how many calls were made.

    It runs in a thread: schemathesis calls the daemon with blocking requests, and the
    daemon serves from the test's event loop.
    """
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import checks

    schema = schemathesis.openapi.from_dict(document)
    wanted = [
        checks.not_a_server_error,
        checks.response_schema_conformance,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.negative_data_rejection,
    ]
    calls = 0
    for found in schema.get_all_operations():
        operation = found.ok()
        if only is not None and operation.definition.raw.get("operationId") != only:
            continue
        if _streams(operation.definition.raw):  # an event stream never ends: no answer to check
            continue
        if operation.definition.raw.get("operationId") == "monthlyReport":
            case = operation.Case(path_parameters={"month": f"{datetime.now(UTC):%Y-%m}"})
            response = case.call(base_url=base_url, timeout=30)
            calls += 1
            case.validate_response(response, checks=[*wanted, checks.positive_data_acceptance])
        # What the schema allows, the server accepts. Not for the results: a cursor is
        # an opaque token, and from/to are related (the 422 says so), which JSON Schema
        # cannot express.
        exact = operation.definition.raw.get("operationId") != "listResults"
        these = [*wanted, checks.positive_data_acceptance] if exact else wanted
        modes = [schemathesis.GenerationMode.POSITIVE]
        if any(True for _ in operation.iter_parameters()):  # nothing to get wrong otherwise
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                nonlocal calls
                response = case.call(
                    base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
                )
                calls += 1
                case.validate_response(response, checks=these)  # noqa: B023 (called at once)

            call()
    return calls


def _streams(operation: dict[str, Any]) -> bool:
    """Whether the operation's success is an endless ``text/event-stream`` (`probe.web.live`,
    tested in tests/test_status_live.py), which a request-and-answer check cannot judge."""
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    return list(content) == ["text/event-stream"]
