"""dataflow-probe: end-to-end data-flow probes for hospital integrations."""

__version__ = "0.1.0"
