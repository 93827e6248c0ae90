"""The performance suite of issue 7, in one command.

    /work/venv/bin/python bench/run_all.py                # every row, full length (~15 min)
    /work/venv/bin/python bench/run_all.py --quick        # every row, short (~1 min a row)
    /work/venv/bin/python bench/run_all.py --only 1,3     # some rows
    /work/venv/bin/python bench/run_all.py --write        # also update bench/RESULTS.md

Rows (targets from the issue):

1. end-to-end MLLP probes/s sustained, scheduler lag p99 < 50 ms, no unresolved probes:
   >= 1,000 probes/s (`bench/perf_mllp.py`, stepped rates)
2. CPU per plain HTTP check, ours / prometheus-blackbox-exporter, same nginx, same rate,
   one run: <= 0.5 (`bench/perf_http.py`)
3. MLLP push latency error against the simulator's truth at 500 probes/s: p99 <= 2 ms
   (`bench/perf_mllp.py`)
4. RSS with 5,000 flows x 3 destinations, idle and at 1 probe/min: <= 150 MB
5. /metrics scrape time with 5,000 flows x 3 destinations: <= 200 ms
7. start-up to first probe with 5,000 flows: <= 3 s (4, 5, 7: `bench/perf_scale.py`)
6. store write throughput, batched, SQLite and PostgreSQL: >= 20,000 results/s
   (`bench/perf_store.py`)

Everything runs against 127.0.0.1 on ports 19000-19999; every process started is stopped.
Needs nginx, wrk and prometheus-blackbox-exporter (Debian) for row 2, PostgreSQL on
127.0.0.1:5432 (user postgres, trust) for row 6. `--write` replaces the section
"## Performance suite (issue 7)" at the end of bench/RESULTS.md (or appends it) with the
table, the machine, the date, the git revision and the command; the prose notes written
under "### Profiles and findings" in that section are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perf_common import ROOT, RowResult, machine, say

SECTION = "## Performance suite (issue 7)"
KEEP = "### Profiles and findings"
NAMES = {
    1: "E2E MLLP probes/s sustained",
    2: "CPU per HTTP check vs blackbox",
    3: "MLLP push latency error @ 500/s",
    4: "RSS, 5,000 flows x 3 destinations",
    5: "/metrics scrape, 5,000 x 3",
    6: "Store write throughput",
    7: "Start-up to first probe, 5,000 flows",
}
TARGETS = {
    1: ">= 1,000 probes/s",
    2: "<= 0.5",
    3: "p99 abs error <= 2 ms",
    4: "<= 150 MB",
    5: "<= 200 ms",
    6: ">= 20,000 results/s",
    7: "<= 3 s",
}


def run_rows(rows: list[int], *, quick: bool) -> list[RowResult]:
    from bench import perf_http, perf_mllp, perf_scale, perf_store

    out: list[RowResult] = []

    def guarded(row: int, fn: object) -> None:
        say(f"row {row}: {NAMES[row]} ...")
        t0 = time.monotonic()
        try:
            got = fn()  # type: ignore[operator]
            out.extend(got if isinstance(got, list) else [got])
        except Exception as exc:  # one broken row must not lose the others
            traceback.print_exc()
            out.append(RowResult(row, NAMES[row], None, "", TARGETS[row], None,
                                 notes=[f"failed: {type(exc).__name__}: {exc}"]))  # fmt: skip
        say(f"row {row}: done in {time.monotonic() - t0:.0f}s")

    if 1 in rows:
        guarded(1, lambda: perf_mllp.row1(quick=quick))
    if 2 in rows:
        guarded(2, lambda: perf_http.row2(quick=quick))
    if 3 in rows:
        guarded(3, lambda: perf_mllp.row3(quick=quick))
    scale = {4, 5, 7} & set(rows)
    if scale:
        guarded(min(scale), lambda: perf_scale.rows457(quick=quick, only=scale))
    if 6 in rows:
        guarded(6, lambda: perf_store.row6(quick=quick))
    return sorted(out, key=lambda r: r.row)


def table(results: list[RowResult]) -> str:
    lines = [
        "| # | measure | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.row} | {r.name} | {r.shown()} | {r.target} | {met} |")
    return "\n".join(lines)


def section(results: list[RowResult], info: dict[str, str], command: str, kept: str) -> str:
    notes = []
    for r in results:
        for note in r.notes:
            notes.append(f"- row {r.row}: {note}")
    old_rows, old_notes = previous_rows({r.row for r in results})
    lines = table(results).splitlines()
    merged = sorted(lines[2:] + old_rows, key=lambda line: int(line[2:].split(" ", 1)[0]))
    notes = sorted(notes + old_notes, key=lambda n: int(n[6:].split(":", 1)[0]))
    rerun = (
        [f"Rows {sorted(r.row for r in results)} are from this run; the others are kept from "
         "the previous full run (see its notes).", ""] if old_rows else []
    )  # fmt: skip
    body = [
        SECTION,
        "",
        "Written by `bench/run_all.py --write`; the table and the run notes below are",
        "regenerated on every run, the profiles and findings further down are prose.",
        "",
        f"- Date: {info['date']}; git `{info['git']}`",
        f"- Machine: {info['cpus']} cores ({info['model']}), {info['mem_gb']} GB RAM, "
        f"kernel {info['kernel']}",
        f"- Python {info['python']}; {info['versions']}",
        f"- Load average at the start: {info['load']} (other agents' test runs share the 2 "
        "cores; each note gives the load at its measurement)",
        f"- Command: `{command}`",
        "",
        *rerun,
        *lines[:2],
        *merged,
        "",
        "Run notes:",
        "",
        *notes,
        "",
    ]
    text = "\n".join(body)
    if kept:
        text += "\n" + kept.strip() + "\n"
    return text


def previous_rows(ran: set[int]) -> tuple[list[str], list[str]]:
    """Table lines and run notes of rows not run now, from the section already written."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    if SECTION not in text:
        return [], []
    ours = text.split(SECTION, 1)[1].split(KEEP, 1)[0]
    rows, notes = [], []
    for line in ours.splitlines():
        row = line[2:].split(" ", 1)[0] if line.startswith("| ") else ""
        if row.isdigit() and int(row) not in ran:
            rows.append(line)
        note = line[6:].split(":", 1)[0] if line.startswith("- row ") else ""
        if note.isdigit() and int(note) not in ran:
            notes.append(line)
    return rows, notes


def write_results(text: str) -> Path:
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in current:
        head, _, _ = current.partition(SECTION)
        current = head.rstrip() + "\n\n" + text
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current)
    return path


def kept_prose() -> str:
    path = ROOT / "bench" / "RESULTS.md"
    if not path.exists():
        return ""
    text = path.read_text()
    if SECTION not in text:
        return ""
    ours = text.split(SECTION, 1)[1]
    return KEEP + ours.split(KEEP, 1)[1] if KEEP in ours else ""


def main() -> None:
    parser = argparse.ArgumentParser(description="The issue 7 performance suite.")
    parser.add_argument("--quick", action="store_true", help="short runs (~1 min a row)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="rows, e.g. 1,3 (default all)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    rows = sorted({int(x) for x in args.only.split(",") if x.strip()})
    info = machine()
    command = "python " + " ".join(["bench/run_all.py", *sys.argv[1:]])
    say(f"{info['date']}  git {info['git']}  load {info['load']}  rows {rows}"
        f"{'  (quick)' if args.quick else ''}")  # fmt: skip
    t0 = time.monotonic()
    results = run_rows(rows, quick=args.quick)
    print(table(results))
    for r in results:
        for note in r.notes:
            print(f"  row {r.row}: {note}")
    print(f"\nsuite wall time {time.monotonic() - t0:.0f}s; load now {machine()['load']}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    if args.write:
        path = write_results(section(results, info, command, kept_prose()))
        print(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
