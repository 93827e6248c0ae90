"""Rollup hours added up: the totals of a day or a month, of one flow and destination.

>>> month = Totals()
>>> for day in days:          # `probe.store.queries.daily_totals`
...     month.add(day)
>>> month.availability        # delivered / counted outside maintenance; None: no results
0.9991
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from probe.store.rows import OUTCOMES
from probe.store.sketch import Sketch


@dataclass(slots=True)
class Totals:
    """Rollup hours added up: a day's or a month's, of one flow and destination."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    maintenance: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    latency_max: float | None = None
    not_measured: int = 0  # probe-side faults
    measured_s: float = 0.0  # seconds measured slots stand for, maintenance included
    counted_s: float = 0.0  # the same outside maintenance
    down_s: float = 0.0  # the part of counted_s in incidents
    first_hour: datetime | None = None  # the first hour with a measured result

    @property
    def counted(self) -> int:
        return sum(self.counts.values())

    @property
    def measured_slots(self) -> int:
        return self.counted + self.maintenance

    def add(self, other: Totals) -> None:
        for name in OUTCOMES:
            self.counts[name] += other.counts[name]
        self.maintenance += other.maintenance
        self.sketch.merge(other.sketch)
        if other.latency_max is not None:
            self.latency_max = max(other.latency_max, self.latency_max or 0.0)
        self.not_measured += other.not_measured
        self.measured_s += other.measured_s
        self.counted_s += other.counted_s
        self.down_s += other.down_s
        if other.first_hour is not None:
            self.first_hour = min(other.first_hour, self.first_hour or other.first_hour)

    @property
    def availability(self) -> float | None:
        return self.counts["delivered"] / self.counted if self.counted else None
