"""The series of each flow, ``probe_in_flight`` and ``probe_maintenance``, kept compact.

    series = FlowSeries({"region": "hovedstaden"})
    gauges = series.flow("gs-adt")     # made once, kept: the runner holds it per flow
    gauges.in_flight += 1              # a probe started
    gauges.maintenance = 1.0           # a window covers the flow
    text = "".join(series.render())    # both families in the text format

The reason is `PairSeries`'s: a prometheus_client gauge child per flow, two per flow at
5,000 flows, is rendered by `generate_latest` some eight times slower than this (about 185
against 22 ms a scrape on the 2-core bench machine), which would nearly double the time of
a whole scrape. The names, labels, values and meaning are those of the gauges they replace.
`collect()` gives the same series as prometheus_client families, for `generate_latest`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from probe.metrics.text import chunked, label_text, single_family

# (name, type, help) of each family and the `FlowGauges` attribute, in the order exported.
IN_FLIGHT = ("probe_in_flight", "gauge", "Probes sent and not resolved.")
MAINTENANCE = ("probe_maintenance", "gauge", "1 while a maintenance window covers the flow.")
_FAMILIES = ((IN_FLIGHT, "in_flight"), (MAINTENANCE, "maintenance"))


class FlowGauges:
    """The gauges of one flow. ``maintenance`` is None (not exported) until it is set."""

    __slots__ = ("in_flight", "labels", "maintenance", "text")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.text = label_text(labels.items())  # as the exposition writes it
        self.in_flight = 0.0
        self.maintenance: float | None = None


class FlowSeries(Collector):
    """The per-flow series of the daemon, for all flows, in one collector."""

    def __init__(self, static_labels: Mapping[str, str]) -> None:
        self.static = dict(static_labels)
        self.flows: dict[str, FlowGauges] = {}

    def flow(self, name: str) -> FlowGauges:
        """The gauges of flow ``name``, made on first use (``in_flight`` at 0)."""
        gauges = self.flows.get(name)
        if gauges is None:
            gauges = self.flows[name] = FlowGauges({"flow": name, **self.static})
        return gauges

    def forget(self, name: str) -> None:
        """Stop exporting the flow's series (a reload removed it)."""
        self.flows.pop(name, None)

    def render(self) -> Iterator[str]:
        """The text format of both families, in chunks of at most `text.CHUNK` flows."""
        chunks = chunked(list(self.flows.values()))
        for (name, kind, doc), attr in _FAMILIES:
            yield from single_family(name, kind, doc, attr, chunks)

    def collect(self) -> Iterator[Metric]:
        """The same series as prometheus_client families (slow; for `generate_latest`)."""
        flows = list(self.flows.values())
        names = ["flow", *self.static]
        for (name, _, doc), attr in _FAMILIES:
            family = GaugeMetricFamily(name, doc, labels=names)
            for gauges in flows:
                value = getattr(gauges, attr)
                if value is not None:
                    family.add_metric([gauges.labels[n] for n in names], value)
            yield family
