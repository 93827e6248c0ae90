"""The daemon: wires config, store, transports, runner, scheduler and HTTP server together.

Lifecycle: the first SIGTERM or SIGINT stops scheduling and waits for the probes in flight
up to ``shutdown_grace``, then flushes the store and exits 0. A second signal cancels what
is still in flight at once; those probes stay stored and unresolved, and the next start
resolves them. SIGHUP (or ``POST /-/reload``) reloads the config file (`Daemon.reload`).

What it wires up has its own module: the runner (`probe.engine.runner`), the schedule
(`schedule`), the resumption of unresolved probes and the adoption of a dead peer's
(`recovery`), the hourly pruning (`pruning`) and the supervision of these background tasks
(`supervise`), and the notifications on state change (`probe.notify.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.exc import SQLAlchemyError

from probe.config.loader import LoadedConfig, load_config
from probe.config.models import FlowSpec, resolve_flows
from probe.config.reload import FlowChanges, ReloadRefused, restart_required
from probe.config.windows import Calendar, covers, is_active
from probe.engine.pruning import prune_forever
from probe.engine.recovery import Recovery
from probe.engine.runner import Runner
from probe.engine.schedule import Scheduler
from probe.engine.supervise import Supervisor
from probe.errors import ConfigError, ProbeError, StoreError
from probe.logs import redactor
from probe.metrics.registry import Metrics
from probe.model import Result, utcnow
from probe.notify.service import Notifications
from probe.report.stats import Month, build_report
from probe.store import Store, default_spool_dir, open_store, safe_url
from probe.store.feed import SightingFeed
from probe.transports import Resources
from probe.web.api import Api, ApiContext
from probe.web.listener import Listener
from probe.web.server import make_app

log = structlog.get_logger("probe.engine.daemon")

T = TypeVar("T")


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
        # Probes run outside the schedule (resumed ones, API runs), drained like scheduled ones.
        self._tracked: set[asyncio.Task[Any]] = set()
        self._ready_cache: tuple[float, bool] = (0.0, False)
        self.config_path = loaded.path
        self.api: Api | None = None
        self._runner: Runner | None = None
        self._reload_lock = asyncio.Lock()
        self._fatal: str | None = None  # a background task that could not recover
        self.began = utcnow()
        self.supervisor = Supervisor(
            on_failure=self.metrics.task_failed, on_fatal=self._task_gave_up
        )
        self._reloads: set[asyncio.Task[None]] = set()
        self.notify = Notifications(lambda: self.config, self.supervisor.spawn, self.metrics)
        redactor.update(loaded.secrets)

    def _task_gave_up(self, name: str, reason: str) -> None:
        """A background task failed again and again: /readyz says so, and the daemon stops
        with exit code 1 rather than go on without it."""
        self._fatal = f"{name}: {reason}"
        self.request_stop()

    def request_stop(self) -> None:
        """Like a signal: the first call drains, the second cancels."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped: 0 after a clean stop, 1 after a forced one or a task that
        gave up."""
        cfg = self.config
        self.store = await self._open_store()
        # What a killed predecessor spooled goes in before its probes are resumed; with the
        # database away, both wait for it while this run probes (`Recovery.recover_later`).
        if not self.store.offline:
            await self.store.recover()
        clients = Resources()
        calendar = Calendar(cfg.maintenance, ZoneInfo(cfg.timezone))
        shared = cfg.store.shared_sightings
        if shared is None:
            shared = self.store.engine.dialect.name == "postgresql"
        feed = SightingFeed(self.store) if shared else None
        runner = Runner(
            store=self.store, metrics=self.metrics, node=self.node, calendar=calendar, feed=feed
        )
        try:
            await runner.open(self.flows, clients)
            await self._serve(runner)
            return 1 if self._force.is_set() or self._fatal else 0
        finally:
            if feed is not None:
                await feed.aclose()
            await runner.aclose()
            await clients.aclose()
            await self.store.close(flush_timeout=2.0 if self._force.is_set() else 10.0)
            await self.supervisor.aclose()
            if self.server is not None:
                await self.server.stop()

    async def _open_store(self) -> Store:
        cfg = self.config
        spool = Path(cfg.store.spool_dir) if cfg.store.spool_dir else None
        store = await open_store(
            cfg.store.url,
            flush_interval=cfg.store.flush_interval,
            batch_size=cfg.store.batch_size,
            spool=spool or default_spool_dir(cfg.store.url),
            node=self.node,
            offline_start=True,
            local_claims=cfg.store.local_claims,
        )
        self.began = utcnow()  # probes claimed from here on are this run's own
        store.on_write_error = self.metrics.daemon(self.metrics.store_write_errors).inc
        store.on_spool_error = self.metrics.daemon(self.metrics.spool_errors).inc
        store.on_drop = self.metrics.drop
        store.start(spawn=self.supervisor.spawn)
        return store

    async def _serve(self, runner: Runner) -> None:
        """Serve HTTP, resume what is unresolved, probe on schedule until a stop, drain."""
        store = self.store
        assert store is not None
        self.metrics.declare(self.flows)
        self._loaded_metrics()
        self._runner = runner
        server = await self._listen(runner)
        scheduler = self.scheduler = Scheduler(
            runner.run_slot, self.metrics, timezone=self.config.timezone
        )
        for flow in self.flows:
            scheduler.add(flow)
        self._install_signals()
        recovery = Recovery(store, runner, node=self.node, began=self.began, track=self._track)
        if store.offline:
            self.supervisor.spawn("recover", recovery.recover_later)
        else:
            await recovery.resume()
        # What start-up built (config, flows, transports, metrics) lives as long as the
        # daemon. Frozen, it is left out of the collector's full passes, which otherwise
        # walked all of it about once a second at 750 probes/s, for some 60 ms each, and
        # held up whole slots (bench/RESULTS.md, row 1). Collected first, so no garbage of
        # the start-up is frozen with it.
        gc.collect()
        gc.freeze()
        scheduler.start()
        background = [
            self.supervisor.spawn("prune", self._prune_forever),
            self.supervisor.spawn("adopt", recovery.adopt_forever),
            *self.notify.start(store.engine),  # none without notify.channels
        ]
        store_url = safe_url(self.config.store.url)
        log.info("started", flows=len(self.flows), metrics=f"{server.url}/metrics", store=store_url)
        self.started.set()
        await self._stop.wait()
        log.info("stopping", in_flight=len(self._in_flight()))
        for task in background:
            task.cancel()
        scheduler.stop()
        gc.unfreeze()  # collectable again: tests run many daemons in one process
        await self._drain()

    async def _listen(self, runner: Runner) -> Listener:
        """Start the HTTP server: /metrics, the health checks, the API and the status page."""
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
            api=(api := Api(context)),
            reload=self.reload,
            api_token=lambda: self.config.server.api_token,
            readiness_problems=lambda: [
                f"task {name} gave up: {why}" for name, why in self.supervisor.failed.items()
            ],
        )
        self.api = api
        host, port = self.config.server.host_port
        server = self.server = Listener("api", app, host=host, port=port)
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.config.server.listen}: {exc.strerror}") from exc
        return server

    def _in_flight(self) -> list[asyncio.Task[object]]:
        scheduled = self.scheduler.in_flight() if self.scheduler else []
        return [*scheduled, *self._tracked]

    async def _drain(self) -> None:
        """Wait for the probes in flight, up to the grace period or a second signal."""
        deadline = time.monotonic() + self.config.shutdown_grace
        force = asyncio.create_task(self._force.wait())
        try:
            # Looked up afresh each time: a probe can start after the stop began (an API
            # run, a resume), and must not find its listener closed under it.
            while pending := [t for t in self._in_flight() if not t.done()]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._force.is_set():
                    break
                await asyncio.wait(
                    [*pending, force], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            force.cancel()
        left = [t for t in self._in_flight() if not t.done()]
        for task in left:
            task.cancel()
        if left:
            log.warning("probes_cancelled", count=len(left), note="resolved at next start")
            await asyncio.gather(*left, return_exceptions=True)

    def _track(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` as a task that a stop drains like a probe in flight."""
        task = asyncio.create_task(work)
        self._tracked.add(task)
        task.add_done_callback(self._tracked.discard)
        return task

    async def _run_now(self, runner: Runner, flow: FlowSpec) -> list[Result] | None:
        """Probe ``flow`` at slot = now for the API, like `probe once`.

        The probe runs as its own task, tracked with the resumed ones, so a client that
        hangs up does not cut it short and a stop drains it like any probe in flight.
        """
        return await asyncio.shield(self._track(runner.run_slot(flow, utcnow())))

    def _install_signals(self) -> None:
        if not self.handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        log.info("signal", signal="SIGHUP")
        task = asyncio.create_task(self._reload_logged(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_logged(self) -> None:
        with contextlib.suppress(Exception):  # `reload` has logged it
            await self.reload()

    async def reload(self) -> FlowChanges:
        """Read the config file again and apply it: flows added, removed and changed.

        Probes in flight finish with the definition they started with. When the new config
        cannot be used (invalid, a restart-only key changed, a listener that cannot bind),
        the old one keeps running entirely, the error is logged as ``config_reload_failed``
        and raised. One reload runs at a time.
        """
        async with self._reload_lock:
            try:
                changes = await self._reload()
            except Exception as exc:
                if not isinstance(exc, ReloadRefused):  # not tried: says nothing of the file
                    self.metrics.daemon(self.metrics.config_reload_success).set(0)
                path = str(self.config_path)
                if isinstance(exc, ProbeError):
                    log.error("config_reload_failed", path=path, error=str(exc))
                else:  # a bug: the daemon keeps running on the old config
                    log.exception("config_reload_failed", path=path, error=repr(exc))
                raise
            self._loaded_metrics()
            log.info("config_reloaded", path=str(self.config_path), **changes.summary())
            return changes

    async def _reload(self) -> FlowChanges:
        runner, scheduler, api = self._runner, self.scheduler, self.api
        if runner is None or scheduler is None or api is None or not self.started.is_set():
            raise ReloadRefused("the daemon is still starting; try again")
        if self._stop.is_set():
            raise ReloadRefused("the daemon is stopping")
        loaded = load_config(self.config_path)
        if problems := restart_required(self.config, loaded.config):
            raise ConfigError([f"{self.config_path}: {problem}" for problem in problems])
        flows = resolve_flows(loaded.config)
        changes = FlowChanges.between(runner.flows, flows)
        await runner.apply(changes)  # the one step that can fail after loading: nothing changed
        # No await from here on: every part of the daemon switches together.
        cfg = loaded.config
        redactor.update((*redactor.secrets, *loaded.secrets))  # old probes may still log old ones
        calendar = Calendar(cfg.maintenance, ZoneInfo(cfg.timezone))
        runner.calendar = calendar
        self.config, self.flows = cfg, flows
        scheduler.apply(changes)
        self.metrics.declare(list(changes.fresh))
        api.context = replace(api.context, config=cfg, flows=flows, calendar=calendar)
        api._cached = None  # the status and the flow list show the new flows at once
        self.notify.apply()  # the new channels, from the next tick
        return changes

    def _loaded_metrics(self) -> None:
        """A config was loaded and is in use: at the start, or a reload."""
        self.metrics.daemon(self.metrics.config_reload_success).set(1)
        self.metrics.daemon(self.metrics.config_reload_time).set(time.time())

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal", signal=sig.name, again=self._stop.is_set())
        self.request_stop()

    def _exposition(self) -> Iterator[bytes]:
        if self.store is not None:
            self.metrics.daemon(self.metrics.store_backlog).set(self.store.backlog)
        now = utcnow()
        tz = ZoneInfo(self.config.timezone)
        windows = self.config.maintenance
        for flow in self.flows:
            active = any(covers(w, flow.name) and is_active(w, now, tz) for w in windows)
            self.metrics.flow(flow.name).maintenance = float(active)
        return self.metrics.exposition_chunks()

    async def _monthly_report(self, month: str) -> dict[str, Any]:
        """The JSON of `probe report --month` (a `ValueError` for a bad month)."""
        assert self.store is not None
        Month.parse(month, ZoneInfo(self.config.timezone))
        try:
            return await build_report(self.store.engine, self.config, month)
        except SQLAlchemyError as exc:
            raise StoreError(f"store unreachable: {type(exc).__name__}") from exc

    async def _prune_forever(self) -> None:
        assert self.store is not None
        await prune_forever(self.store, retention=lambda: self.config.store.retention.raw)

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
        return {"store": store_ok, "scheduler": scheduler_ok, "tasks": not self.supervisor.failed}


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
