"""The HTTP transport against real servers: TLS, limits and the runner's scheduling rules."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme

from probe.config import HttpSource
from probe.errors import ConnectError
from probe.logs import REDACTED, Redactor
from probe.model import ProbeMessage, new_probe_id
from probe.transports import Resources
from probe.transports.http import HttpProbeSource
from tests.helpers import running, simulator, wait_for, write_config

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
