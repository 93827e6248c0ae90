"""Active-active HA: two real `probe run` processes share one PostgreSQL store.

Both daemons run the same flows (20 flows, each every 1 s: an HTTP POST into the
simulator's engine, seen at its HTTP destination with the destination's own arrival time),
against a real `probe sim` process. The two config files differ only in `server.listen`,
which cannot be shared. The daemons run as `probe run --node node-a` and `--node node-b`
(the default, the host name, is the same for both here), each in a working folder of its
own as on two hosts; the `probes.node` column says who claimed what.

After about 50 s `node-b` is SIGKILLed, 0.3 s into a slot, while its probes of that slot
are sent and not yet seen (the destination shows each message 0.7 s late). `node-a` runs
on, and the whole run lasts more than 2 minutes: long enough for `node-b`'s last probes to
pass their deadline plus `ADOPT_AFTER`, and for the survivor's next look for overdue probes
(every `ADOPT_EVERY`), which must adopt and resolve them. Then `node-a` is stopped with
SIGTERM and must exit 0.

What is asserted (invariant 3, and the HA requirements of issue 6):

- **One probe per flow and slot.** No (flow, slot) has two probe rows (the unique claim),
  and no (flow, slot, destination) has results from two different probes.
- **The work is shared.** Before the kill, each node claimed at least a fifth of the
  slots.
- **No slot gap after a kill.** "After one node is killed, there is no slot gap longer than
  one interval" is read strictly: for every flow, the probed slots are consecutive, i.e.
  two consecutive probed slots are exactly one interval apart, from the flow's first slot
  to the last slot before the survivor was stopped. No slot is missing, not even the one in
  flight at the kill: the killed node's claim is a stored row, so that slot is probed (by
  the dead node) and must not be probed again. Before the kill both nodes fire every slot,
  so the same holds there.
- **Every probe resolves.** The kill left some of `node-b`'s probes open (checked, so
  adoption is really exercised). Every probe, the survivor's and the dead node's, ends with a
  result for its destination, and every result is `delivered` (the simulator loses
  nothing). The dead node's unresolved probes can only be resolved by the survivor adopting
  them once overdue (`probe.engine.recovery.ADOPT_AFTER` past their deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, defaultdict
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.engine.recovery import ADOPT_AFTER, ADOPT_EVERY
from tests.helpers import (
    child_process,
    closed_port,
    fetch_rows,
    kill_process,
    probe_argv,
    stop_process,
    wait_for,
    wait_for_event,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FLOWS = 20
INTERVAL = 1.0
TIMEOUT = 3.0
KILL_AFTER = 50.0
MIN_RUN = 125.0  # the issue asks for at least 2 minutes
# After the kill: the dead node's last deadline, ADOPT_AFTER, the survivor's next look for
# overdue probes (every ADOPT_EVERY), and time to resolve them.
ADOPT_WAIT = TIMEOUT + ADOPT_AFTER.total_seconds() + ADOPT_EVERY + 10.0
DELAY = 0.7  # each probe is in flight for most of its interval, so a kill leaves some open


def _sim_config(engine: int, labka: int) -> dict[str, Any]:
    return {
        "seed": 61,
        "truth": None,
        "engine": {"listen": f"127.0.0.1:{engine}"},
        "destinations": {
            "labka": {"listen": f"127.0.0.1:{labka}", "delay": {"fixed": f"{int(DELAY * 1000)}ms"}}
        },
    }


def _probe_config(store_url: str, *, engine: int, labka: int, server: int) -> dict[str, Any]:
    def flow(n: int) -> dict[str, Any]:
        return {
            "name": f"ha-{n:02d}",
            "source": {
                "type": "http",
                "method": "POST",
                "url": f"http://127.0.0.1:{engine}/gs/events",
                "headers": {"Content-Type": "application/json"},
                "body": '{"probe_id": "${probe_id}"}',
                "expect_status": [202],
            },
            "destinations": [
                {
                    "name": "labka",
                    "type": "http",
                    "url": f"http://127.0.0.1:{labka}/received?probe_id=${{probe_id}}",
                    "match": {"jsonpath": "$.events[*].probe_id"},
                    "time_field": "received_at",
                }
            ],
        }

    return {
        "store": {"url": store_url, "flush_interval": "100ms"},
        "server": {"listen": f"127.0.0.1:{server}"},
        "shutdown_grace": "15s",  # above the timeout: SIGTERM resolves every probe
        "defaults": {
            "interval": f"{int(INTERVAL)}s",
            "timeout": f"{int(TIMEOUT)}s",
            "poll": "250ms",
            "slo": {"latency": "2s"},
        },
        "flows": [flow(n) for n in range(FLOWS)],
    }


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def test_two_nodes_share_slots_and_survivor_carries_on(
    postgres_url: str, tmp_path: Path
) -> None:
    engine, labka = closed_port(), closed_port()
    ports = {"node-a": closed_port(), "node-b": closed_port()}
    sim_file = _write(tmp_path / "sim.yaml", _sim_config(engine, labka))
    files = {
        node: _write(
            tmp_path / f"{node}.yaml",
            _probe_config(postgres_url, engine=engine, labka=labka, server=port),
        )
        for node, port in ports.items()
    }
    upgrade = await asyncio.create_subprocess_exec(
        *probe_argv("db", "upgrade", "-c", str(files["node-a"])),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert await asyncio.wait_for(upgrade.wait(), timeout=60) == 0
    logs = {name: tmp_path / f"{name}.log" for name in ("sim", "node-a", "node-b")}

    def daemon(node: str) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
        """`probe run` as ``node``, in a working folder of its own, as on two hosts."""
        home = tmp_path / node
        home.mkdir()
        argv = probe_argv("run", "-c", str(files[node]), "--node", node)
        return child_process(argv, logs[node], cwd=home)

    async def dead_node_resolved() -> bool:
        probe_rows, result_rows = await fetch_rows(postgres_url)
        done = {r.probe_id for r in result_rows}
        return all(p.probe_id in done for p in probe_rows if p.node == "node-b")

    async with (
        child_process(probe_argv("sim", "-c", str(sim_file)), logs["sim"], cwd=tmp_path) as sim,
        daemon("node-a") as node_a,
        daemon("node-b") as node_b,
    ):
        await wait_for_event(sim, logs["sim"], "sim_started")
        await wait_ready(node_a, logs["node-a"], ports["node-a"])
        await wait_ready(node_b, logs["node-b"], ports["node-b"])
        started_at = time.time()
        # Kill a little after a slot starts: node-b's probes of that slot are claimed and
        # sent, and their destination shows them only DELAY after the send. Which node wins
        # each claim is a race, so wait for a slot in which node-b holds some.
        kill_at = int(started_at + KILL_AFTER) + 0.3
        open_at_kill: list[str] = []
        for _ in range(10):
            await asyncio.sleep(kill_at - time.time())  # the moment of the kill is under test
            probe_rows, result_rows = await fetch_rows(postgres_url)
            done = {r.probe_id for r in result_rows}
            open_at_kill = [
                p.probe_id for p in probe_rows if p.node == "node-b" and p.probe_id not in done
            ]
            if open_at_kill:
                break
            kill_at += INTERVAL
        killed_at = time.time()
        await kill_process(node_b)
        # At least 2 minutes in all (the run's length is under test); longer while the dead
        # node's probes are unresolved and the survivor may still adopt them.
        await asyncio.sleep(max(0.0, started_at + MIN_RUN - time.time()))
        with contextlib.suppress(AssertionError):  # asserted below, after the other checks
            await wait_for(
                dead_node_resolved, limit=max(0.0, killed_at + ADOPT_WAIT - time.time()), every=2
            )
        assert node_a.returncode is None, "the survivor died"
        stopped_at = time.time()
        code = await stop_process(node_a, limit=40)
        assert code == 0, logs["node-a"].read_text()[-3000:]
        assert await stop_process(sim, limit=15) == 0

    probe_rows, result_rows = await fetch_rows(postgres_url)
    interval = timedelta(seconds=INTERVAL)
    assert {p.flow for p in probe_rows} == {f"ha-{n:02d}" for n in range(FLOWS)}

    # One probe per flow and slot; no flow, slot and destination has two probes' results.
    claims = Counter((p.flow, p.slot_at) for p in probe_rows)
    assert not [k for k, n in claims.items() if n > 1], "a slot was claimed twice"
    by_id = {p.probe_id: p for p in probe_rows}
    assert all(
        (by_id[r.probe_id].flow, by_id[r.probe_id].slot_at) == (r.flow, r.slot_at)
        for r in result_rows
    ), "a result names another flow or slot than its probe"
    per_slot = Counter((r.flow, r.slot_at, r.destination) for r in result_rows)
    doubled = sorted(k for k, n in per_slot.items() if n > 1)
    assert not doubled, f"results from two probes for one flow and slot: {doubled[:10]}"

    # Both nodes probed before the kill.
    before = Counter(p.node for p in probe_rows if p.claimed_at.timestamp() < killed_at)
    assert set(before) == {"node-a", "node-b"}, before
    assert min(before.values()) >= 0.2 * sum(before.values()), f"work not shared: {before}"
    after = Counter(p.node for p in probe_rows if p.slot_at.timestamp() > killed_at + INTERVAL)
    assert set(after) == {"node-a"}, f"claims after the kill: {after}"

    # No slot gap: every flow has every slot, from its first to the last before the stop.
    slots: dict[str, list[Any]] = defaultdict(list)
    for p in probe_rows:
        slots[p.flow].append(p.slot_at)
    gaps = []
    for flow, times in sorted(slots.items()):
        times.sort()
        for a, b in itertools.pairwise(times):
            if b - a != interval:
                gaps.append(f"{flow}: {a:%H:%M:%S} -> {b:%H:%M:%S} ({(b - a).total_seconds()}s)")
        if times[-1].timestamp() < stopped_at - 2 * INTERVAL:
            gaps.append(f"{flow}: last slot {times[-1]:%H:%M:%S}, stopped at {stopped_at:.0f}")
    kill = f"kill at {time.strftime('%H:%M:%S', time.gmtime(killed_at))} UTC"
    assert not gaps, f"slots missing ({kill}):\n" + "\n".join(gaps[:50])

    # Every probe resolved, the survivor's and the dead node's, and every one delivered.
    assert open_at_kill, "the kill left no probe of node-b open: adoption was not exercised"
    results_of = {r.probe_id: r for r in result_rows}
    unresolved = Counter(p.node for p in probe_rows if p.probe_id not in results_of)
    bad = Counter(
        (by_id[r.probe_id].node, r.outcome, r.reason)
        for r in result_rows
        if r.outcome != "delivered"
    )
    assert not unresolved.get("node-a"), (
        f"the survivor left its own probes unresolved: {unresolved}"
    )
    dead_open = sorted(
        f"{p.probe_id} {p.flow} slot {p.slot_at:%H:%M:%S} deadline {p.deadline_at:%H:%M:%S}"
        for p in probe_rows
        if p.node == "node-b" and p.probe_id not in results_of
    )
    assert not dead_open, (
        f"{len(dead_open)} probes of the killed node-b were never resolved: the survivor ran "
        f"{time.time() - killed_at:.0f}s past the kill ({kill}), more than timeout + "
        f"ADOPT_AFTER ({ADOPT_WAIT - 10:.0f}s), and did not adopt them:\n" + "\n".join(dead_open)
    )
    assert not bad, f"results other than delivered: {bad}"
