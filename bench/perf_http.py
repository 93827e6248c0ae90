"""Row 2: CPU per plain HTTP check, the real daemon against the blackbox exporter, one run.

One private nginx (1 worker) serves two locations that return 200 'ok': `/ours` for the
daemon and `/bb` for the exporter, each with its own access log, so nginx counts the
requests of each side exactly. At the same time:
- `probe run` with N check flows (an HTTP source, no destinations), interval 1 s: N/s;
- `prometheus-blackbox-exporter` (module http_2xx) driven by `wrk` through
  `/probe?module=http_2xx&target=.../bb`, paced by a Lua `delay()` to about the same rate.
Both processes' CPU (utime + stime from /proc) over the same window is divided by the
requests nginx logged for each in that window. wrk's own CPU is not counted (it stands in
for Prometheus); the daemon's includes everything it does per check: scheduling, the
store (SQLite), metrics.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.perf_common import (
    LOCALHOST,
    Procs,
    RowResult,
    cpu_seconds,
    find_binary,
    free_port,
    loadavg,
    py_spy,
    say,
    scrape,
    start_probe,
    wait_ready,
    write_yaml,
)

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {host}:{port};
        location /ours {{ access_log {dir}/ours.log; return 200 'ok'; }}
        location /bb {{ access_log {dir}/bb.log; return 200 'ok'; }}
    }}
}}
"""

BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
"""

WRK_LUA = """\
wrk.path = "/probe?module=http_2xx&target=http%3A%2F%2F{host}%3A{port}%2Fbb"
function delay()
  return {delay_ms}
end
"""


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run(
    rate: int, *, warmup: float, window: float, profile: Path | None = None
) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="perf-http-") as tmp, Procs(Path(tmp)) as procs:
        work = Path(tmp)
        nginx_port, bb_port, metrics = free_port(), free_port(), free_port()
        (work / "nginx.conf").write_text(
            NGINX_CONF.format(dir=work, host=LOCALHOST, port=nginx_port)
        )
        nginx = procs.start(
            "nginx",
            [find_binary("nginx"), "-p", str(work), "-c", str(work / "nginx.conf"), "-e",
             "stderr"],
        )  # fmt: skip
        nginx.wait_port(nginx_port)
        (work / "blackbox.yml").write_text(BLACKBOX_CONF)
        bb = procs.start(
            "blackbox",
            [find_binary("prometheus-blackbox-exporter"), f"--config.file={work / 'blackbox.yml'}",
             f"--web.listen-address={LOCALHOST}:{bb_port}", "--log.level=warn"],
        )  # fmt: skip
        bb.wait_port(bb_port)
        config = {
            "store": {"url": f"sqlite+aiosqlite:///{work / 'probe.db'}"},
            "server": {"listen": f"{LOCALHOST}:{metrics}"},
            "defaults": {"timeout": "5s"},
            "flows": [
                {
                    "name": f"check-{i:05d}",
                    "interval": "1s",
                    "source": {
                        "type": "http",
                        "url": f"http://{LOCALHOST}:{nginx_port}/ours",
                        "expect_status": [200],
                    },
                }
                for i in range(rate)
            ],
        }
        daemon = start_probe(procs, write_yaml(work / "probe.yaml", config))
        wait_ready(daemon, metrics)
        # wrk paced: `connections` connections, each waits delay_ms after every reply.
        connections = max(1, rate // 10)
        delay_ms = int(connections * 1000 / rate) - 1
        (work / "pace.lua").write_text(
            WRK_LUA.format(host=LOCALHOST, port=nginx_port, delay_ms=delay_ms)
        )
        duration = int(warmup + window + 3)
        procs.start(
            "wrk",
            [find_binary("wrk"), "-t1", f"-c{connections}", f"-d{duration}s", "-s",
             str(work / "pace.lua"), f"http://{LOCALHOST}:{bb_port}"],
        )  # fmt: skip
        time.sleep(warmup)
        m0 = scrape(metrics)
        t0 = time.monotonic()
        c0 = cpu_seconds(daemon.pid), cpu_seconds(bb.pid)
        n0 = _lines(work / "ours.log"), _lines(work / "bb.log")
        load = loadavg()
        spy = py_spy(daemon.pid, window, profile) if profile else None
        time.sleep(window)
        if spy is not None:
            spy.wait(timeout=60)
        c1 = cpu_seconds(daemon.pid), cpu_seconds(bb.pid)
        n1 = _lines(work / "ours.log"), _lines(work / "bb.log")
        elapsed = time.monotonic() - t0
        m1 = scrape(metrics)
        ours_n, bb_n = n1[0] - n0[0], n1[1] - n0[1]
        ours_cpu, bb_cpu = c1[0] - c0[0], c1[1] - c0[1]
        results = m1.get("probe_results_total", 0) - m0.get("probe_results_total", 0)
        good = m1.get('probe_results_total{outcome="delivered"}', 0) - m0.get(
            'probe_results_total{outcome="delivered"}', 0
        )
        return {
            "rate": rate,
            "window_s": elapsed,
            "ours_requests": ours_n,
            "ours_results": results,
            "ours_delivered": good,
            "ours_cpu_s": ours_cpu,
            "ours_ms_per_check": ours_cpu / max(ours_n, 1) * 1000,
            "bb_requests": bb_n,
            "bb_cpu_s": bb_cpu,
            "bb_ms_per_check": bb_cpu / max(bb_n, 1) * 1000,
            "load": load,
        }


def row2(*, quick: bool, profile: Path | None = None) -> RowResult:
    rate = 200
    warmup, window = (3.0, 10.0) if quick else (5.0, 30.0)
    r = run(rate, warmup=warmup, window=window, profile=profile)
    ratio = float(r["ours_ms_per_check"]) / max(float(r["bb_ms_per_check"]), 1e-9)
    note = (
        f"{rate} checks/s each side, window {float(r['window_s']):.1f}s: daemon "
        f"{r['ours_requests']} requests ({r['ours_delivered']:.0f} delivered results), CPU "
        f"{float(r['ours_cpu_s']):.2f}s = {float(r['ours_ms_per_check']):.3f} ms/check; "
        f"blackbox {r['bb_requests']} probes, CPU {float(r['bb_cpu_s']):.2f}s = "
        f"{float(r['bb_ms_per_check']):.3f} ms/probe; load {r['load']}"
    )
    say("  row 2:", note, f"ratio {ratio:.2f}")
    return RowResult(
        2,
        "CPU per HTTP check, ours / blackbox exporter (same nginx, same rate)",
        ratio,
        "x",
        "<= 0.5",
        ratio <= 0.5,
        notes=[note],
        details=r,
    )
