"""The series of each (flow, destination) pair, kept compact and rendered fast.

With 5,000 flows x 3 destinations, prometheus_client's labelled children cost about 380 B
and 35 µs each to create (150,000 of them: 57 MB and 3.8 s at start-up), and its exposition
about 12 µs a sample (bench/RESULTS.md, rows 4, 5 and 7). Here a pair is one small object
with its counts in two lists, and the text format is written a pair at a time from
templates made once. The names, types, labels and meaning of the series are the same as
before; the `_created` series prometheus_client adds to counters and histograms are not
exported (they are not part of the contract, docs/metrics.md).

`collect()` gives the same series as prometheus_client families, so `generate_latest` and
any other exposition of the registry still work; tests compare the two renderings. The text
format itself (escaping, help lines, numbers) is written once, in `probe.metrics.text`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from itertools import accumulate

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from probe.metrics.text import chunked, escape, header, label_text, number, single_family
from probe.model import Outcome, Result

OUTCOMES = tuple(Outcome)
_OUTCOME_INDEX = {outcome: i for i, outcome in enumerate(OUTCOMES)}

# (name, type, help) of each family, in the order they are exported.
SUCCESS = ("probe_success", "gauge", "1 if the last result was delivered, else 0.")
DURATION = ("probe_duration_seconds", "gauge", "Latency of the last result.")
RESULTS = ("probe_results", "counter", "Results by outcome.")
LATENCY = ("probe_latency_seconds", "histogram", "Latency of delivered and late results.")
LAST_DELIVERED = (
    "probe_last_delivered_timestamp_seconds",
    "gauge",
    "Unix time of the last delivered result.",
)
SLO_OBJECTIVE = ("probe_slo_objective_ratio", "gauge", "Configured SLO objective.")
SLO_LATENCY = ("probe_slo_latency_seconds", "gauge", "Configured SLO latency.")
DUPLICATES = ("probe_duplicates", "counter", "Extra copies of probes seen at a destination.")
MISMATCHES = (
    "probe_content_mismatches",
    "counter",
    "Results whose message arrived with changed content (e.g. a mangled name).",
)
# Gauges and counters with one value per pair: the family, and the _Pair attribute.
_SINGLE = (
    (SUCCESS, "success"),
    (DURATION, "duration"),
    (LAST_DELIVERED, "last_delivered"),
    (SLO_OBJECTIVE, "slo_objective"),
    (SLO_LATENCY, "slo_latency"),
    (DUPLICATES, "duplicates"),
    (MISMATCHES, "mismatches"),
)


class _Pair:
    """One (flow, destination). A gauge that was never set is None and not exported."""

    __slots__ = (
        "buckets",
        "duplicates",
        "duration",
        "labels",
        "last_delivered",
        "latency_sum",
        "mismatches",
        "newest_slot",
        "results",
        "slo_latency",
        "slo_objective",
        "success",
        "text",
    )

    def __init__(self, labels: dict[str, str], text: str, buckets: int) -> None:
        self.labels = labels
        self.text = text  # the label text, as the exposition writes it
        self.results = [0] * len(OUTCOMES)
        self.buckets = [0] * buckets  # not cumulative; the last one is +Inf
        self.latency_sum = 0.0
        self.duplicates = 0
        self.mismatches = 0
        self.success: float | None = None
        self.duration: float | None = None
        self.last_delivered: float | None = None
        self.newest_slot: datetime | None = None  # the slot `success` and `duration` are from
        self.slo_objective: float | None = None
        self.slo_latency: float | None = None


class PairSeries(Collector):
    """Every per-destination series of the daemon, for all pairs, in one collector."""

    def __init__(self, static_labels: Mapping[str, str], buckets: Sequence[float]) -> None:
        self.static = dict(static_labels)
        self.bounds = tuple(float(b) for b in buckets)
        self.pairs: dict[tuple[str, str], _Pair] = {}
        # Labels are written sorted by name, as prometheus_client does. "flow" and
        # "destination" sort before "le" and "outcome"; a static label may sort anywhere,
        # so the text of the static ones after "le" (`mid`, up to "outcome") and after
        # "outcome" (`tail`) is the same for every pair, and goes into the templates.
        ordered = sorted(self.static.items())
        self._mid = "".join(f',{k}="{escape(v)}"' for k, v in ordered if "le" < k < "outcome")
        self._tail = "".join(f',{k}="{escape(v)}"' for k, v in ordered if k > "outcome")
        rest = (self._mid + self._tail).replace("%", "%%")
        mid, tail = self._mid.replace("%", "%%"), self._tail.replace("%", "%%")
        les = [*(number(b) for b in self.bounds), "+Inf"]
        name = LATENCY[0]
        # One template per family and pair; every "%s" is the pair's label text or a value.
        self._histogram = (
            "".join(f'{name}_bucket{{%s,le="{le}"{rest}}} %d\n' for le in les)
            + f"{name}_count{{%s{rest}}} %d\n{name}_sum{{%s{rest}}} %s\n"
        )
        self._results = "".join(
            f'{RESULTS[0]}_total{{%s{mid},outcome="{outcome.value}"{tail}}} %d\n'
            for outcome in OUTCOMES
        )

    # -- updates --------------------------------------------------------------------------

    def pair(self, flow: str, destination: str) -> _Pair:
        pair = self.pairs.get((flow, destination))
        if pair is None:
            labels = {"flow": flow, "destination": destination, **self.static}
            # The labels that sort before "le"; the others are `_mid` and `_tail`.
            text = label_text((k, v) for k, v in labels.items() if k < "le")
            pair = self.pairs[(flow, destination)] = _Pair(labels, text, len(self.bounds) + 1)
        return pair

    def declare(self, flow: str, destination: str, *, latency: float, objective: float) -> None:
        pair = self.pair(flow, destination)
        pair.slo_latency = float(latency)
        pair.slo_objective = float(objective)

    def forget(self, flow: str, destination: str) -> None:
        self.pairs.pop((flow, destination), None)

    def observe(self, result: Result, *, now: float) -> None:
        pair = self.pair(result.flow, result.destination)
        outcome, latency = result.outcome, result.latency
        pair.results[_OUTCOME_INDEX[outcome]] += 1
        if result.duplicates:
            pair.duplicates += result.duplicates
        if result.mismatch:
            pair.mismatches += 1
        # The gauges follow the newest slot, not the newest resolution: a lost probe resolves
        # at its deadline, after later probes that were delivered.
        newest = pair.newest_slot is None or result.slot >= pair.newest_slot
        if newest and result.measured:
            pair.newest_slot = result.slot
            pair.success = 1.0 if outcome.good else 0.0
        if latency is not None and outcome in (Outcome.DELIVERED, Outcome.LATE):
            if newest:
                pair.duration = latency
            # prometheus_client's rule: a value goes in the first bucket whose bound >= it.
            pair.buckets[bisect.bisect_left(self.bounds, latency)] += 1
            pair.latency_sum += latency
        if outcome is Outcome.DELIVERED:
            pair.last_delivered = now

    # -- exposition -----------------------------------------------------------------------

    def render(self) -> Iterator[str]:
        """The text format of every family, in chunks of at most `text.CHUNK` pairs."""
        chunks = chunked(list(self.pairs.values()))
        rest = self._mid + self._tail
        for (name, kind, doc), attr in _SINGLE[:2]:
            yield from single_family(name, kind, doc, attr, chunks, rest=rest)
        yield header(f"{RESULTS[0]}_total", RESULTS[1], RESULTS[2])
        results = self._results
        for chunk in chunks:
            out = []
            for p in chunk:
                args: list[object] = [p.text, 0] * len(OUTCOMES)
                args[1::2] = p.results
                out.append(results % tuple(args))
            yield "".join(out)
        yield header(*LATENCY)
        histogram, steps = self._histogram, len(self.bounds) + 3
        for chunk in chunks:
            out = []
            for p in chunk:
                counts = list(accumulate(p.buckets))
                args = [p.text, 0] * steps
                args[1::2] = [*counts, counts[-1], number(p.latency_sum)]
                out.append(histogram % tuple(args))
            yield "".join(out)
        for (name, kind, doc), attr in _SINGLE[2:]:
            yield from single_family(name, kind, doc, attr, chunks, rest=rest)

    def collect(self) -> Iterator[Metric]:
        """The same series as prometheus_client families (slow; for `generate_latest`)."""
        pairs = list(self.pairs.values())
        names = ["flow", "destination", *self.static]
        yield from _singles(_SINGLE[:2], pairs, names)
        results = _family(RESULTS, [*names, "outcome"])
        for p in pairs:
            for outcome, count in zip(OUTCOMES, p.results, strict=True):
                results.add_metric([*(p.labels[n] for n in names), outcome.value], count)  # type: ignore[attr-defined]
        yield results
        latency = _family(LATENCY, names)
        les = [*(number(b) for b in self.bounds), "+Inf"]
        for p in pairs:
            counts = list(accumulate(p.buckets))
            latency.add_metric(  # type: ignore[attr-defined]
                [p.labels[n] for n in names],
                list(zip(les, counts, strict=True)),
                p.latency_sum,
            )
        yield latency
        yield from _singles(_SINGLE[2:], pairs, names)


def _family(spec: tuple[str, str, str], labels: list[str]) -> Metric:
    name, kind, doc = spec
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    return HistogramMetricFamily(name, doc, labels=labels)


def _singles(
    specs: tuple[tuple[tuple[str, str, str], str], ...], pairs: list[_Pair], names: list[str]
) -> Iterator[Metric]:
    """Families with one value per pair, as prometheus_client families."""
    for spec, attr in specs:
        metric = _family(spec, names)
        for p in pairs:
            value = getattr(p, attr)
            if value is not None:
                metric.add_metric([p.labels[n] for n in names], value)  # type: ignore[attr-defined]
        yield metric
