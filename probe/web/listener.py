"""An HTTP listener: a uvicorn server on a socket we bind ourselves.

The daemon's API server and each site of the simulator use it.

Binding ourselves makes port 0 work and the real port known before anyone connects. The
port can stop listening and listen again (the `refuse` outage): while it is closed a bound
but not listening socket holds on to the port, so the kernel answers connection attempts
with a reset and nobody else can take the port in the meantime.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# uvicorn would otherwise wait forever for a request that is still being answered.
_GRACE_SECONDS = 2


class _QuietH11Protocol(H11Protocol):
    """uvicorn's h11 protocol without access log lines, for this server only."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.access_log = False


def bind_tcp(host: str, port: int, *, family: socket.AddressFamily) -> socket.socket:
    """A bound (not yet listening) TCP socket that may take a port just released."""
    # proto must be explicit: asyncio sets TCP_NODELAY on accepted connections only when
    # it is IPPROTO_TCP, and without it every keep-alive request waits ~40ms for Nagle.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # The port was ours a moment ago; its old connections may linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """A named HTTP listener that can be paused (port refuses) and resumed (same port)."""

    def __init__(self, name: str, app: ASGIApp, *, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._app = app
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._lock = asyncio.Lock()
        self._reserved: socket.socket | None = None
        self._listening: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started = False

    @property
    def url(self) -> str:
        """`http://host:port`, with the port actually bound."""
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether the port currently accepts connections."""
        return self._server is not None

    async def start(self, *, listening: bool = True) -> None:
        """Bind the port (learning it, if it was 0), and listen unless told not to yet."""
        async with self._lock:
            self._reserved = self._bind()
            self.port = self._reserved.getsockname()[1]
            self._started = True
            if listening:
                await self._listen()

    async def resume(self) -> None:
        """Listen again on the same port; no-op if listening."""
        async with self._lock:
            if self._server is None and self._started:
                await self._listen()

    async def pause(self) -> None:
        """Stop listening but keep the port; no-op if not listening or stopped."""
        async with self._lock:
            if self._server is not None:
                await self._shut_down()
                self._reserved = self._bind()

    async def stop(self) -> None:
        """Stop listening and release the port. Safe to call more than once."""
        async with self._lock:
            self._started = False
            if self._server is not None:
                await self._shut_down()
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None

    def _bind(self) -> socket.socket:
        return bind_tcp(self.host, self.port, family=self._family)

    async def _listen(self) -> None:
        # No reserved socket if rebinding failed when the port was closed; try again now.
        sock = self._reserved if self._reserved is not None else self._bind()
        self._reserved = None
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            # No log_config, log_level or access_log=False: each of them reconfigures the
            # process-wide uvicorn loggers, which the daemon's own API server shares.
            log_config=None,
            http=_QuietH11Protocol,
            ws="none",
            timeout_graceful_shutdown=_GRACE_SECONDS,
        )
        config.load()
        server = uvicorn.Server(config)
        # Not `server.serve()`: it swaps the process's SIGINT/SIGTERM handlers for its own
        # while it runs, which would steal the daemon's signals in `probe demo`.
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._listening, self._server = sock, server
        self._ticker = asyncio.create_task(server.main_loop(), name=f"http-{self.name}-tick")

    async def _shut_down(self) -> None:
        server, ticker, sock = self._server, self._ticker, self._listening
        assert server is not None
        assert ticker is not None
        assert sock is not None
        self._server = self._ticker = self._listening = None
        server.should_exit = True
        # shutdown() closes the listening socket before its first await: refusal is immediate.
        await server.shutdown(sockets=[sock])
        await ticker
