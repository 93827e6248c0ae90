"""The exposition (`probe.metrics`) against prometheus_client itself.

The daemon renders the series per (flow, destination) and per flow from its own compact
state (`pair_series`, `flow_series`), and the rest through prometheus_client's public
`generate_latest`. Each test checks a property against an independent implementation:
prometheus_client's own `Histogram`, its own `generate_latest`, its own text parser, and
`promtool check metrics` when installed.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from probe.config.models import Config, FlowSpec, resolve_flows
from probe.metrics.registry import LATENCY_BUCKETS, Metrics
from probe.model import Outcome, Result

SLOT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
# Static labels that sort before, between and after "destination", "flow", "le" and
# "outcome", with values that need escaping (and a "%", which the templates must keep).
STATIC = {"region": 'hoved"staden\\x\nny', "env": "prod", "app": "a%sb", "namespace": "n"}


def _flows(names: list[str], dests: list[str]) -> list[FlowSpec]:
    config = Config.model_validate(
        {
            "flows": [
                {
                    "name": name,
                    "source": {"type": "mllp", "host": "127.0.0.1", "port": 1},
                    "destinations": [
                        {
                            "name": d,
                            "type": "mllp",
                            "listen": "127.0.0.1:2",
                            "slo": {"latency": 2.5},
                        }
                        for d in dests
                    ],
                }
                for name in names
            ]
            + [{"name": "check-only", "source": {"type": "http", "url": "http://127.0.0.1:1/"}}]
        }
    )
    return resolve_flows(config)


def _result(flow: str, dest: str, outcome: Outcome, latency: float | None, **kw: Any) -> Result:
    return Result(
        probe_id="PR0000000000000000001",
        flow=flow,
        destination=dest,
        outcome=outcome,
        latency=latency,
        latency_clock="monotonic",
        duplicates=kw.get("duplicates", 0),
        reason=kw.get("reason"),
        slot=kw.get("slot", SLOT),
        resolved_at=SLOT,
        mismatch=kw.get("mismatch"),
    )


def _samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _fed(seed: int = 1) -> tuple[Metrics, list[Result]]:
    metrics = Metrics(STATIC)
    metrics.declare(_flows(["gs-labka", "gs-epm3", "gs.ris"], ["labka", "epm3"]))
    rng = random.Random(seed)
    results = []
    for _ in range(500):
        flow = rng.choice(["gs-labka", "gs-epm3", "gs.ris"])
        outcome = rng.choice(list(Outcome))
        latency = None if outcome in (Outcome.LOST, Outcome.SEND_ERROR) else rng.expovariate(2)
        # Bounds themselves, too: a value equal to a bound belongs to that bucket.
        if rng.random() < 0.2 and latency is not None:
            latency = rng.choice(LATENCY_BUCKETS)
        result = _result(
            flow,
            rng.choice(["labka", "epm3"]),
            outcome,
            latency,
            duplicates=rng.choice([0, 0, 0, 2]),
            mismatch=rng.choice([None, None, "PID-5"]),
        )
        metrics.observe_result(result, now=1_764_150_000.25)
        results.append(result)
    return metrics, results


def test_the_fast_exposition_has_exactly_the_samples_of_generate_latest() -> None:
    metrics, _ = _fed()
    ours = metrics.exposition().decode("utf-8")
    theirs = generate_latest(metrics.registry).decode("utf-8")
    assert _samples(ours) == _samples(theirs)
    assert len(_samples(ours)) > 200  # 7 pairs, about 33 series each


def _lines(text: str) -> set[tuple[str, float]]:
    """(the series as written, its value): label order and escaping byte for byte."""
    return {
        (series, float(value))
        for series, _, value in (line.rpartition(" ") for line in text.splitlines())
        if series and not series.startswith("#") and "_created{" not in series
    }


def test_the_lines_are_written_as_generate_latest_writes_them() -> None:
    metrics, _ = _fed(seed=5)
    ours = _lines(metrics.exposition().decode("utf-8"))
    theirs = _lines(generate_latest(metrics.registry).decode("utf-8"))
    assert ours == theirs


def test_the_latency_histogram_matches_prometheus_clients_own() -> None:
    metrics, results = _fed(seed=7)
    registry = CollectorRegistry()
    reference = Histogram(
        "probe_latency_seconds", "x", ["flow", "destination"], buckets=LATENCY_BUCKETS,
        registry=registry,
    )  # fmt: skip
    for r in results:
        if r.latency is not None and r.outcome in (Outcome.DELIVERED, Outcome.LATE):
            reference.labels(r.flow, r.destination).observe(r.latency)
    want = {
        (s.name, s.labels["flow"], s.labels["destination"], s.labels.get("le")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }
    got = {
        (s.name, s.labels["flow"], s.labels["destination"], s.labels.get("le")): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
        if s.name.startswith("probe_latency_seconds")
        and (s.labels["flow"], s.labels["destination"])
        in {(r.flow, r.destination) for r in results if r.latency is not None}
    }
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_declared_pairs_start_at_zero_and_unset_gauges_are_absent() -> None:
    metrics = Metrics()
    metrics.declare(_flows(["gs-labka"], ["labka", "epm3"]))
    samples = _samples(metrics.exposition().decode())
    names = {name for name, labels, _ in samples if "destination" in dict(labels)}
    assert not any(n.endswith("_created") for n in names)  # not part of the contract
    assert "probe_success" not in names  # no result yet: no "last result" to show
    results = {
        (dict(labels)["destination"], dict(labels)["outcome"]): value
        for name, labels, value in samples
        if name == "probe_results_total"
    }
    # Both destinations of the flow, and the check-only flow's pair (destination "").
    assert set(results) == {(d, o.value) for d in ("labka", "epm3", "") for o in Outcome}
    assert set(results.values()) == {0}
    slo = {
        dict(labels)["destination"]: value
        for name, labels, value in samples
        if name == "probe_slo_latency_seconds" and dict(labels)["flow"] == "gs-labka"
    }
    assert slo == {"labka": 2.5, "epm3": 2.5}
    # A check (no destinations) is one pair with destination="".
    assert ("probe_duplicates_total", (("destination", ""), ("flow", "check-only")), 0) in samples


def _gauge(metrics: Metrics, name: str) -> float | None:
    samples = _samples(metrics.exposition().decode())
    found = [v for n, labels, v in samples if n == name and dict(labels)["destination"] == "labka"]
    return found[0] if found else None


def test_probe_success_follows_the_newest_slot_not_the_newest_resolution() -> None:
    """A lost probe resolves at its deadline, after the later slots were delivered: the
    gauges must still show the newest slot's result. A probe-side fault moves neither."""
    metrics = Metrics()
    metrics.declare(_flows(["gs-labka"], ["labka"]))
    later = SLOT.replace(minute=SLOT.minute + 1)
    metrics.observe_result(
        _result("gs-labka", "labka", Outcome.DELIVERED, 0.2, slot=later), now=2.0
    )
    metrics.observe_result(_result("gs-labka", "labka", Outcome.LOST, None, slot=SLOT), now=3.0)
    assert _gauge(metrics, "probe_success") == 1.0
    assert _gauge(metrics, "probe_duration_seconds") == 0.2
    newest = later.replace(minute=later.minute + 1)
    fault = _result("gs-labka", "labka", Outcome.OBSERVE_ERROR, None, slot=newest, reason="listen")
    metrics.observe_result(fault, now=4.0)
    assert _gauge(metrics, "probe_success") == 1.0
    metrics.observe_result(_result("gs-labka", "labka", Outcome.LOST, None, slot=newest), now=5.0)
    assert _gauge(metrics, "probe_success") == 0.0


def test_forget_drops_the_pair_and_a_reload_keeps_the_counts() -> None:
    metrics = Metrics()
    flows = _flows(["gs-labka"], ["labka", "epm3"])
    metrics.declare(flows)
    metrics.observe_result(_result("gs-labka", "labka", Outcome.DELIVERED, 0.2), now=1.0)
    metrics.declare(flows)  # a reload declares the flow again
    metrics.forget("gs-labka", ["epm3"])
    samples = _samples(metrics.exposition().decode())
    dests = {dict(labels).get("destination") for name, labels, _ in samples}
    assert "epm3" not in dests
    delivered = [
        v
        for name, labels, v in samples
        if name == "probe_results_total" and dict(labels)["outcome"] == "delivered"
        and dict(labels)["flow"] == "gs-labka"
    ]  # fmt: skip
    assert delivered == [1]


def test_the_per_flow_gauges_follow_the_runner_and_go_with_their_flow() -> None:
    metrics = Metrics(STATIC)
    metrics.declare(_flows(["gs-labka", "gs-epm3"], ["labka"]))
    gauges = metrics.flow("gs-labka")
    gauges.in_flight += 2
    gauges.in_flight -= 1
    metrics.flow("gs-epm3").maintenance = 1.0
    metrics.skip("gs-labka", "store")
    text = metrics.exposition().decode()
    assert _samples(text) == _samples(generate_latest(metrics.registry).decode())
    by_flow = {
        (name, dict(labels)["flow"]): value
        for name, labels, value in _samples(text)
        if name in {"probe_in_flight", "probe_maintenance", "probe_slots_skipped_total"}
    }
    assert by_flow == {
        ("probe_in_flight", "gs-labka"): 1.0,
        ("probe_in_flight", "gs-epm3"): 0.0,
        ("probe_in_flight", "check-only"): 0.0,
        ("probe_maintenance", "gs-labka"): 0.0,
        ("probe_maintenance", "gs-epm3"): 1.0,
        ("probe_maintenance", "check-only"): 0.0,
        ("probe_slots_skipped_total", "gs-labka"): 1.0,
    }
    metrics.forget("gs-labka", ["labka"], whole=True)
    flows = {dict(labels).get("flow") for _, labels, _ in _samples(metrics.exposition().decode())}
    assert "gs-labka" not in flows
    assert "gs-epm3" in flows


def test_the_chunks_make_the_same_text_and_none_is_huge() -> None:
    metrics = Metrics()
    metrics.declare(_flows([f"flow-{i}" for i in range(3000)], ["a", "b"]))
    chunks = list(metrics.exposition_chunks())
    assert b"".join(chunks) == metrics.exposition()
    assert max(map(len, chunks)) < 1_000_000  # the whole text is about 9 MB
    assert all(chunks)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition() -> None:
    metrics, _ = _fed(seed=3)
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=metrics.exposition(),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
