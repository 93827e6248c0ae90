"""Helpers to run the real daemon and the real simulator on loopback inside a test."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import select
from sqlalchemy.engine import make_url

from probe.config.loader import LoadedConfig, load_config
from probe.engine.daemon import Daemon, wait_started
from probe.sim import Simulator, parse_sim_config
from probe.store import create_engine
from probe.store.migrate import upgrade
from probe.store.tables import probes, results


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "probe.yaml") -> LoadedConfig:
    path = tmp_path / name
    store = config.get("store")
    if isinstance(store, dict) and "spool_dir" not in store:
        # Not the default under the working directory: each test keeps its spool to itself.
        config = {**config, "store": {**store, "spool_dir": str(tmp_path / "spool")}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_config(path)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def simulator(config: dict[str, Any]) -> AsyncIterator[Simulator]:
    async with Simulator(parse_sim_config(config)) as sim:
        yield sim


@asynccontextmanager
async def running(loaded: LoadedConfig) -> AsyncIterator[Daemon]:
    """A real daemon in this event loop; stopped (drained) on exit, and must exit 0."""
    daemon = Daemon(loaded, handle_signals=False, node="test")
    task = asyncio.create_task(daemon.run())
    await wait_started(daemon, task)
    try:
        yield daemon
    finally:
        daemon.request_stop()
        code = await asyncio.wait_for(task, timeout=60)
        assert code == 0


async def fetch_rows(url: str) -> tuple[list[Any], list[Any]]:
    """(probes, results) as stored."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            probe_rows = (await conn.execute(select(probes))).fetchall()
            result_rows = (await conn.execute(select(results))).fetchall()
    finally:
        await engine.dispose()
    return list(probe_rows), list(result_rows)


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    limit: float,
    every: float = 0.2,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (plain or async) until it is true, or fail after ``limit`` seconds.

    The way to wait for something in a test, instead of a fixed sleep: it returns as soon as
    the condition holds, and a slow machine only makes it poll longer.
    ``await wait_for(lambda: len(rx.frames) == 2, limit=5, every=0.01)``"""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        met = predicate()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        if loop.time() > end:
            raise AssertionError(f"{what} not met within {limit}s")
        await asyncio.sleep(every)


async def metric(base_url: str, name: str) -> float:
    """The sum of every series of metric ``name`` on ``base_url``/metrics: 0 for a labelled
    metric with no series yet, a failure for one not exported at all."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{base_url}/metrics")).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    ]
    assert values or f"# TYPE {name.removesuffix('_total')} " in text, f"{name} is not exported"
    return sum(values)


# Real child processes: `python -m probe ...` with its output in a log file, never a pipe
# (an unread pipe fills up and blocks the child), killed on the way out whatever happens.


def probe_argv(*args: str) -> list[str]:
    """The argv of the real `probe` CLI in this venv."""
    return [sys.executable, "-m", "probe", *args]


@asynccontextmanager
async def child_process(
    argv: list[str], log: Path, *, cwd: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv`` with stdout and stderr appended to ``log``; SIGKILL it on exit if alive."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=cwd
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def stop_process(proc: asyncio.subprocess.Process, *, limit: float) -> int:
    """SIGTERM and wait up to ``limit`` seconds for the exit code (SIGKILL and fail after)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout=limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"pid {proc.pid} did not exit within {limit}s of SIGTERM") from None


async def kill_process(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL, the way a crash or an OOM kill ends a process, and reap it."""
    proc.kill()
    await proc.wait()


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a child's log file (other lines are skipped)."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


async def wait_for_event(
    proc: asyncio.subprocess.Process, log: Path, event: str, *, limit: float = 20
) -> None:
    """Wait until the child logs ``event``; fail at once if it exits first."""

    async def logged() -> bool:
        if proc.returncode is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"pid {proc.pid} exited with {proc.returncode}:\n{tail}")
        return any(e.get("event") == event for e in log_events(log))

    await wait_for(logged, limit=limit, every=0.1)


async def wait_ready(
    proc: asyncio.subprocess.Process, log: Path, port: int, *, limit: float = 20
) -> None:
    """Wait until a `probe run` child answers 200 on /readyz; fail at once if it exits."""

    async def ready() -> bool:
        if proc.returncode is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"pid {proc.pid} exited with {proc.returncode}:\n{tail}")
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.TransportError:
            return False
        return answer.status_code == 200

    await wait_for(ready, limit=limit, every=0.1)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `cut` drops every connection and refuses more;
    `hang` keeps every connection open and accepts new ones, but passes no byte on (a
    database whose packets are dropped), until `release`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def hang(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)
        for task in pumps:
            task.cancel()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()


async def proxied_postgres(url: str, *, migrate: bool = True) -> tuple[TcpProxy, str]:
    """A started `TcpProxy` to the PostgreSQL database at ``url`` (migrated first, unless
    ``migrate`` is False), and the URL that reaches it through the proxy."""
    if migrate:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
    target = make_url(url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
    await proxy.start()
    proxied = target.set(host="127.0.0.1", port=proxy.port)
    return proxy, proxied.render_as_string(hide_password=False)
