"""A mergeable latency histogram with 1% relative error (log-spaced buckets, as DDSketch).

Bucket ``i`` holds values in (G^(i-1), G^i] with G = (1+A)/(1-A) and A = `ALPHA`; reporting
a bucket as 2G^i/(G+1) is within A of every value in it. Buckets merge by adding counts, so hourly
rollups add up to exact-to-1% monthly percentiles without keeping raw latencies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-6  # 1 µs: anything faster is reported as this


def bucket(value: float) -> int:
    return math.ceil(math.log(max(value, MIN_VALUE)) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    return 2 * GAMMA**index / (GAMMA + 1)


@dataclass(slots=True)
class Sketch:
    """Counts per bucket; ``Sketch.of([0.3, 0.31]).quantile(0.5)`` is within 1% of 0.3."""

    counts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    @classmethod
    def from_json(cls, text: str) -> Sketch:
        return cls({int(k): int(v) for k, v in json.loads(text or "{}").items()})

    def to_json(self) -> str:
        return json.dumps(
            {str(k): v for k, v in sorted(self.counts.items())}, separators=(",", ":")
        )

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def add(self, value: float, count: int = 1) -> None:
        index = bucket(value)
        self.counts[index] = self.counts.get(index, 0) + count

    def merge(self, other: Sketch | Mapping[int, int]) -> None:
        counts = other.counts if isinstance(other, Sketch) else other
        for index, count in counts.items():
            self.counts[index] = self.counts.get(index, 0) + count

    def quantile(self, q: float) -> float | None:
        """The value at rank q·(n-1) (lower), within 1%; None when empty."""
        total = self.count
        if total == 0:
            return None
        rank = q * (total - 1)
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen > rank:
                return bucket_value(index)
        return bucket_value(max(self.counts))
