"""The JSON API under ``/api/v1``, described by ``/api/v1/openapi.json`` (`probe.web.openapi`).

- ``GET /api/v1/flows``: each flow and destination with its state (`probe.web.status`), newest
  result and availability over 1h, 24h and 30d.
- ``GET /api/v1/flows/{flow}/results``: stored results in a time range, paged by cursor.
- ``POST /api/v1/flows/{flow}/run``: probe a flow now, with ``Authorization: Bearer
  <server.api_token>``; without a configured token the endpoint answers 403.

Every answer is a model of `probe.web.models`, dumped (`model_response`), and every error is
``{"error": "..."}`` with a 4xx or 5xx status. The token is compared in constant time and
never logged, echoed or stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from probe.config.models import Config, FlowSpec
from probe.config.windows import Calendar
from probe.errors import StoreError
from probe.model import Result, utcnow
from probe.store.queries import results_page
from probe.web import models
from probe.web.openapi import openapi_document
from probe.web.status import DestinationStatus, FlowStatus, Recent, Snapshot, Window, snapshot

MAX_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(hours=24)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The status page refreshes every 30 s for every open browser; a short cache keeps many
# viewers from costing a store query each.
SNAPSHOT_TTL = 2.0

RunNow = Callable[[FlowSpec], Awaitable[list[Result] | None]]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the API needs from the daemon. ``run_now`` probes a flow at slot = now."""

    engine: AsyncEngine
    config: Config
    flows: Sequence[FlowSpec]
    calendar: Calendar
    run_now: RunNow


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The one error shape of the API."""
    return model_response(models.Error(error=message), status=status, headers=headers)


def model_response(
    model: BaseModel, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`model` as JSON: its ``model_dump(mode="json")``, which its OpenAPI schema describes."""
    return JSONResponse(model.model_dump(mode="json"), status_code=status, headers=headers)


@dataclass(slots=True)
class Api:
    """The API's endpoints over one `ApiContext`; `routes` mounts them."""

    context: ApiContext
    _cached: tuple[float, Snapshot] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _running: set[str] = field(default_factory=set)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.context.config.timezone)

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/openapi.json", self._guard(self.openapi)),
            Route("/api/v1/flows", self._guard(self.flows)),
            Route("/api/v1/flows/{flow}/results", self._guard(self.results)),
            Route("/api/v1/flows/{flow}/run", self._guard(self.run), methods=["POST"]),
        ]

    async def snapshot(self) -> Snapshot:
        """The status of every flow, at most `SNAPSHOT_TTL` seconds old."""
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < SNAPSHOT_TTL:
                return self._cached[1]
            ctx = self.context
            try:
                found = await snapshot(ctx.engine, ctx.flows, ctx.calendar)
            except SQLAlchemyError as exc:
                raise StoreError(f"store unreachable: {type(exc).__name__}") from exc
            self._cached = (time.monotonic(), found)
            return found

    @staticmethod
    def _guard(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """Turn `ApiError` and store failures into the JSON error shape."""

        async def guarded(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            except StoreError as exc:
                return error_response(503, str(exc))
            except SQLAlchemyError as exc:
                return error_response(503, f"store unreachable: {type(exc).__name__}")

        return guarded

    async def openapi(self, _: Request) -> Response:
        names = [flow.name for flow in self.context.flows]
        return JSONResponse(openapi_document(names))

    async def flows(self, _: Request) -> Response:
        found = await self.snapshot()
        return model_response(
            models.FlowList(
                generated_at=self._iso(found.generated_at),
                timezone=self.context.config.timezone,
                flows=tuple(self._flow_model(flow) for flow in found.flows),
            )
        )

    async def results(self, request: Request) -> Response:
        flow = self._flow(request)
        query = parse_query(request.query_params, flow, now=utcnow())
        async with self.context.engine.connect() as conn:
            page = await results_page(
                conn, flow.name, start=query.start, end=query.end, limit=query.limit,
                destination=query.destination, after=query.after,
            )  # fmt: skip
        last = page.results[-1] if page.more else None
        return model_response(
            models.ResultPage(
                flow=flow.name,
                start=self._iso(query.start),
                end=self._iso(query.end),
                results=tuple(self._result_model(r) for r in page.results),
                next=None
                if last is None
                else encode_cursor(last.slot, last.probe_id, last.destination),
            )
        )

    async def run(self, request: Request) -> Response:
        token = self.context.config.server.api_token
        if token is None:
            raise ApiError(
                403, "running probes through the API is disabled: set server.api_token to enable"
            )
        authorize(request.headers.get("authorization"), token)
        flow = self._flow(request)
        if flow.name in self._running:
            raise ApiError(409, f"a run of {flow.name!r} is already in progress")
        self._running.add(flow.name)
        try:
            found = await self.context.run_now(flow)
        finally:
            self._running.discard(flow.name)
        if not found:
            raise ApiError(503, "the probe could not be stored, so it was not sent; try again")
        self._cached = None  # the next status shows this run
        return model_response(
            models.RunResult(
                flow=flow.name,
                slot=self._iso(found[0].slot),
                results=tuple(self._result_model(r) for r in found),
            )
        )

    def _flow(self, request: Request) -> FlowSpec:
        name = request.path_params["flow"]
        for flow in self.context.flows:
            if flow.name == name:
                return flow
        raise ApiError(404, f"no flow named {name!r}")

    def _iso(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).isoformat()

    def _window_model(self, window: Window | None) -> models.Window | None:
        if window is None:
            return None
        return models.Window(
            name=window.name, start=self._iso(window.start), end=self._iso(window.end)
        )

    def _flow_model(self, flow: FlowStatus) -> models.Flow:
        return models.Flow(
            name=flow.name,
            description=flow.description,
            state=flow.state,
            maintenance=self._window_model(flow.maintenance),
            next_maintenance=self._window_model(flow.next_maintenance),
            destinations=tuple(self._destination_model(d) for d in flow.destinations),
        )

    def _destination_model(self, dest: DestinationStatus) -> models.Destination:
        return models.Destination(
            name=dest.name,
            state=dest.state,
            last_probe=None if dest.last is None else self._last_model(dest.last),
            down_since=None if dest.down_since is None else self._iso(dest.down_since),
            availability=models.Availability.model_validate(dest.availability),
            slo=models.DestinationSlo(
                objective=dest.slo_objective, latency_seconds=dest.slo_latency
            ),
        )

    def _last_model(self, last: Recent) -> models.LastProbe:
        return models.LastProbe(
            probe_id=last.probe_id,
            slot=self._iso(last.slot),
            outcome=last.outcome,
            latency_seconds=last.latency,
            reason=last.reason,
            maintenance=last.maintenance,
            resolved_at=self._iso(last.resolved_at),
        )

    def _result_model(self, result: Result) -> models.StoredResult:
        return models.StoredResult(
            probe_id=result.probe_id,
            destination=result.destination,
            slot=self._iso(result.slot),
            outcome=result.outcome,
            latency_seconds=result.latency,
            latency_clock=result.latency_clock,
            duplicates=result.duplicates,
            reason=result.reason,
            mismatch=result.mismatch,
            maintenance=result.maintenance,
            resolved_at=self._iso(result.resolved_at),
        )


def authorize(header: str | None, token: str) -> None:
    """Accept ``Bearer <token>``; anything else is a 401 that does not say what was wrong."""
    challenge = {"WWW-Authenticate": 'Bearer realm="dataflow-probe"'}
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "authorization required: Bearer token", headers=challenge)
    # Header values arrive decoded as latin-1: compare the bytes that were sent.
    if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode()):
        raise ApiError(401, "invalid token", headers=challenge)


@dataclass(frozen=True, slots=True)
class ResultsQuery:
    """A validated ``results`` query: the range [start, end), page size and position."""

    start: datetime
    end: datetime
    limit: int
    destination: str | None
    after: tuple[datetime, str, str] | None


def parse_query(params: Mapping[str, str], flow: FlowSpec, *, now: datetime) -> ResultsQuery:
    """The query parameters of ``results``, or an `ApiError` 422 that says what is wrong."""
    try:
        end = _time(params, "to") or now
        start = _time(params, "from") or end - DEFAULT_RANGE
    except OverflowError:
        raise ApiError(422, "time out of range") from None
    if start > end:
        raise ApiError(422, "from must not be after to")
    if end - start > MAX_RANGE:
        raise ApiError(422, f"the range from..to may span at most {MAX_RANGE.days} days")
    text = params.get("limit", str(DEFAULT_LIMIT))
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(422, f"limit must be an integer from 1 to {MAX_LIMIT}")
    destination = params.get("destination")
    names = {d.name for d in flow.destinations} if flow.destinations else {""}
    if destination is not None and destination not in names:
        raise ApiError(422, f"flow {flow.name!r} has no destination {destination!r}")
    cursor = params.get("cursor")
    after = None if cursor is None else decode_cursor(cursor)
    return ResultsQuery(start, end, int(text), destination, after)


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    text = params.get(name)
    if text is None:
        return None
    # An unencoded "+02:00" in a URL arrives as " 02:00"; take it as meant.
    text = text.replace(" ", "+")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422, f"{name} is not an ISO 8601 time, e.g. 2026-10-01T00:00:00+02:00"
        ) from None
    if value.tzinfo is None:
        raise ApiError(422, f"{name} needs a UTC offset, e.g. 2026-10-01T00:00:00+02:00 or Z")
    return value.astimezone(UTC)


def encode_cursor(slot: datetime, probe_id: str, destination: str) -> str:
    """An opaque position: the sort key of the last row of a page."""
    raw = json.dumps([slot.astimezone(UTC).isoformat(), probe_id, destination])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """The position in a cursor from `encode_cursor`; `ApiError` 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        slot, probe_id, destination = json.loads(raw)
        moment = datetime.fromisoformat(slot)
        if moment.tzinfo is None or not isinstance(probe_id, str):
            raise ValueError("naive")
        if not isinstance(destination, str):
            raise ValueError("destination")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "invalid cursor: pass the next value of the previous page") from None
    return moment.astimezone(UTC), probe_id, destination
