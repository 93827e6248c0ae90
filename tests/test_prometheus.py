"""The Prometheus rules, the Alertmanager config and the Grafana dashboard, by the real tools.

- `promtool` checks ``deploy/prometheus`` and runs its unit tests (``tests/*.yml``).
- A real Prometheus (Debian's binary) on 127.0.0.1 scrapes a real daemon that probes the
  simulator, and evaluates a copy of ``rules.yml`` whose windows are shortened by
  `short_rules` (5m -> 3s, 1h -> 10s, ...; see `SHORT`). An outage in the simulator pages,
  and its end resolves the page; a healthy destination and a flow in maintenance stay quiet.
- Every PromQL expression of the Grafana dashboard runs against that Prometheus, with its
  template variables replaced, and answers without error and with data.

Without `prometheus`/`promtool` these tests skip, unless PROBE_REQUIRE_PROMTOOL is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from probe.engine.daemon import Daemon
from tests.helpers import closed_port, running, simulator, wait_for, write_config

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "dataflow-probe.json"
REQUIRED = bool(os.environ.get("PROBE_REQUIRE_PROMTOOL"))

# Every duration in rules.yml (ranges and `for:`) and its stand-in for the live test. The
# order is kept (5m < 30m < 1h ...), so each long window stays longer than its short one;
# with a 1s scrape and evaluation interval, the shortest range (3s) still holds 3 samples.
# A duration missing here, or a subquery, fails `short_rules` loudly (a KeyError).
SHORT = {
    "2m": "2s",
    "5m": "3s",
    "10m": "4s",
    "15m": "5s",
    "30m": "6s",
    "1h": "10s",
    "2h": "12s",
    "6h": "15s",
    "1d": "20s",
    "3d": "25s",
}
OUTAGE_SECONDS = 20  # labka answers 500 for this long after the simulator starts
_RANGE = re.compile(r"\[([^\]]*)\]")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
# What Grafana puts in for its built-in variables; any other variable becomes "all" (.*).
_BUILTIN = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__range_s": "3600"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRED:
            pytest.fail(f"PROBE_REQUIRE_PROMTOOL is set but {name} is not installed")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


def _run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def short_rules(text: str) -> str:
    """rules.yml with every range `[5m]` and every `for: 5m` replaced from `SHORT`.

    Only durations change: the expressions, thresholds, labels and record names stay, so
    the live Prometheus evaluates the same logic on a seconds scale.
    """
    data = yaml.safe_load(text)
    for group in data["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(lambda m: f"[{SHORT[m.group(1)]}]", rule["expr"])
            if "for" in rule:
                rule["for"] = SHORT[rule["for"]]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _names(rules: dict[str, Any]) -> list[str]:
    return [r.get("record") or r["alert"] for g in rules["groups"] for r in g["rules"]]


# --- promtool and amtool ------------------------------------------------------------------


def test_promtool_checks_the_rules_and_the_example_config() -> None:
    promtool = _tool("promtool")
    assert "SUCCESS" in _run(promtool, "check", "rules", str(RULES))
    _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))


@pytest.mark.slow
def test_promtool_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    tests = sorted(str(p) for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert len(tests) >= 4
    assert "SUCCESS" in _run(promtool, "test", "rules", *tests)


def test_the_shortened_rules_keep_every_rule_and_pass_promtool(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    original = yaml.safe_load(RULES.read_text())
    text = short_rules(RULES.read_text())
    shortened = yaml.safe_load(text)
    assert _names(shortened) == _names(original)
    assert set(_RANGE.findall(text)) <= set(SHORT.values())
    (tmp_path / "rules.yml").write_text(text)
    _run(promtool, "check", "rules", str(tmp_path / "rules.yml"))


def test_alertmanager_config_routes_by_severity() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (apt-get install prometheus-alertmanager)")
    config = f"--config.file={ALERTMANAGER}"
    _run(amtool, "check-config", str(ALERTMANAGER))
    for severity in ("page", "ticket"):
        route = ("config", "routes", "test", config, f"--verify.receivers={severity}")
        _run(amtool, *route, f"severity={severity}", "flow=gs-adt", "destination=labka")


# --- a real Prometheus --------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    targets: Path
    log: Path

    def scrape(self, daemon: Daemon) -> str:
        """Point the `dataflow-probe` job at this daemon (file SD); its `instance` label."""
        assert daemon.server is not None
        instance = daemon.server.url.removeprefix("http://")
        staged = self.targets.with_suffix(".tmp")
        staged.write_text(json.dumps([{"targets": [instance]}]))
        staged.replace(self.targets)
        return instance


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Debian's Prometheus with the shortened rules, a 1s scrape and a 1s evaluation."""
    binary = _tool("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    (home / "rules.yml").write_text(short_rules(RULES.read_text()))
    targets = home / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": "dataflow-probe",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = closed_port()
    log = home / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log)
        yield Prometheus(url=url, targets=targets, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 30
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < end:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if client.get(url + "/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"prometheus not ready within 30s:\n{log.read_text()}")


async def _query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/query", params={"query": expr})
    body = response.json()
    assert response.status_code == 200, f"{expr}: {body}"
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/alerts")
    assert response.status_code == 200
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return alerts


def _dest(name: str, base: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "url": base + "/received?probe_id=${probe_id}",
        "match": {"jsonpath": "$.events[*].probe_id"},
    }


def _probe_config(tmp_path: Path, sim: Any) -> dict[str, Any]:
    """gs-adt to labka (failing during the outage) and epm (healthy); maint-lab, in
    maintenance throughout, to a destination that always fails."""
    source = {
        "type": "http",
        "method": "POST",
        "url": sim.url("engine") + "/gs/events",
        "body": '{"probe_id": "${probe_id}"}',
        "expect_status": [202],
    }
    return {
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", "flush_interval": "50ms"},
        "server": {"listen": "127.0.0.1:0"},
        "shutdown_grace": "5s",
        "defaults": {"interval": "250ms", "timeout": "1s", "poll": "100ms", "max_in_flight": 20},
        "maintenance": [{"name": "always", "flows": ["maint-*"], "once": {
            "start": "2020-01-01T00:00", "duration": "3650d"}}],
        "flows": [
            {"name": "gs-adt", "source": source, "destinations": [
                _dest("labka", sim.url("labka")), _dest("epm", sim.url("epm"))]},
            {"name": "maint-lab", "source": source, "destinations": [
                _dest("labka", sim.url("broken"))]},
        ],
    }  # fmt: skip


SIM = {
    "destinations": {
        "labka": {"outages": [{"mode": "http_500", "start": 0, "duration": f"{OUTAGE_SECONDS}s"}]},
        "epm": {"delay": {"fixed": "20ms"}},
        "broken": {"outages": [{"mode": "http_500", "start": 0, "duration": "1h"}]},
    }
}


def _key(alert: dict[str, Any]) -> tuple[str, str, str, str]:
    labels = alert["labels"]
    return (
        labels["alertname"],
        labels.get("flow", ""),
        labels.get("destination", ""),
        alert["state"],
    )


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.xdist_group("prometheus")
async def test_an_outage_pages_and_its_end_resolves_the_page(
    prometheus: Prometheus, tmp_path: Path
) -> None:
    seen: set[tuple[str, str, str, str]] = set()

    async with simulator(SIM) as sim:
        started = time.monotonic()
        async with (
            running(write_config(tmp_path, _probe_config(tmp_path, sim))) as daemon,
            httpx.AsyncClient(base_url=prometheus.url, timeout=5) as client,
        ):
            instance = prometheus.scrape(daemon)

            async def paging() -> bool:
                alerts = await _alerts(client)
                seen.update(_key(a) for a in alerts)
                return ("ProbeErrorBudgetFastBurn", "gs-adt", "labka", "firing") in seen

            left = OUTAGE_SECONDS - (time.monotonic() - started)
            await wait_for(
                paging, limit=left, every=0.5, what="page for gs-adt -> labka during the outage"
            )
            # The silence of maint-lab comes from maintenance, not from a lack of errors.
            maintenance = f'probe_maintenance{{flow="maint-lab",instance="{instance}"}} == 1'
            assert await _query(client, maintenance)
            assert await _query(client, 'probe:sli_error:ratio_rate5m{flow="maint-lab"} > 0.5')
            assert await _query(client, 'probe:sli_error:ratio_rate5m{destination="epm"} < 0.072')

            async def resolved() -> bool:
                alerts = await _alerts(client)
                seen.update(_key(a) for a in alerts)
                return not any(
                    _key(a)[:3] == ("ProbeErrorBudgetFastBurn", "gs-adt", "labka") for a in alerts
                )

            await wait_for(resolved, limit=30, every=0.5, what="page resolved after the outage")
            assert time.monotonic() - started > OUTAGE_SECONDS

    pages = {(flow, dest) for name, flow, dest, _ in seen if name == "ProbeErrorBudgetFastBurn"}
    assert pages == {("gs-adt", "labka")}, prometheus.log.read_text()[-4000:]
    # The ticket fired with it (Alertmanager holds it back while the page fires).
    assert ("ProbeErrorBudgetSlowBurn", "gs-adt", "labka", "firing") in seen
    assert not {k for k in seen if k[0] == "ProbeResultsStale"}


# --- the Grafana dashboard ----------------------------------------------------------------


PANEL_METRICS = (
    "probe_success",
    "probe_results_total",
    "probe_slo_objective_ratio",
    "probe_latency_seconds_bucket",
    "probe_in_flight",
    "probe_store_backlog",
    "probe_scheduler_lag_seconds_bucket",
)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, with the template variables replaced."""
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"{panel['title']} / {target['refId']}"
                queries.append((where, _substitute(target["expr"])))
    return queries


def _substitute(expr: str) -> str:
    return _VARIABLE.sub(lambda m: _BUILTIN.get(m.group(1) or m.group(2), ".*"), expr)


def _variable_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """name -> the `label_values(...)` query of each query variable."""
    variables = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            variables[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return variables


def test_the_dashboard_has_its_variables_and_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert set(_variable_queries(dashboard)) == {"flow", "destination"}
    panels = [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    assert {"table", "stat", "timeseries", "heatmap"} <= {p["type"] for p in panels}
    exprs = " ".join(q for _, q in dashboard_queries(dashboard))
    for metric in PANEL_METRICS:
        assert metric in exprs
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning/dashboards/dataflow-probe.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasources["datasources"][0]["type"] == "prometheus"


@pytest.mark.xdist_group("prometheus")
async def test_every_dashboard_query_runs_against_prometheus(
    prometheus: Prometheus, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 15
    sim_config = {"destinations": {"labka": {}, "epm": {"delay": {"fixed": "20ms"}}, "broken": {}}}
    async with (
        simulator(sim_config) as sim,
        running(write_config(tmp_path, _probe_config(tmp_path, sim))) as daemon,
        httpx.AsyncClient(base_url=prometheus.url, timeout=10) as client,
    ):
        instance = prometheus.scrape(daemon)

        async def scraped() -> bool:
            ready = [
                f'rate(probe_latency_seconds_count{{instance="{instance}"}}[1m]) > 0',
                f'rate(probe_scheduler_lag_seconds_count{{instance="{instance}"}}[1m]) > 0',
                'probe:sli_error:ratio_rate1h{destination="epm"}',
            ]
            return all([await _query(client, expr) for expr in ready])

        await wait_for(scraped, limit=30, every=0.5, what="the daemon's metrics in Prometheus")
        for where, expr in queries:
            assert await _query(client, expr), f"{where}: no data for {expr}"
        for name, query in _variable_queries(dashboard).items():
            selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query).groups()  # type: ignore[union-attr]
            response = await client.get(
                f"/api/v1/label/{label}/values", params={"match[]": _substitute(selector)}
            )
            assert response.status_code == 200, (name, response.text)
            values = response.json()["data"]
            assert {"gs-adt", "maint-lab"} <= set(values) or {"labka", "epm"} <= set(values)
