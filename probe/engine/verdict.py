"""What a sighting says about a probe: the outcome, why, the latency and its clock.

    verdict = judge(sighting, message, timeout=300.0, slo_latency=30.0, sent_mono=t0)
    verdict.outcome, verdict.latency, verdict.clock   # Outcome.DELIVERED, 0.42, "monotonic"

Pure: the runner turns a verdict into a stored `Result`, with its metrics and log line.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.model import Outcome, ProbeMessage, Sighting


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a sighting. ``clock``: ``destination``, ``monotonic`` or ``wall``."""

    outcome: Outcome
    reason: str | None
    latency: float
    clock: str


def judge(
    sighting: Sighting,
    message: ProbeMessage,
    *,
    timeout: float,
    slo_latency: float,
    sent_mono: float,
    resumed: bool = False,
    remote: bool = False,
) -> Verdict:
    """Delivered within ``slo_latency``, late within ``timeout``, lost when seen past it.

    ``resumed``: the probe was sent before a restart; ``remote``: another node saw it. Both
    read the latency from the wall clocks, unless the destination gave its own time. A
    resumed probe judged by the wall clocks and not delivered is late, with reason
    ``seen_after_restart``: it was seen, but while we were down, so when is not known.
    """
    latency, clock = latency_of(sighting, message, sent_mono=sent_mono, wall=resumed or remote)
    if latency > timeout:
        outcome, reason = Outcome.LOST, "seen_after_deadline"
    elif latency <= slo_latency:
        outcome, reason = Outcome.DELIVERED, None
    else:
        outcome, reason = Outcome.LATE, None
    if resumed and clock == "wall" and outcome is not Outcome.DELIVERED:
        outcome, reason = Outcome.LATE, "seen_after_restart"
    return Verdict(outcome, reason, latency, clock)


def latency_of(
    sighting: Sighting, message: ProbeMessage, *, sent_mono: float, wall: bool
) -> tuple[float, str]:
    """Latency and the clock it came from: the destination's own, else our monotonic clock,
    else (``wall``: a restart in between, or another node's sighting) the wall clocks."""
    if sighting.arrived_at is not None:
        return (sighting.arrived_at - message.sent_at).total_seconds(), "destination"
    if wall:
        return (sighting.seen_at - message.sent_at).total_seconds(), "wall"
    return sighting.seen_mono - sent_mono, "monotonic"
