"""Prometheus metrics: the daemon's registry, the per-pair and per-flow series, the text format."""
