"""The listening side's sockets: the port, its TLS, and connections accepted under limits.

    acceptor = Acceptor(listen, max_connections=64, idle_timeout=300.0, stats=stats,
                        notes=notes, serve=responder.serve)
    port = await acceptor.start(host, 0, context=None)   # the port it got
    await acceptor.aclose()                              # every connection dropped

No peer can take the process's descriptors with it:

- the acceptor accepts connections itself, and resets those over ``max_connections`` at
  once, before any TLS handshake, so they hold no descriptor. All listeners together
  also stay under `FD_SHARE` of the process's RLIMIT_NOFILE, leaving the rest to
  ``/healthz``, the store and the spool.
- An accept that fails (EMFILE: out of descriptors) rests the port for `ACCEPT_RETRY`.
  asyncio's own accept loop would log a traceback at each try, many times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from probe.transports.mllp.spec import MllpServerTLS
from probe.transports.mllp.telemetry import ListenerStats, ThrottledLog, log

CLOSE_GRACE = 1.0  # a TLS peer may never answer our close_notify
_BACKLOG = 100  # connections the kernel queues, and taken per wake-up (as asyncio does)
ACCEPT_RETRY = 0.5  # how long a port rests after accept() failed (asyncio rests 1 s)
# All listeners' connections together stay under this share of the process's descriptors,
# whatever their max_connections: the rest is for /healthz, the store and the spool.
FD_SHARE = 0.75
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() resets the connection

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_context(tls: MllpServerTLS) -> ssl.SSLContext:
    """The listener side; with ``ca_file``, clients must show a certificate it signed."""
    assert tls.cert_file is not None  # checked when the config was loaded
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file:
        context.load_verify_locations(tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream politely, but never wait long for the peer to agree."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


@dataclass(slots=True)
class _Descriptors:
    """The connections of every listener in this process, against its descriptor limit."""

    taken: int = 0

    def available(self) -> bool:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft == resource.RLIM_INFINITY or self.taken < soft * FD_SHARE


_DESCRIPTORS = _Descriptors()


@dataclass(eq=False, slots=True)
class _Connection:
    sock: socket.socket
    handed_over: bool = False  # from here on asyncio's transport owns (and closes) the socket
    writer: asyncio.StreamWriter | None = None  # once the transport (and TLS) is up


class Acceptor:
    """One port's listening sockets, and a task running ``serve`` per accepted connection.

    Our own accept loop, not `asyncio.start_server`'s: that one logs a traceback for every
    failed accept (and, on Python 3.11, up to 100 a wake-up), and it accepts without a cap,
    holding each connection through its TLS handshake.
    """

    def __init__(
        self,
        listen: str,
        *,
        max_connections: int,
        idle_timeout: float,
        stats: ListenerStats,
        notes: ThrottledLog,
        serve: Serve,
    ) -> None:
        self.listen = listen
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.stats = stats
        self.notes = notes
        self.serve = serve
        self.closed = False
        self._sockets: list[socket.socket] = []  # listening
        self._context: ssl.SSLContext | None = None
        self._resting: dict[socket.socket, asyncio.TimerHandle] = {}  # after accept() failed
        self._handlers: dict[asyncio.Task[None], _Connection] = {}

    @property
    def running(self) -> bool:
        """Whether the port is accepting connections."""
        return bool(self._sockets)

    @property
    def open_connections(self) -> int:
        """Connections being served, TLS handshakes included."""
        return len(self._handlers)

    async def start(self, host: str, port: int, *, context: ssl.SSLContext | None) -> int:
        """Bind and accept; the port bound (``port`` 0: any free one). `OSError` if it cannot."""
        self._context = context
        self._sockets = await _bind(host, port)
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)
        port_bound: int = self._sockets[0].getsockname()[1]
        return port_bound

    async def aclose(self) -> None:
        """Stop listening and drop every connection; `serve` then sees `closed`."""
        self.closed = True
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        for timer in self._resting.values():
            timer.cancel()
        self._resting.clear()
        # An aborted connection ends its handler's read at once; one in its TLS
        # handshake ends when its socket is shut down; one not started sees `closed`.
        handlers = list(self._handlers)
        for connection in self._handlers.values():
            if connection.writer is not None:
                connection.writer.transport.abort()
            elif connection.handed_over:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=2 * CLOSE_GRACE)
            for task in stuck:
                task.cancel()

    def _accept(self, sock: socket.socket) -> None:
        """The port is readable: take what waits, serving each connection or resetting it."""
        for _ in range(_BACKLOG):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing left waiting
            except OSError as exc:
                self._rest(sock, exc)
                return
            if len(self._handlers) >= self.max_connections or not _DESCRIPTORS.available():
                self._turn_away(conn)
                continue
            conn.setblocking(False)
            connection = _Connection(conn)
            task = asyncio.create_task(self._connection(connection))
            self._handlers[task] = connection
            _DESCRIPTORS.taken += 1
            task.add_done_callback(self._connection_ended)

    def _turn_away(self, conn: socket.socket) -> None:
        """Over a limit: reset the connection at once, so that it holds no descriptor."""
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        conn.close()
        self.stats.refused += 1
        full = len(self._handlers) >= self.max_connections
        self.notes.note(
            "mllp_connection_refused",
            reason="max_connections" if full else "descriptors",
            max_connections=self.max_connections,
            open=len(self._handlers),
        )

    def _rest(self, sock: socket.socket, exc: OSError) -> None:
        """accept() failed (EMFILE, ENFILE, ENOBUFS ...): retrying at once would fail again
        and, as the port stays readable, spin. Rest the port instead."""
        self.stats.accept_errors += 1
        error = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self.notes.note("mllp_accept_failed", error=error, retry_s=ACCEPT_RETRY)
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        self._resting[sock] = loop.call_later(ACCEPT_RETRY, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        del self._resting[sock]
        if sock in self._sockets:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    async def _connection(self, connection: _Connection) -> None:
        if self.closed:
            return  # `_connection_ended` closes the socket
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        connection.handed_over = True
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection.sock,
                ssl=self._context,
                ssl_handshake_timeout=min(self.idle_timeout, 60.0) if self._context else None,
            )
        except OSError as exc:  # a failed or timed out TLS handshake, a peer already gone
            log.debug("mllp_handshake_failed", listen=self.listen, error=type(exc).__name__)
            return
        connection.writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self.serve(reader, connection.writer)

    def _connection_ended(self, task: asyncio.Task[None]) -> None:
        connection = self._handlers.pop(task)
        _DESCRIPTORS.taken -= 1
        if not connection.handed_over:
            connection.sock.close()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("mllp_connection_failed", listen=self.listen, exc_info=exc)


async def _bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host``, made as `asyncio.start_server` makes
    them: SO_REUSEADDR, IPv6 sockets IPv6-only, non-blocking."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"no address for {host!r}")
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
