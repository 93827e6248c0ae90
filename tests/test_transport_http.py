"""The HTTP transport against real servers: TLS, limits and the runner's scheduling rules."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme

from probe.config.models import HttpSource
from probe.errors import CheckFailed, ConnectError, TransportTimeout
from probe.logs import REDACTED, Redactor
from probe.model import ProbeMessage, new_probe_id
from probe.transports import Resources
from probe.transports.http.spec import HttpDestination
from probe.transports.http.transport import HttpPollObserver, HttpProbeSource
from tests.helpers import closed_port, running, simulator, wait_for, write_config

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@asynccontextmanager
async def https_server(cert: trustme.LeafCert) -> AsyncIterator[int]:
    """A minimal HTTPS server on loopback that answers every request with 200."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _message() -> ProbeMessage:
    return ProbeMessage(probe_id=new_probe_id(), flow="tls", slot=NOW, sent_at=NOW)


async def _send(port: int, tls: dict[str, object]) -> str:
    config = HttpSource(type="http", url=f"https://127.0.0.1:{port}/health", tls=tls)  # type: ignore[arg-type]
    clients = Resources()
    try:
        receipt = await HttpProbeSource(config, clients).send(_message())
    finally:
        await clients.aclose()
    return receipt.detail


async def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with https_server(cert) as port:
        with pytest.raises(ConnectError) as caught:
            await _send(port, {})
        assert caught.value.reason == "tls"
        assert await _send(port, {"ca_file": str(ca_file)}) == "HTTP 200"
        assert await _send(port, {"verify": False}) == "HTTP 200"


async def test_max_in_flight_skips_slots_instead_of_piling_up(tmp_path: Path) -> None:
    stall = {"mode": "stall", "stall": "30s", "start": 0, "duration": "1h"}
    async with simulator({"engine": {"outages": [stall]}}) as sim:
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"},
            "server": {"listen": "127.0.0.1:0"},
            "shutdown_grace": "100ms",
            "flows": [{
                "name": "stuck", "interval": "100ms", "timeout": "20s", "max_in_flight": 2,
                "source": {"type": "http", "method": "POST",
                           "url": sim.url("engine") + "/gs/events",
                           "body": '{"probe_id": "${probe_id}"}'},
            }],
        }  # fmt: skip
        async with running(write_config(tmp_path, config)) as daemon:
            assert daemon.server is not None
            url = daemon.server.url + "/metrics"

            async def skipped_some() -> bool:
                async with httpx.AsyncClient() as client:
                    text = (await client.get(url)).text
                series = 'probe_slots_skipped_total{flow="stuck",reason="max_in_flight"} '
                values = [float(line.split()[-1]) for line in text.splitlines()
                          if line.startswith(series)]  # fmt: skip
                return bool(values) and values[0] >= 3

            await wait_for(skipped_some, limit=10, every=0.05)
            async with httpx.AsyncClient() as client:
                text = (await client.get(url)).text
            assert 'probe_in_flight{flow="stuck"} 2.0' in text
            assert daemon.scheduler is not None
            assert len(daemon.scheduler.in_flight()) == 2


def test_redactor_replaces_every_secret_longest_first() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    event = {"event": "x", "header": "Bearer abcdef", "other": "abc-abc", "n": 3}
    assert redactor(None, "info", event) == {
        "event": "x",
        "header": f"Bearer {REDACTED}",
        "other": f"{REDACTED}-{REDACTED}",
        "n": 3,
    }


# --- the source and observer against a real loopback server ------------------------------


class Server:
    """A tiny HTTP/1.1 server on loopback: it records each request and sends back the
    reply ``answer`` makes (raw bytes; None: never answer), keeping connections open."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    await asyncio.sleep(3600)  # a server that never answers: the case under test
                    return
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


def _reply(status: int, body: bytes = b"ok", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _chunked_gzip(text: str) -> bytes:
    body = gzip.compress(text.encode())
    chunks = b"".join(
        f"{len(part):X}\r\n".encode() + part + b"\r\n"
        for part in (body[:7], body[7:])
    ) + b"0\r\n\r\n"  # fmt: skip
    head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
    return head.encode() + chunks


async def test_a_plain_check_sends_the_same_request_every_time() -> None:
    async with Server(lambda _: _reply(200)) as server:
        config = HttpSource(type="http", url=server.url("/health?x=1"), headers={"X-Key": "k"})
        clients = Resources()
        try:
            source = HttpProbeSource(config, clients)
            details = [(await source.send(_message())).detail for _ in range(3)]
        finally:
            await clients.aclose()
    assert details == ["HTTP 200"] * 3
    assert len(server.requests) == 3
    for request in server.requests:
        assert request.startswith(b"GET /health?x=1 HTTP/1.1\r\n")
        assert b"\r\nx-key: k\r\n" in request.lower()


async def test_a_templated_request_carries_each_probe_id() -> None:
    async with Server(lambda _: _reply(202)) as server:
        config = HttpSource(
            type="http",
            method="POST",
            url=server.url("/events/${probe_id}"),
            headers={"X-Probe": "${probe_id}"},
            body='{"probe_id": "${probe_id}", "flow": "${flow}"}',
            expect_status=[202],
        )
        clients = Resources()
        try:
            source = HttpProbeSource(config, clients)
            probes = [_message(), _message()]
            for probe in probes:
                assert (await source.send(probe)).detail == "HTTP 202"
        finally:
            await clients.aclose()
    for probe, request in zip(probes, server.requests, strict=True):
        pid = probe.probe_id.encode()
        assert request.startswith(b"POST /events/" + pid + b" HTTP/1.1\r\n")
        assert b"\r\nx-probe: " + pid.lower() + b"\r\n" in request.lower()
        assert request.endswith(b'{"probe_id": "' + pid + b'", "flow": "tls"}')


@pytest.mark.parametrize(
    ("status", "reason"),
    [pytest.param(503, "http_5xx", id="5xx"), pytest.param(404, "unexpected_status", id="404")],
)
async def test_a_bad_status_fails_the_check(status: int, reason: str) -> None:
    async with Server(lambda _: _reply(status)) as server:
        clients = Resources()
        try:
            source = HttpProbeSource(HttpSource(type="http", url=server.url("/")), clients)
            with pytest.raises(CheckFailed) as caught:
                await source.send(_message())
        finally:
            await clients.aclose()
    assert caught.value.reason == reason


async def test_a_refused_connection_is_a_connect_error() -> None:
    clients = Resources()
    try:
        config = HttpSource(type="http", url=f"http://127.0.0.1:{closed_port()}/")
        with pytest.raises(ConnectError):
            await HttpProbeSource(config, clients).send(_message())
    finally:
        await clients.aclose()


def _observer(url: str, clients: Resources, **match: str) -> HttpPollObserver:
    config = HttpDestination.model_validate(
        {"name": "labka", "type": "http", "url": url, "match": match or {"regex": "${probe_id}"}}
    )
    return HttpPollObserver(config, clients, poll=0.05)


async def test_a_gzipped_chunked_reply_is_decoded_and_matched() -> None:
    probe = _message()
    document = f'{{"events": [{{"probe_id": "{probe.probe_id}"}}]}}'
    async with Server(lambda _: _chunked_gzip(document)) as server:
        clients = Resources()
        try:
            observer = _observer(server.url("/seen"), clients, jsonpath="$.events[*].probe_id")
            loop = asyncio.get_running_loop()
            sighting = await observer.expect(probe, loop.time() + 10)
        finally:
            await clients.aclose()
    assert sighting is not None
    assert sighting.count == 1


async def test_a_destination_that_never_answers_is_a_timeout() -> None:
    async with Server(lambda _: None) as server:
        clients = Resources()
        try:
            observer = _observer(server.url("/seen"), clients)
            with pytest.raises(TransportTimeout):
                await observer.expect(_message(), time.monotonic() + 0.2)
        finally:
            await clients.aclose()
