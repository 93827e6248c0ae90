"""The HTTP client every HTTP source and observer shares, and its one error mapping.

    client = http_client(resources, verify=True, ca_file=None)
    with map_http_errors(target_of(url)):
        response = await client.get(url)

Only ``scheme://host:port`` (`target_of`) ever appears in an error: paths and queries may
carry tokens.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from probe.errors import ConnectError, ProtocolError, TransportError, TransportTimeout
from probe.transports.base import Resources


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


def target_of(url: str) -> str:
    """``scheme://host:port`` only: paths and queries may carry tokens, which never get logged."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}".rstrip(":")


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
