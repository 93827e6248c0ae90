"""HTTP: a source that sends one request per probe, and an observer that polls a URL."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from probe.errors import (
    CheckFailed,
    ConnectError,
    ProtocolError,
    TransportError,
    TransportTimeout,
)
from probe.model import ProbeMessage, Receipt, Sighting, utcnow
from probe.transports.base import (
    OBSERVERS,
    SOURCES,
    Destination,
    Resources,
    fill,
    has_variables,
    poll_until,
)
from probe.transports.specs import HttpDestination, HttpSource


@contextmanager
def map_http_errors(target: str) -> Iterator[None]:
    """Translate httpx (and aiohttp, under httpx-aiohttp) errors into our tree, in one place.

    httpx-aiohttp maps every `aiohttp.ClientConnectionError`, refused connections included,
    to `httpx.ConnectTimeout`, so the aiohttp cause decides before the httpx class does.
    """
    try:
        yield
    except httpx.HTTPError as exc:
        raise _translate(exc, target) from exc
    except aiohttp.ClientError as exc:  # httpx-aiohttp lets some through untranslated
        raise ProtocolError(f"bad HTTP reply from {target}: {type(exc).__name__}") from exc


def _translate(exc: httpx.HTTPError, target: str) -> TransportError:
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientSSLError):
        return ConnectError(f"TLS failure with {target}: {cause}", reason="tls")
    if isinstance(cause, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError):
        return ConnectError(f"cannot connect to {target}: {cause}")
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return TransportTimeout(f"no reply from {target} in time")
    if isinstance(exc, httpx.TimeoutException) and cause is None:
        return TransportTimeout(f"no reply from {target} in time")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError):
        return ConnectError(f"cannot connect to {target}: {exc or type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return TransportTimeout(f"no reply from {target} in time")
    return ProtocolError(f"HTTP error from {target}: {exc or type(exc).__name__}")


def _target(url: str) -> str:
    """``scheme://host:port`` only: paths and queries may carry tokens, which never get logged."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}".rstrip(":")


class HttpProbeSource:
    """``source: {type: http, ...}``: one request per probe; a 5xx or unexpected status fails."""

    def __init__(self, config: HttpSource, resources: Resources) -> None:
        self.config = config
        self.client = http_client(resources, verify=config.tls.verify, ca_file=config.tls.ca_file)
        self.target = _target(config.url)
        # A request without per-probe values (a plain check) is prepared once.
        texts = [config.url, config.body or "", *config.headers.values()]
        self._fixed = not any(has_variables(text) for text in texts)
        self._url = httpx.URL(config.url) if self._fixed else None
        self._body = config.body.encode() if self._fixed and config.body is not None else None

    async def send(self, probe: ProbeMessage) -> Receipt:
        cfg = self.config
        if self._url is not None:
            url: httpx.URL | str = self._url
            body, headers = self._body, cfg.headers
        else:
            variables = probe.variables()
            url = fill(cfg.url, variables, url=True)
            body = fill(cfg.body, variables).encode() if cfg.body is not None else None
            headers = {name: fill(value, variables) for name, value in cfg.headers.items()}
        with map_http_errors(self.target):
            response = await self.client.request(cfg.method, url, content=body, headers=headers)
            await response.aread()
        status = response.status_code
        expected = cfg.expect_status
        if (expected is None and not 200 <= status < 300) or (expected and status not in expected):
            reason = "http_5xx" if status >= 500 else "unexpected_status"
            raise CheckFailed(f"{self.target} answered HTTP {status}", reason=reason)
        return Receipt(detail=f"HTTP {status}")

    async def aclose(self) -> None:
        """The client is shared and closed by its owner."""


class HttpPollObserver:
    """``destinations: [{type: http, ...}]``: polls until the probe id shows up."""

    def __init__(self, config: HttpDestination, resources: Resources, *, poll: float) -> None:
        self.config = config
        self.poll = poll
        self.client = http_client(resources, verify=config.tls.verify, ca_file=config.tls.ca_file)
        self.target = _target(config.url)
        # Both were checked when the config was loaded.
        path = config.match.jsonpath
        self.jsonpath = parse_jsonpath(path) if path is not None else None
        self.time_path = parse_jsonpath(config.time_field) if config.time_field else None

    async def start(self) -> None:
        """Nothing to bind: polling needs no listener."""

    async def aclose(self) -> None:
        """The client is shared and closed by its owner."""

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None:
        variables = probe.variables(self.config.name)
        url = fill(self.config.url, variables, url=True)
        headers = {name: fill(value, variables) for name, value in self.config.headers.items()}
        return await poll_until(
            lambda: self._poll_once(url, headers, probe, deadline),
            every=self.poll,
            deadline=deadline,
        )

    async def _poll_once(
        self, url: str, headers: dict[str, str], probe: ProbeMessage, deadline: float
    ) -> Sighting | None:
        # At least a short window even past the deadline: the final look must be real.
        timeout = max(deadline - time.monotonic(), min(self.poll, 1.0))
        with map_http_errors(self.target):
            response = await self.client.get(url, headers=headers, timeout=timeout)
            await response.aread()
        seen_mono = time.monotonic()
        seen_at = utcnow()
        status = response.status_code
        if status >= 400:
            reason = "http_5xx" if status >= 500 else "http_4xx"
            raise CheckFailed(f"{self.target} answered HTTP {status}", reason=reason)
        count, arrived_at = self._match(response, probe)
        if not count:
            return None
        return Sighting(
            probe_id=probe.probe_id,
            destination=self.config.name,
            seen_at=seen_at,
            seen_mono=seen_mono,
            count=count,
            arrived_at=arrived_at,
        )

    def _match(self, response: httpx.Response, probe: ProbeMessage) -> tuple[int, datetime | None]:
        probe_id = probe.probe_id
        if self.jsonpath is None:
            return len(re.findall(self._pattern(probe), response.text)), None
        try:
            document = json.loads(response.content)
        except ValueError:
            raise ProtocolError(f"{self.target} answered with invalid JSON") from None
        matches = [m for m in self.jsonpath.find(document) if m.value == probe_id]
        arrivals = [t for m in matches if (t := self._arrival(m)) is not None]
        return len(matches), min(arrivals) if arrivals else None

    def _pattern(self, probe: ProbeMessage) -> str:
        """The regex with ``${probe_id}`` (and the other template variables) escaped in."""
        assert self.config.match.regex is not None
        variables = probe.variables(self.config.name)
        return fill(self.config.match.regex, {k: re.escape(v) for k, v in variables.items()})

    def _arrival(self, match: Any) -> datetime | None:
        """The arrival time, read from the object that holds the matched probe id."""
        if self.time_path is None or match.context is None:
            return None
        found = self.time_path.find(match.context.value)
        return parse_time(found[0].value) if found else None


def parse_time(value: object) -> datetime | None:
    """ISO 8601 text (naive means UTC) or epoch seconds; anything else is ignored."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):  # beyond the platform's dates, or NaN
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


# An idle connection is dropped after 2 s, before common servers drop it (uvicorn, Apache
# and Node 5 s, nginx 75 s): reusing one the server closes in the same instant failed
# probes with "Server disconnected" (seen in the HA test, where each node's connections
# idle while the other node has the slots).
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2.0)


def http_client(resources: Resources, *, verify: bool, ca_file: str | None) -> httpx.AsyncClient:
    """The shared client for a TLS setting, on the aiohttp transport.

    The aiohttp transport keeps the httpx API at about a seventh of the CPU per request of
    httpx's default transport here (bench/RESULTS.md).
    """

    def make() -> httpx.AsyncClient:
        tls: bool | ssl.SSLContext = verify
        if verify and ca_file:
            tls = ssl.create_default_context(cafile=ca_file)
        return httpx.AsyncClient(
            transport=BufferedAiohttpTransport(verify=tls, limits=LIMITS),
            timeout=None,  # noqa: S113 - the runner owns every deadline
            follow_redirects=False,
        )

    return resources.shared(("http", verify, ca_file), make)


# What a request without a timeout of its own gets (the runner owns every deadline).
_NO_TIMEOUT = aiohttp.ClientTimeout(sock_connect=None, sock_read=None, connect=None)


class BufferedAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport (same session, connection pool, TLS and error mapping),
    which reads the whole body inside the one aiohttp request instead of handing httpx a
    stream to read chunk by chunk.

    Every probe and poll reads the whole body anyway; the stream's layers of async
    iterators were a fifth of the CPU of a check (bench/RESULTS.md, row 2).
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        wanted = request.extensions.get("timeout", {})
        timeout = _NO_TIMEOUT
        if any(wanted.get(key) is not None for key in ("connect", "read", "pool")):
            timeout = aiohttp.ClientTimeout(
                sock_connect=wanted.get("connect"),
                sock_read=wanted.get("read"),
                connect=wanted.get("pool"),
            )
        with map_aiohttp_exceptions():
            data: bytes | httpx.AsyncByteStream | None
            try:
                data = request.content or None
            except httpx.RequestNotRead:
                data = request.stream  # type: ignore[assignment]
                request.headers.pop("transfer-encoding", None)  # aiohttp does the chunking
            async with self.client.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as it does for its own transport
                compress=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            ) as response:
                body = await response.read()
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            content=body,
            request=request,
            extensions=extensions,
        )


def _observer(spec: Destination, resources: Resources) -> HttpPollObserver:
    assert isinstance(spec.config, HttpDestination)
    return HttpPollObserver(spec.config, resources, poll=spec.poll)


SOURCES["http"] = HttpProbeSource
OBSERVERS["http"] = _observer
