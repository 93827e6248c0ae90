"""Prometheus metrics. One registry per daemon, so tests can run several in one process.

Names and labels are a contract (docs/metrics.md). A probe id is never a label.

    metrics = Metrics({"region": "hovedstaden"})
    metrics.declare(flows)                   # every series at 0 before the first probe
    metrics.observe_result(result, now=time.time())
    body = metrics.exposition()              # the text format, as /metrics serves it

The series with one child per flow or per (flow, destination) live in two compact
collectors of our own (`FlowSeries`, `PairSeries`), which render themselves: through
`generate_latest` they would take about 20 times as long (bench/perf_metrics.py). The
daemon's own series (scheduler lag, store backlog, reload status, ...) are ordinary
prometheus_client metrics in a registry of their own, `Metrics.own`, rendered by
`generate_latest`: only prometheus_client's public API is used. `Metrics.registry` holds
all three, for `generate_latest(metrics.registry)` and `get_sample_value`, which give the
same samples as `exposition()` (tests/test_metrics.py, bench/perf_metrics.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from probe.config.models import FlowSpec
from probe.metrics.flow_series import FlowGauges, FlowSeries
from probe.metrics.pair_series import PairSeries
from probe.model import Result

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
M = TypeVar("M", Gauge, Counter, Histogram)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SKIP_REASONS = ("max_in_flight", "store")  # the ``reason`` of `probe_slots_skipped_total`


class Metrics:
    """Every series the daemon exports. Static ``labels:`` from the config go on each one."""

    def __init__(self, static_labels: Mapping[str, str] | None = None) -> None:
        self.static = dict(static_labels or {})
        self.pairs = PairSeries(self.static, LATENCY_BUCKETS)  # per (flow, destination)
        self.flows = FlowSeries(self.static)  # per flow
        self.own = CollectorRegistry(auto_describe=True)
        extra = list(self.static)
        self.skipped = Counter(
            "probe_slots_skipped",
            "Slots not probed: max_in_flight reached, or the store could not claim the slot.",
            ["flow", *extra, "reason"],
            registry=self.own,
        )
        self.notifications = Counter(
            "probe_notifications",
            "Notification sends per channel: sent, failed (a try that failed; it is retried) "
            "or dropped (its channel was removed from the config).",
            [*extra, "channel", "outcome"],
            registry=self.own,
        )
        self._declare_daemon_series(extra)
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (self.pairs, self.flows, self.own):
            self.registry.register(collector)

    def _declare_daemon_series(self, extra: list[str]) -> None:
        """The daemon's own series, in `own`: labelled with the static labels only."""
        r = self.own
        self.scheduler_lag = Histogram(
            "probe_scheduler_lag_seconds",
            "Delay between a slot's start and its probe starting.",
            extra,
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.store_backlog = Gauge(
            "probe_store_backlog", "Items waiting to be written to the store.", extra, registry=r
        )
        self.store_write_errors = Counter(
            "probe_store_write_errors", "Failed store writes.", extra, registry=r
        )
        self.dropped = Counter(
            "probe_results_dropped",
            "Store items (claims aside) dropped because neither the spool nor memory could "
            "keep them: the spool's disk failed and the in-memory backlog was full.",
            [*extra, "reason"],
            registry=r,
        )
        self.spool_errors = Counter(
            "probe_spool_errors",
            "Spool appends that failed (a full or failing disk); the item stayed in memory.",
            extra,
            registry=r,
        )
        self.task_failures = Counter(
            "probe_task_failures",
            "Failures of the daemon's long-lived background tasks, each restarted with backoff.",
            [*extra, "task"],
            registry=r,
        )
        self.config_reload_success = Gauge(
            "probe_config_last_reload_success",
            "1 if the last config load succeeded.",
            extra,
            registry=r,
        )
        self.config_reload_time = Gauge(
            "probe_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (the start, or a reload).",
            extra,
            registry=r,
        )

    def declare(self, flows: list[FlowSpec]) -> None:
        """Create every series up front, so dashboards see zeros rather than gaps."""
        for flow in flows:
            # `in_flight` not set to 0: a reload declares a changed flow while its old probes
            # are in flight.
            self.flows.flow(flow.name).maintenance = 0.0
            targets = [(d.name, d.slo_latency, d.slo_objective) for d in flow.destinations]
            for dest, latency, objective in targets or [("", flow.slo_latency, flow.slo_objective)]:
                self.pairs.declare(flow.name, dest, latency=latency, objective=objective)
        self.daemon(self.scheduler_lag)
        self.daemon(self.store_write_errors)
        self.daemon(self.spool_errors)

    def forget(self, flow: str, destinations: list[str], *, whole: bool = False) -> None:
        """Stop exporting the series of ``destinations`` of ``flow`` (a config reload removed
        them); ``whole``: the flow is gone, so its per-flow series go too."""
        for dest in destinations:
            self.pairs.forget(flow, dest)
        if not whole:
            return
        self.flows.forget(flow)
        for why in SKIP_REASONS:
            with contextlib.suppress(KeyError):  # never created; older clients raise for it
                self.skipped.remove(flow, *self.static.values(), why)

    def observe_result(self, result: Result, *, now: float) -> None:
        """Count ``result`` in its pair's series (``now``: Unix time, for the last delivery)."""
        self.pairs.observe(result, now=now)

    def skip(self, flow: str, reason: str) -> None:
        """A slot not probed, for one of `SKIP_REASONS` (`probe_slots_skipped`)."""
        self.skipped.labels(flow, *self.static.values(), reason).inc()

    def drop(self, reason: str) -> None:
        """A store item neither the spool nor memory could keep (`probe_results_dropped`)."""
        self.dropped.labels(*self.static.values(), reason).inc()

    def task_failed(self, task: str) -> None:
        """A background task failed and is restarted (`probe_task_failures`)."""
        self.task_failures.labels(*self.static.values(), task).inc()

    def notified(self, channel: str, outcome: str, count: int = 1) -> None:
        """``count`` notifications of ``channel`` sent, failed or dropped
        (`probe_notifications_total`); 0 creates the series."""
        self.notifications.labels(*self.static.values(), channel, outcome).inc(count)

    def flow(self, flow: str) -> FlowGauges:
        """The per-flow gauges of ``flow`` (`probe_in_flight`, `probe_maintenance`)."""
        return self.flows.flow(flow)

    def daemon(self, metric: M) -> M:
        """The daemon's own series: only the static labels, if any."""
        return metric.labels(*self.static.values()) if self.static else metric

    def exposition(self) -> bytes:
        """The text format: the samples of `generate_latest(self.registry)`, in a small
        part of the time."""
        return b"".join(self.exposition_chunks())

    def exposition_chunks(self) -> Iterator[bytes]:
        """`exposition()` in pieces of a few hundred kB, to be sent as they are made."""
        for series in (self.pairs, self.flows):
            for text in series.render():
                if text:
                    yield text.encode("utf-8")
        yield generate_latest(self.own)
