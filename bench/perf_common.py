"""Shared pieces of the performance suite (`bench/run_all.py`).

Processes (the real `probe run` and `probe sim`, nginx, the blackbox exporter) are started
as subprocesses in a private temp dir, on free ports in 19000-19999 on 127.0.0.1, and are
always stopped again. CPU comes from /proc/PID/stat (utime + stime), RSS from
/proc/PID/status, metrics from the daemon's own /metrics.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOCALHOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROBE = str(VENV_BIN / "probe")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_used_ports: set[int] = set()


@dataclass
class RowResult:
    """One row of the suite's table."""

    row: int
    name: str
    value: float | None
    unit: str
    target: str
    met: bool | None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        if abs(self.value) >= 100:
            return f"{self.value:,.0f} {self.unit}"
        return f"{self.value:.3g} {self.unit}"


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- ports and processes -------------------------------------------------------------------


def free_port() -> int:
    """A port in 19000-19999 that is free now (bind test), not handed out before in this run."""
    for _ in range(500):
        port = random.randint(19000, 19999)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOCALHOST, port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port in 19000-19999")


def find_binary(name: str) -> str:
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        raise RuntimeError(f"{name} not found (apt-get install {name})")
    return path


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), 0.2):
        return True
    return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Proc:
    """A subprocess with its output in a log file; `stop` sends SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        self.started = time.time()
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait_port(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if port_open(port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not listen on {port} within {timeout}s")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (the daemon drains its probes and flushes the store)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


class Procs:
    """Every process a row started; `close` stops them all, newest first, even on errors."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Proc] = []

    def start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, args, self.workdir)
        self.items.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.items):
            with contextlib.suppress(Exception):
                proc.stop()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, width=200))
    return path


def start_probe(procs: Procs, config: Path, name: str = "probe") -> Proc:
    args = [PROBE, "--log-level", "warning", "--log-format", "json", "run", "-c", str(config)]
    return procs.start(name, args)


def start_sim(procs: Procs, config: Path, port: int) -> Proc:
    sim = procs.start("sim", [PROBE, "--log-level", "warning", "sim", "-c", str(config)])
    sim.wait_port(port)
    return sim


# -- /metrics ------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        # Always http://127.0.0.1:PORT built here, never a user-given scheme.
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(proc: Proc, port: int, timeout: float = 120.0) -> float:
    """Wait until /readyz answers 200; the time (time.time()) it first did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        with contextlib.suppress(OSError):
            status, _ = http_get(f"http://{LOCALHOST}:{port}/readyz", timeout=5)
            if status == 200:
                return time.time()
        time.sleep(0.02)
    raise RuntimeError(f"{proc.name} not ready within {timeout}s")


def scrape(port: int) -> dict[str, float]:
    """The daemon's samples, summed over labels per (name, le/outcome) key we use."""
    _, body = http_get(f"http://{LOCALHOST}:{port}/metrics")
    return parse_exposition(body.decode())


def parse_exposition(text: str) -> dict[str, float]:
    """A flat view: `name` summed over labels, plus `name{le="x"}` / `name{outcome="x"}`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            number = float(value)
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + number
        for key in ("le", "outcome", "reason"):
            marker = f'{key}="'
            if marker in labels:
                part = labels.split(marker, 1)[1].split('"', 1)[0]
                k = f'{name}{{{key}="{part}"}}'
                out[k] = out.get(k, 0.0) + number
    return out


def histogram_quantile(
    before: Mapping[str, float], after: Mapping[str, float], name: str, q: float
) -> float | None:
    """Quantile of a histogram's increase between two scrapes: the upper bound of the
    bucket the quantile falls in (no interpolation: a conservative reading)."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f'{name}_bucket{{le="'):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), value - before.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def histogram_share_over(
    before: Mapping[str, float], after: Mapping[str, float], name: str, bound: float
) -> float:
    """Share of the increase above the bucket bound ``bound``."""
    key = f'{name}_bucket{{le="{bound}"}}'
    inf = f'{name}_bucket{{le="+Inf"}}'
    total = after.get(inf, 0.0) - before.get(inf, 0.0)
    if total <= 0:
        return 0.0
    return 1.0 - (after.get(key, 0.0) - before.get(key, 0.0)) / total


# -- the store -----------------------------------------------------------------------------


def sqlite_counts(db: Path) -> dict[str, int]:
    """Probes, results by outcome, and probes still missing a result (unresolved)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        out = {"probes": con.execute("SELECT count(*) FROM probes").fetchone()[0]}
        for outcome, count in con.execute("SELECT outcome, count(*) FROM results GROUP BY 1"):
            out[outcome] = count
        out["unresolved"] = con.execute(
            "SELECT count(*) FROM probes p WHERE NOT EXISTS "
            "(SELECT 1 FROM results r WHERE r.probe_id = p.probe_id)"
        ).fetchone()[0]
        return out
    finally:
        con.close()


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    from importlib import metadata

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("prometheus_client", "APScheduler", "SQLAlchemy", "aiosqlite", "psycopg")
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpus": str(os.cpu_count()),
        "model": model,
        "kernel": os.uname().release,
        "mem_gb": f"{int(mem) / 1024 / 1024:.0f}",
        "python": sys.version.split()[0],
        "versions": versions,
        "git": rev + (" (+ uncommitted changes)" if dirty else ""),
        "load": loadavg(),
    }


# -- profiling -----------------------------------------------------------------------------


def py_spy(pid: int, seconds: float, out: Path, *, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start `py-spy record` (collapsed stacks, non-blocking) on a running process."""
    args = [
        str(VENV_BIN / "py-spy"), "record", "-p", str(pid), "-d", str(int(seconds)),
        "-r", str(rate), "--nonblocking", "--gil", "--format", "raw", "-o", str(out),
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(raw: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    func, _, where = raw.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    parts = Path(path).parts
    short = "/".join(parts[parts.index("site-packages") + 1 :] if "site-packages" in parts
                     else parts[-2:])  # fmt: skip
    return f"{func} ({short}:{line})" if line else func


def top_frames(collapsed: Path, n: int = 15, *, by_file: bool = False) -> list[str]:
    """Lines 'self% incl% frame' from py-spy's collapsed output, idle (select/epoll) included."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    if not collapsed.exists():
        return ["(no profile written)"]
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if by_file:
            frames = [f.split(" (", 1)[-1].rsplit(":", 1)[0] for f in frames]
        if frames:
            self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count
    if not total:
        return ["(empty profile)"]
    ranked = sorted(self_counts.items(), key=lambda kv: -kv[1])[:n]
    out = [f"self {c / total:6.1%}  incl {incl_counts[f] / total:6.1%}  {f}" for f, c in ranked]
    return [f"{total} samples", *out]


def top_inclusive(collapsed: Path, n: int = 25, *, contains: str = "") -> list[str]:
    """The frames with the most inclusive samples (optionally only those containing `contains`)."""
    incl: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        total += int(count_text)
        for frame in {_frame(f) for f in stack.split(";")[1:]}:
            if contains in frame:
                incl[frame] = incl.get(frame, 0) + int(count_text)
    ranked = sorted(incl.items(), key=lambda kv: -kv[1])[:n]
    return [f"incl {c / max(total, 1):6.1%}  {f}" for f, c in ranked]
