"""The daemon's one HTTP server: ``/metrics``, ``/healthz`` and ``/readyz``.

It is served by `probe.listener.Listener`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def make_app(
    *, exposition: Callable[[], bytes], readiness: Callable[[], Awaitable[dict[str, bool]]]
) -> Starlette:
    """``exposition`` renders the metrics; ``readiness`` names each check and whether it passed."""

    async def metrics(_: Request) -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
