"""Prometheus metrics. One registry per daemon, so tests can run several in one process.

Names and labels are a contract (see README "Metrics"). A probe id is never a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from probe.config import FlowSpec
from probe.model import Outcome, Result

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
M = TypeVar("M", Gauge, Counter, Histogram)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """Every series the daemon exports. Static ``labels:`` from the config go on each one."""

    def __init__(self, static_labels: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.static = dict(static_labels or {})
        extra = list(self.static)
        dest = ["flow", "destination", *extra]
        flow = ["flow", *extra]
        r = self.registry
        self.success = Gauge(
            "probe_success", "1 if the last result was delivered, else 0.", dest, registry=r
        )
        self.duration = Gauge(
            "probe_duration_seconds", "Latency of the last result.", dest, registry=r
        )
        self.results = Counter(
            "probe_results", "Results by outcome.", [*dest, "outcome"], registry=r
        )
        self.latency = Histogram(
            "probe_latency_seconds",
            "Latency of delivered and late results.",
            dest,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.last_delivered = Gauge(
            "probe_last_delivered_timestamp_seconds",
            "Unix time of the last delivered result.",
            dest,
            registry=r,
        )
        self.slo_objective = Gauge(
            "probe_slo_objective_ratio", "Configured SLO objective.", dest, registry=r
        )
        self.slo_latency = Gauge(
            "probe_slo_latency_seconds", "Configured SLO latency.", dest, registry=r
        )
        self.duplicates = Counter(
            "probe_duplicates", "Extra copies of probes seen at a destination.", dest, registry=r
        )
        self.mismatches = Counter(
            "probe_content_mismatches",
            "Results whose message arrived with changed content (e.g. a mangled name).",
            dest,
            registry=r,
        )
        self.in_flight = Gauge("probe_in_flight", "Probes sent and not resolved.", flow, registry=r)
        self.maintenance = Gauge(
            "probe_maintenance", "1 while a maintenance window covers the flow.", flow, registry=r
        )
        self.skipped = Counter(
            "probe_slots_skipped",
            "Slots not probed: max_in_flight reached, or the store could not claim the slot.",
            [*flow, "reason"],
            registry=r,
        )
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
        self.config_reload_success = Gauge(
            "probe_config_last_reload_success",
            "1 if the last config load succeeded.",
            extra,
            registry=r,
        )

    def declare(self, flows: list[FlowSpec]) -> None:
        """Create every series up front, so dashboards see zeros rather than gaps."""
        for flow in flows:
            self.in_flight.labels(flow.name, *self.static.values()).set(0)
            self.maintenance.labels(flow.name, *self.static.values()).set(0)
            targets = [(d.name, d.slo_latency, d.slo_objective) for d in flow.destinations]
            for dest, latency, objective in targets or [("", flow.slo_latency, flow.slo_objective)]:
                labels = (flow.name, dest, *self.static.values())
                self.slo_latency.labels(*labels).set(latency)
                self.slo_objective.labels(*labels).set(objective)
                self.latency.labels(*labels)
                self.duplicates.labels(*labels)
                self.mismatches.labels(*labels)
                for outcome in Outcome:
                    self.results.labels(*labels, outcome.value)
        self.daemon(self.scheduler_lag)
        self.daemon(self.store_write_errors)

    def observe_result(self, result: Result, *, now: float) -> None:
        labels = (result.flow, result.destination, *self.static.values())
        outcome, latency = result.outcome, result.latency
        self.results.labels(*labels, outcome.value).inc()
        if result.duplicates:
            self.duplicates.labels(*labels).inc(result.duplicates)
        if result.mismatch:
            self.mismatches.labels(*labels).inc()
        self.success.labels(*labels).set(1 if outcome.good else 0)
        if latency is not None and outcome in (Outcome.DELIVERED, Outcome.LATE):
            self.duration.labels(*labels).set(latency)
            self.latency.labels(*labels).observe(latency)
        if outcome is Outcome.DELIVERED:
            self.last_delivered.labels(*labels).set(now)

    def skip(self, flow: str, reason: str) -> None:
        self.skipped.labels(flow, *self.static.values(), reason).inc()

    def flow_gauge(self, gauge: Gauge, flow: str) -> Gauge:
        return gauge.labels(flow, *self.static.values())

    def daemon(self, metric: M) -> M:
        """The daemon's own series: only the static labels, if any."""
        return metric.labels(*self.static.values()) if self.static else metric

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
