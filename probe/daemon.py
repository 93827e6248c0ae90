"""The daemon: wires config, store, transports, runner, scheduler and HTTP server together.

Lifecycle: the first SIGTERM or SIGINT stops scheduling and waits for the probes in flight
up to ``shutdown_grace``, then flushes the store and exits 0. A second signal cancels what
is still in flight at once; those probes stay stored and unresolved, and the next start
resolves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import SQLAlchemyError

from probe.api import Api, ApiContext
from probe.config import FlowSpec, resolve_flows
from probe.configfile import LoadedConfig
from probe.errors import StoreError
from probe.listener import Listener
from probe.logs import redactor
from probe.maintenance import Calendar, covers, is_active
from probe.metrics import Metrics
from probe.model import Result, utcnow
from probe.report.stats import Month, build_report
from probe.runner import Runner
from probe.schedule import Scheduler
from probe.server import make_app
from probe.store import Store, open_store, safe_url
from probe.store.maintenance import prune_raw
from probe.transports import Resources

log = structlog.get_logger("probe.daemon")

# How far back a start looks for probes a previous run left unresolved.
RESUME_WINDOW = timedelta(days=2)
# How long past its deadline another node's unresolved probe waits before this one adopts it.
ADOPT_AFTER = timedelta(minutes=1)
PRUNE_EVERY = 3600.0


class Daemon:
    """One probe daemon. ``await Daemon(loaded).run()`` returns the exit code.

    ``handle_signals=False`` lets tests run the real loop and stop it with `request_stop`.
    """

    def __init__(
        self, loaded: LoadedConfig, *, handle_signals: bool = True, node: str | None = None
    ) -> None:
        self.config = loaded.config
        self.flows: list[FlowSpec] = resolve_flows(self.config)
        self.handle_signals = handle_signals
        self.node = node or socket.gethostname()[:64]
        self.metrics = Metrics(self.config.labels)
        self.started = asyncio.Event()
        self.store: Store | None = None
        self.server: Listener | None = None
        self.scheduler: Scheduler | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._resuming: set[asyncio.Task[object]] = set()
        self._ready_cache: tuple[float, bool] = (0.0, False)
        redactor.update(loaded.secrets)

    def request_stop(self) -> None:
        """Like a signal: the first call drains, the second cancels."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def run(self) -> int:
        cfg = self.config
        self.store = await open_store(
            cfg.store.url,
            flush_interval=cfg.store.flush_interval,
            batch_size=cfg.store.batch_size,
        )
        self.store.on_write_error = self.metrics.daemon(self.metrics.store_write_errors).inc
        self.store.start()
        clients = Resources()
        calendar = Calendar(cfg.maintenance, ZoneInfo(cfg.timezone))
        runner = Runner(store=self.store, metrics=self.metrics, node=self.node, calendar=calendar)
        try:
            await runner.open(self.flows, clients)
            await self._serve(runner)
            return 1 if self._force.is_set() else 0
        finally:
            await runner.aclose()
            await clients.aclose()
            await self.store.close(flush_timeout=2.0 if self._force.is_set() else 10.0)
            if self.server is not None:
                await self.server.stop()

    async def _serve(self, runner: Runner) -> None:
        self.metrics.declare(self.flows)
        self.metrics.daemon(self.metrics.config_reload_success).set(1)
        host, port = self.config.server.host_port
        assert self.store is not None
        assert runner.calendar is not None
        context = ApiContext(
            engine=self.store.engine,
            config=self.config,
            flows=self.flows,
            calendar=runner.calendar,
            run_now=lambda flow: self._run_now(runner, flow),
        )
        app = make_app(
            exposition=self._exposition,
            readiness=self._readiness,
            monthly_report=self._monthly_report,
            api=Api(context),
        )
        self.server = Listener("api", app, host=host, port=port)
        try:
            await self.server.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.config.server.listen}: {exc.strerror}") from exc
        self.scheduler = Scheduler(runner.run_slot, self.metrics, timezone=self.config.timezone)
        for flow in self.flows:
            self.scheduler.add(flow)
        self._install_signals()
        await self._resume(runner)
        self.scheduler.start()
        pruner = asyncio.create_task(self._prune_forever(), name="prune")
        log.info(
            "started",
            flows=len(self.flows),
            metrics=f"{self.server.url}/metrics",
            store=safe_url(self.config.store.url),
        )
        self.started.set()
        await self._stop.wait()
        log.info("stopping", in_flight=len(self._in_flight()))
        pruner.cancel()
        self.scheduler.stop()
        await self._drain()

    def _in_flight(self) -> list[asyncio.Task[object]]:
        scheduled = self.scheduler.in_flight() if self.scheduler else []
        return [*scheduled, *self._resuming]

    async def _drain(self) -> None:
        """Wait for the probes in flight, up to the grace period or a second signal."""
        tasks = self._in_flight()
        deadline = time.monotonic() + self.config.shutdown_grace
        force = asyncio.create_task(self._force.wait())
        try:
            while pending := [t for t in tasks if not t.done()]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._force.is_set():
                    break
                await asyncio.wait(
                    [*pending, force], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            force.cancel()
        left = [t for t in tasks if not t.done()]
        for task in left:
            task.cancel()
        if left:
            log.warning("probes_cancelled", count=len(left), note="resolved at next start")
            await asyncio.gather(*left, return_exceptions=True)

    async def _resume(self, runner: Runner) -> None:
        assert self.store is not None
        try:
            stored = await self.store.unresolved(since=utcnow() - RESUME_WINDOW)
        except StoreError as exc:
            log.error("resume_failed", error=str(exc))
            return
        by_name = {flow.name: flow for flow in self.flows}
        now = utcnow()
        for probe in stored:
            flow = by_name.get(probe.flow)
            if flow is None:
                continue
            # Another live daemon sharing the store resolves its own probes; step in only
            # once it is clearly overdue (its owner died).
            overdue = now > probe.deadline_at + ADOPT_AFTER
            if probe.node != self.node and not overdue:
                continue
            wanted = {d.name for d in flow.destinations} or {""}
            if wanted <= probe.resolved:
                continue
            task: asyncio.Task[object] = asyncio.create_task(runner.resume(probe))
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)
        if self._resuming:
            log.info("resuming_unresolved", probes=len(self._resuming))

    async def _run_now(self, runner: Runner, flow: FlowSpec) -> list[Result] | None:
        """Probe ``flow`` at slot = now for the API, like `probe once`.

        The probe runs as its own task, tracked with the resumed ones, so a client that
        hangs up does not cut it short and a stop drains it like any probe in flight.
        """
        task: asyncio.Task[object] = asyncio.create_task(runner.run_slot(flow, utcnow()))
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)
        found = await asyncio.shield(task)
        assert found is None or isinstance(found, list)
        return found

    def _install_signals(self) -> None:
        if not self.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        # SIGHUP's default action kills the process; until reload exists, say so instead.
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        log.warning("reload_not_supported", note="config reload is not built yet; restart")

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal", signal=sig.name, again=self._stop.is_set())
        self.request_stop()

    def _exposition(self) -> bytes:
        if self.store is not None:
            self.metrics.daemon(self.metrics.store_backlog).set(self.store.backlog)
        now = utcnow()
        tz = ZoneInfo(self.config.timezone)
        windows = self.config.maintenance
        for flow in self.flows:
            active = any(covers(w, flow.name) and is_active(w, now, tz) for w in windows)
            self.metrics.flow_gauge(self.metrics.maintenance, flow.name).set(int(active))
        return self.metrics.exposition()

    async def _monthly_report(self, month: str) -> dict[str, Any]:
        """The JSON of `probe report --month` (a `ValueError` for a bad month)."""
        assert self.store is not None
        Month.parse(month, ZoneInfo(self.config.timezone))
        try:
            return await build_report(self.store.engine, self.config, month)
        except SQLAlchemyError as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc

    async def _prune_forever(self) -> None:
        """Delete raw rows past ``store.retention.raw`` every hour; rollups stay."""
        while True:
            try:
                assert self.store is not None
                deleted = await prune_raw(self.store.engine, self.config.store.retention.raw)
                if deleted:
                    log.info("pruned", rows=deleted)
            except StoreError as exc:
                log.warning("prune_failed", error=str(exc))
            await asyncio.sleep(PRUNE_EVERY)

    async def _readiness(self) -> dict[str, bool]:
        checked_at, store_ok = self._ready_cache
        if time.monotonic() - checked_at > 2.0 and self.store is not None:
            try:
                await self.store.ping()
                store_ok = True
            except StoreError:
                store_ok = False
            self._ready_cache = (time.monotonic(), store_ok)
        scheduler_ok = self.scheduler is not None and self.scheduler.running
        return {"store": store_ok, "scheduler": scheduler_ok}


async def wait_started(daemon: Daemon, run: asyncio.Task[int], *, limit: float = 10.0) -> None:
    """Wait for a daemon started as a task to be serving; raise what stopped it otherwise."""
    started = asyncio.create_task(daemon.started.wait())
    done, _ = await asyncio.wait({started, run}, timeout=limit, return_when="FIRST_COMPLETED")
    if run in done:
        started.cancel()
        run.result()
        raise RuntimeError("daemon stopped before it started")
    if started not in done:
        started.cancel()
        raise TimeoutError("daemon did not start in time")
    with contextlib.suppress(Exception):
        started.result()
