"""A fake hospital integration landscape for the demo, the tests and the benchmarks.

Two engines take probe messages from the source system GS: one over HTTP (`engine`), one
over HL7 v2 / MLLP (`mllp_engine`). They deliver them, after a configured delay, to
destinations such as Labka and EPM3, of three kinds: `http` (shown on GET endpoints),
`mllp` (forwarded to a listener, e.g. the daemon's) and `sql` (inserted as rows). Loss,
duplicates, reordering, charset corruption and outage windows are configurable per
destination. A ground-truth log records what really happened to each message.
"""

from probe.sim.config import SimConfig, load_sim_config, parse_sim_config
from probe.sim.simulator import Simulator
from probe.sim.truth import TruthRecord, read_truth

__all__ = [
    "SimConfig",
    "Simulator",
    "TruthRecord",
    "load_sim_config",
    "parse_sim_config",
    "read_truth",
]
