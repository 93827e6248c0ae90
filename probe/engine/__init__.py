"""The engine: the daemon's wiring, the schedule, the runner, recovery and supervision."""
