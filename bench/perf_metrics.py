"""In-process: how long `Metrics.exposition()` takes with 5,000 flows x 3 destinations.

Not a row of its own: it splits row 5 (the scrape over HTTP) into the exposition itself and
the rest, and checks that `Metrics.exposition()` gives exactly the samples of
`prometheus_client.generate_latest` on the same registry (after results of every outcome,
static labels included; parsed by prometheus_client's own parser), so a faster exposition
changes nothing a scraper sees.

    /work/venv/bin/python bench/perf_metrics.py [--flows 5000] [--dests 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from probe.config.models import Config, resolve_flows
from probe.metrics.registry import Metrics
from probe.model import Outcome, Result


def build(flows: int, dests: int, *, labels: dict[str, str] | None = None) -> Metrics:
    config = Config.model_validate(
        {
            "labels": labels or {},
            "flows": [
                {
                    "name": f"flow-{i:05d}",
                    "source": {"type": "mllp", "host": "127.0.0.1", "port": 1},
                    "destinations": [
                        {"name": f"d{j}", "type": "mllp", "listen": "127.0.0.1:2"}
                        for j in range(dests)
                    ],
                }
                for i in range(flows)
            ],
        }
    )
    metrics = Metrics(config.labels)
    metrics.declare(resolve_flows(config))
    return metrics


def feed(metrics: Metrics, flows: int, dests: int, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    outcomes = list(Outcome)
    for _ in range(n):
        outcome = Outcome.DELIVERED if rng.random() < 0.9 else rng.choice(outcomes)
        metrics.observe_result(
            Result(
                probe_id="PR" + "0" * 18,
                flow=f"flow-{rng.randrange(flows):05d}",
                destination=f"d{rng.randrange(dests)}",
                outcome=outcome,
                latency=rng.lognormvariate(-1, 1),
                latency_clock="monotonic",
                duplicates=rng.choice([0, 0, 0, 1]),
                reason=None,
                slot=now,
                resolved_at=now,
                mismatch="PID-5" if rng.random() < 0.05 else None,
            ),
            now=time.time(),
        )


def timed(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def same_samples(a: bytes, b: bytes) -> bool:
    def samples(text: bytes) -> set[tuple[object, ...]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text.decode("utf-8"))
            for s in family.samples
        }

    return samples(a) == samples(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--dests", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # Equality first, on a small registry with static labels and escaping-worthy values.
    small = build(50, 2, labels={"region": 'hoved"staden\\x', "env": "prod"})
    feed(small, 50, 2, 2000)
    same = same_samples(small.exposition(), generate_latest(small.registry))
    print(f"exposition() has the samples of generate_latest(): {same}")
    metrics = build(args.flows, args.dests)
    feed(metrics, args.flows, args.dests, args.flows * args.dests)
    body = metrics.exposition()
    lines = body.count(b"\n")
    ours = timed(metrics.exposition, args.repeat)
    ref = timed(lambda: generate_latest(metrics.registry), args.repeat)
    same_big = same_samples(metrics.exposition(), generate_latest(metrics.registry))
    print(
        f"{args.flows} flows x {args.dests} destinations: {len(body) / 1e6:.1f} MB, "
        f"{lines} lines; Metrics.exposition() median "
        f"{statistics.median(ours) * 1000:.0f} ms (min {min(ours) * 1000:.0f}); "
        f"generate_latest median {statistics.median(ref) * 1000:.0f} ms; equal: {same_big}"
    )
    # A second exposition after a few results changed (the common case between scrapes).
    feed(metrics, args.flows, args.dests, 500, seed=2)
    again = timed(metrics.exposition, 1)[0]
    same = same_samples(metrics.exposition(), generate_latest(metrics.registry))
    print(f"after 500 more results: {again * 1000:.0f} ms; equal: {same}")


if __name__ == "__main__":
    main()
