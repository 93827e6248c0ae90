"""The destinations of the simulated landscape, one module per kind, and their registry.

- `http` shows what arrived on GET endpoints (`HttpDestination`);
- `mllp` forwards HL7 v2 to a listener over MLLP (`MllpDestination`);
- `sql` inserts a row per arrival into a table (`SqlDestination`).
"""

from __future__ import annotations

from probe.sim.config import (
    HttpDestinationConfig,
    MllpDestinationConfig,
    SqlDestinationConfig,
)
from probe.sim.destinations.base import AnyDestinationConfig, Destination, Fate, draw_fate
from probe.sim.destinations.http import HttpDestination
from probe.sim.destinations.mllp import MllpDestination
from probe.sim.destinations.sql import SqlDestination
from probe.sim.truth import TruthLog

__all__ = [
    "Destination",
    "Fate",
    "HttpDestination",
    "MllpDestination",
    "SqlDestination",
    "draw_fate",
    "make_destination",
]


def make_destination(
    name: str, config: AnyDestinationConfig, *, seed: int, truth: TruthLog
) -> Destination:
    """The destination of the kind `config` describes."""
    if isinstance(config, HttpDestinationConfig):
        return HttpDestination(name, config, seed=seed, truth=truth)
    if isinstance(config, MllpDestinationConfig):
        return MllpDestination(name, config, seed=seed, truth=truth)
    assert isinstance(config, SqlDestinationConfig)
    return SqlDestination(name, config, seed=seed, truth=truth)
