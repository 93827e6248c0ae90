"""Prometheus metrics: the daemon's registry and the per-pair series."""
