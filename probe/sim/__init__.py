"""A fake hospital integration landscape for the demo, the tests and the benchmarks.

An engine takes probe messages from the source system GS and makes them visible, after a
configured delay, at destinations such as Labka and EPM3, with loss, duplicates and outage
windows. A ground-truth log records what really happened to each message.
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
