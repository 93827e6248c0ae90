"""In-process: how long the spool codec (`probe.store.spool.encode` / `decode`) takes.

Every item the store writes (claim taken offline, send receipt, sighting, result) is
encoded once on its way in (`Spool.append`, the hot path); records are decoded only when a
spool is replayed or read back after an overflow. The mix is the daemon's: per probe one
claim, one send receipt, and per destination (two) one sighting and one result.

    /work/venv/bin/python bench/spool_codec.py [--probes 20000] [--repeat 5]

Prints the best of ``--repeat`` runs, in microseconds of this process's CPU time per item
(`time.process_time`: on a shared machine the wall clock mostly measures the neighbours),
for each kind and for the mix.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.model import Outcome, Result, Sighting, new_probe_id
from probe.store import ProbeRow, SentRow
from probe.store.spool import decode, encode

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def items(probes: int) -> dict[str, list[Any]]:
    """Per kind, the items of ``probes`` probes with two destinations each."""
    out: dict[str, list[Any]] = {"claim": [], "sent": [], "sighting": [], "result": []}
    for i in range(probes):
        slot = T0 + timedelta(seconds=30 * i)
        probe_id = new_probe_id()
        out["claim"].append(
            ProbeRow(probe_id, "gs-adt", slot, slot, slot + timedelta(minutes=5), "node-a")
        )
        out["sent"].append(SentRow(probe_id, slot + timedelta(milliseconds=3), None, "ACK AA"))
        for dest in ("labka", "epm3"):
            seen = slot + timedelta(seconds=0.123456)
            out["sighting"].append(Sighting(probe_id, dest, seen, 0.0, node="node-a"))
            result = Result(
                probe_id, "gs-adt", dest, Outcome.DELIVERED, 0.120453, "monotonic", 0,
                None, slot, seen, span=30.0,
            )  # fmt: skip
            out["result"].append(result)
    return out


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def measure(kinds: dict[str, Sequence[Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Per kind (and ``mix``), (encode, decode) in microseconds per item."""
    found: dict[str, tuple[float, float]] = {}
    everything = [item for group in kinds.values() for item in group]
    for name, group in [*kinds.items(), ("mix", everything)]:
        lines = [encode(item) for item in group]
        assert [decode(line) for line in lines[:100]] == list(group[:100])
        enc = best(lambda group=group: [encode(item) for item in group], repeat)
        dec = best(lambda lines=lines: [decode(line) for line in lines], repeat)
        found[name] = (enc / len(group) * 1e6, dec / len(group) * 1e6)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, (enc, dec) in measure(items(args.probes), args.repeat).items():
        print(f"{name:9} encode {enc:6.2f} us/item   decode {dec:6.2f} us/item")


if __name__ == "__main__":
    main()
