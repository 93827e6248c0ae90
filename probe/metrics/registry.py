"""Prometheus metrics. One registry per daemon, so tests can run several in one process.

Names and labels are a contract (see README "Metrics"). A probe id is never a label.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as client_metrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from prometheus_client.values import MutexValue

from probe.config.models import FlowSpec
from probe.metrics.pair_series import PairSeries
from probe.model import Result

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
        flow = ["flow", *extra]
        r = self.registry
        self._text = TextExposition(r)
        # Per (flow, destination): one compact collector (see probe/pair_series.py).
        self.pairs = PairSeries(self.static, LATENCY_BUCKETS)
        r.register(self.pairs)
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
        static = tuple(self.static.values())
        for flow in flows:
            # Not set to 0: a reload declares a changed flow while its old probes are in flight.
            self.in_flight.labels(flow.name, *static)
            self.maintenance.labels(flow.name, *static).set(0)
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
        static = tuple(self.static.values())
        gone: list[tuple[Gauge | Counter, tuple[str, ...]]] = [
            (self.in_flight, (flow, *static)),
            (self.maintenance, (flow, *static)),
        ]
        gone += [(self.skipped, (flow, *static, why)) for why in ("max_in_flight", "store")]
        for metric, labels in gone:
            with contextlib.suppress(KeyError):  # never created; older clients raise for it
                metric.remove(*labels)

    def observe_result(self, result: Result, *, now: float) -> None:
        self.pairs.observe(result, now=now)

    def skip(self, flow: str, reason: str) -> None:
        self.skipped.labels(flow, *self.static.values(), reason).inc()

    def drop(self, reason: str) -> None:
        """A store item neither the spool nor memory could keep (`probe_results_dropped`)."""
        self.dropped.labels(*self.static.values(), reason).inc()

    def task_failed(self, task: str) -> None:
        """A background task failed and is restarted (`probe_task_failures`)."""
        self.task_failures.labels(*self.static.values(), task).inc()

    def flow_gauge(self, gauge: Gauge, flow: str) -> Gauge:
        return gauge.labels(flow, *self.static.values())

    def daemon(self, metric: M) -> M:
        """The daemon's own series: only the static labels, if any."""
        return metric.labels(*self.static.values()) if self.static else metric

    def exposition(self) -> bytes:
        """The text format: what `generate_latest` gives, in a small part of the time."""
        return b"".join(self._text.chunks())

    def exposition_chunks(self) -> Iterator[bytes]:
        """`exposition()` in pieces of a few hundred kB, to be sent as they are made."""
        return self._text.chunks()


_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FAST_TYPES = (Counter, Gauge, Histogram)


class _One(Collector):
    """One collector on its own, for `generate_latest`."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Any:
        return self.collector.collect()


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class TextExposition:
    """`generate_latest` for a registry of labelled counters, gauges and histograms.

    With 5,000 flows x 3 destinations, `generate_latest` spends about 12 µs on each of
    half a million samples (a `Sample` and a label dict per sample, the labels sorted and
    escaped every time). Here each child's sorted, escaped label text is made once and
    kept, and a value's text is reused. Anything else (a metric without labels, another
    type or value class, a label name that would need escaping) goes through
    `generate_latest` itself, so the bytes are the same either way. It reads
    `prometheus_client` internals (`_metrics`, `_value`, `_buckets`, `_created`), checked
    for each metric, and `bench/perf_metrics.py` compares the two outputs.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # (label names, values) -> sorted label text, shared by every metric with the same
        # labels (one entry per flow and destination); for histograms, also the parts
        # before and after where "le" sorts in. Kept small: it lives as long as the daemon.
        self._labels: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        self._le: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, str]] = {}
        self._floats: dict[float, str] = {}
        self._children = 0

    def render(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        try:
            collectors = list(self.registry._collector_to_names)
        except AttributeError:  # a prometheus_client without the attribute
            yield generate_latest(self.registry)
            return
        self._children = 0
        for collector in collectors:
            if isinstance(collector, PairSeries):
                for text in collector.render():
                    if text:
                        yield text.encode("utf-8")
                continue
            lines: list[str] = []  # joined per metric: fewer small strings alive at once
            if not self._render_fast(collector, lines):
                lines = [generate_latest(_One(collector)).decode("utf-8")]
            yield "".join(lines).encode("utf-8")
            del lines
        if len(self._floats) > 50_000:
            self._floats.clear()
        if len(self._labels) > 2 * self._children + 1_000:  # children removed (a reload)
            self._labels.clear()
            self._le.clear()

    def _fmt(self, value: float) -> str:
        text = self._floats.get(value)
        if text is None:
            text = self._floats[value] = _go(value)
        return text

    def _render_fast(self, collector: Collector, out: list[str]) -> bool:
        if not isinstance(collector, _FAST_TYPES):
            return False
        metric: Any = collector  # private attributes from here on
        if not metric._is_parent():
            return False
        labelnames = tuple(metric._labelnames)
        if not all(_LEGACY_NAME.match(n) for n in (*labelnames, metric._name)):
            return False
        with metric._lock:
            children = list(metric._metrics.items())
        name, typ = metric._name, metric._type
        hist = typ == "histogram"
        # One value class for the whole process (chosen at import): the first child tells.
        if children and type(children[0][1]._sum if hist else children[0][1]._value) is not (
            MutexValue
        ):
            return False
        doc = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
        family = f"{name}_total" if typ == "counter" else name
        out.append(f"# HELP {family} {doc}\n# TYPE {family} {typ}\n")
        created: list[str] = []
        use_created = client_metrics._use_created and typ != "gauge"
        known, fmt = self._floats.get, self._fmt
        self._children += len(children)
        cache = self._labels
        for values, child in children:
            base = cache.get((labelnames, values))
            if base is None:
                base = cache[(labelnames, values)] = _label_text(labelnames, values)
            if typ == "counter":
                v = child._value._value
                out.append(f"{name}_total{{{base}}} {known(v) or fmt(v)}\n")
            elif typ == "gauge":
                v = child._value._value
                out.append(f"{name}{{{base}}} {known(v) or fmt(v)}\n")
            else:
                pieces = self._le.get((labelnames, values))
                if pieces is None:
                    pieces = self._le[(labelnames, values)] = _le_parts(labelnames, values)
                before_le, after_le = pieces
                acc = 0.0
                for bound, bucket in zip(child._upper_bounds, child._buckets, strict=True):
                    acc += bucket._value
                    out.append(f'{name}_bucket{{{before_le}le="{known(bound) or fmt(bound)}"'
                               f"{after_le}}} {known(acc) or fmt(acc)}\n")  # fmt: skip
                out.append(f"{name}_count{{{base}}} {known(acc) or fmt(acc)}\n")
                if child._upper_bounds[0] >= 0:
                    v = child._sum._value
                    out.append(f"{name}_sum{{{base}}} {known(v) or fmt(v)}\n")
            if use_created:
                created.append(f"{name}_created{{{base}}} {_go(child._created)}\n")
        if created:
            out.append(f"# HELP {name}_created {doc}\n# TYPE {name}_created gauge\n")
            out.extend(created)
        return True


def _go(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    """The labels as the text format writes them: sorted by name, values escaped."""
    return ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(zip(names, values, strict=True)))


def _le_parts(names: tuple[str, ...], values: tuple[str, ...]) -> tuple[str, str]:
    """The label text before and after ``le``, which sorts in among the others."""
    pairs = sorted(zip(names, values, strict=True))
    before = "".join(f'{k}="{_escape_value(v)}",' for k, v in pairs if k < "le")
    after = "".join(f',{k}="{_escape_value(v)}"' for k, v in pairs if k > "le")
    return before, after
