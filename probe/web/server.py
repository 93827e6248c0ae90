"""The daemon's one HTTP server: ``/metrics``, ``/healthz``, ``/readyz``, the JSON API under
``/api/v1`` (`probe.web.api`), ``POST /-/reload`` and the status page at ``/``
(`probe.web.status_page`).

It is served by `probe.web.listener.Listener`. Every error is JSON, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from probe.config.reload import FlowChanges, ReloadRefused
from probe.errors import ConfigError, StartupError, StoreError
from probe.web import status_page
from probe.web.api import Api, ApiError, authorize, error_response
from probe.web.feeds import Feeds
from probe.web.notices_api import NoticesApi

MonthlyReport = Callable[[str], Awaitable[dict[str, Any]]]
Reload = Callable[[], Awaitable[FlowChanges]]


def make_app(
    *,
    exposition: Callable[[], Iterator[bytes]],
    readiness: Callable[[], Awaitable[dict[str, bool]]],
    monthly_report: MonthlyReport | None = None,
    api: Api | None = None,
    reload: Reload | None = None,
    api_token: Callable[[], str | None] = lambda: None,
    readiness_problems: Callable[[], list[str]] = list,
) -> Starlette:
    """``exposition`` renders the metrics, in chunks; ``readiness`` names each check and
    whether it passed; ``monthly_report`` builds the report JSON for ``YYYY-MM`` (a
    `ValueError` for a bad month); ``api`` serves ``/api/v1`` and the status page;
    ``reload`` reloads the config for ``POST /-/reload``, which needs the bearer token
    ``api_token()`` (read at each request, as a reload may change it) and answers 403
    without one. ``readiness_problems`` says why a failed check failed, for ``/readyz``.
    """
    ops = _Operations(exposition, readiness, readiness_problems, api_token)
    routes = [
        Route("/metrics", ops.metrics),
        Route("/healthz", ops.healthz),
        Route("/readyz", ops.readyz),
    ]
    if monthly_report is not None:
        routes.append(Route("/api/v1/reports/monthly/{month}", _report_endpoint(monthly_report)))
    if reload is not None:
        routes.append(Route("/-/reload", ops.reload_endpoint(reload), methods=["POST"]))
    if api is not None:
        routes.extend(api.routes())
        routes.extend(NoticesApi(api).routes())  # /api/v1/incidents
        routes.extend(Feeds(api).routes())  # /feed.atom, /maintenance.ics
        routes.extend(status_page.routes(api))  # /, /history, /report/{month}, /api/v1/events
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Operations:
    """The endpoints for operators and scrapers: metrics, health, readiness, reload."""

    exposition: Callable[[], Iterator[bytes]]
    readiness: Callable[[], Awaitable[dict[str, bool]]]
    readiness_problems: Callable[[], list[str]]
    api_token: Callable[[], str | None]

    async def metrics(self, _: Request) -> Response:
        return StreamingResponse(_yielding(self.exposition()), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _: Request) -> Response:
        checks = await self.readiness()
        ready = all(checks.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
        if problems := self.readiness_problems():
            body["problems"] = problems
        return JSONResponse(body, status_code=200 if ready else 503)

    def reload_endpoint(self, reload: Reload) -> Endpoint:
        """``POST /-/reload``: 403 without a configured token, 401 without the right one."""

        async def reload_config(request: Request) -> Response:
            token = self.api_token()
            if token is None:
                message = "reloading through the API is disabled: set server.api_token to enable"
                return error_response(403, message)
            try:
                authorize(request.headers.get("authorization"), token)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            return await _reloaded(reload)

        return reload_config


async def _reloaded(reload: Reload) -> Response:
    """Reload, and answer with what changed or why the running config was kept."""
    try:
        changes = await reload()
    except (ConfigError, StartupError) as exc:  # the running config is kept
        return error_response(422, f"config not reloaded: {exc}")
    except ReloadRefused as exc:
        return error_response(503, f"config not reloaded: {exc}")
    except Exception:  # logged by the daemon, which keeps the running config
        return error_response(500, "config not reloaded: internal error (see the log)")
    return JSONResponse({"status": "ok", **changes.summary()})


def _report_endpoint(monthly_report: MonthlyReport) -> Endpoint:
    """``GET /api/v1/reports/monthly/{month}``: 400 for a bad month, 503 without the store."""

    async def report(request: Request) -> Response:
        month = request.path_params["month"]
        try:
            body = await monthly_report(month)
        except (ValueError, OverflowError) as exc:  # overflow: a month near year 1 or 9999
            return JSONResponse({"error": str(exc)}, status_code=400)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(body)

    return report


async def _http_error(_: Request, exc: Exception) -> Response:
    """Routing errors (404, 405) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _server_error(_: Request, exc: Exception) -> Response:
    """A bug: a JSON 500 without details (the server logs the traceback)."""
    return error_response(500, "internal error")


async def _yielding(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Send each chunk as it is made, and let the probes run between chunks: a scrape of
    5,000 flows is about 35 MB of text, which need not exist all at once."""
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)
