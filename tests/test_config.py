"""Config loading: every broken file gives its exact message and location, and exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from probe.config import resolve_flows
from probe.configfile import load_config
from probe.durations import format_duration, parse_duration
from probe.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"

INVALID = [
    pytest.param(
        "invalid-unknown-key.yaml",
        ["invalid-unknown-key.yaml:6: flows[0].source.verb: unknown key"],
        id="unknown-key",
    ),
    pytest.param(
        "invalid-bad-duration.yaml",
        [
            "invalid-bad-duration.yaml:5: flows[0].interval: invalid duration 'fast': "
            "use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 90d"
        ],
        id="bad-duration",
    ),
    pytest.param(
        "invalid-bad-timezone.yaml",
        [
            "invalid-bad-timezone.yaml:1: timezone: unknown time zone 'Europe/Copenhagn' "
            "(expected an IANA name such as Europe/Copenhagen)"
        ],
        id="bad-timezone",
    ),
    pytest.param(
        "invalid-duplicate-flow.yaml",
        [
            "invalid-duplicate-flow.yaml:6: flows[2].name: duplicate flow name 'labka-api' "
            "(first at line 2)"
        ],
        id="duplicate-flow",
    ),
    pytest.param(
        "invalid-missing-env.yaml",
        [
            "invalid-missing-env.yaml:7: flows[0].source.headers.Authorization: "
            "environment variable PROBE_TEST_UNSET_TOKEN is not set"
        ],
        id="missing-env",
    ),
    pytest.param(
        "invalid-yaml-syntax.yaml",
        ["invalid-yaml-syntax.yaml:4: YAML syntax error: expected ',' or '}', but got ':'"],
        id="yaml-syntax",
    ),
    pytest.param(
        "invalid-several.yaml",
        [
            "invalid-several.yaml:1: timezone: unknown time zone 'Mars/Olympus' "
            "(expected an IANA name such as Europe/Copenhagen)",
            "invalid-several.yaml:3: server.listen: invalid listen address 'nowhere': "
            "use HOST:PORT, e.g. 127.0.0.1:9464",
            "invalid-several.yaml:6: flows[0].interval: invalid duration '10parsecs': "
            "use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 90d",
            "invalid-several.yaml:7: flows[0].source: unknown type 'ftp' "
            "(expected one of: 'http', 'mllp', 'sql')",
            "invalid-several.yaml:9: flows[0].destinations[0].match.jsonpath: invalid JSONPath "
            "'$[[': Parse error at 1:2 near token [ ([)",
        ],
        id="every-problem-at-once",
    ),
]


@pytest.mark.parametrize(("name", "expected"), INVALID)
def test_invalid_config_exact_message(name: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / name, environ={})
    assert [p.replace(f"{DATA}/", "") for p in caught.value.problems] == expected


@pytest.mark.parametrize(("name", "expected"), INVALID)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_cli_broken_config_exits_2_without_traceback(
    name: str, expected: list[str], command: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", command, "-c", str(DATA / name)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.replace(f"{DATA}/", "").splitlines() == expected


def test_valid_config_layers_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GS_TOKEN", "tok-abcdef")
    loaded = load_config(DATA / "valid-full.yaml")
    gs, api = resolve_flows(loaded.config)
    assert gs.interval == 30.0
    assert gs.timeout == 300.0
    assert gs.max_in_flight == 4
    labka, epm3 = gs.destinations
    assert (labka.poll, labka.slo_latency, labka.slo_objective) == (0.5, 30.0, 0.995)
    assert (epm3.poll, epm3.slo_latency) == (2.0, 60.0)
    assert gs.source.headers["Authorization"] == "Bearer tok-abcdef"
    # The *_file key became the header, read from the file next to the config.
    assert epm3.config.headers == {"X-Api-Key": "k-123-secret"}
    assert loaded.secrets == {"tok-abcdef", "k-123-secret"}
    assert api.is_check
    assert api.cron == "*/5 * * * *"
    assert (api.slo_latency, api.slo_objective) == (30.0, 0.99)


def test_check_config_prints_one_line_per_flow_and_no_secret(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "check-config", "-c", str(DATA / "valid-full.yaml")],
        capture_output=True,
        text=True,
        env={"GS_TOKEN": "tok-abcdef", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "gs-rest: http POST http://127.0.0.1:8080/gs/events -> labka (http), epm3 (http), "
        "every 30s, timeout 5m, slo labka 30s/99.50%, epm3 1m/99.50%",
        "labka-api: http GET https://127.0.0.1:8443/health check, cron '*/5 * * * *', "
        "timeout 5m, slo 30s/99.00%",
    ]
    assert "tok-abcdef" not in proc.stdout


def test_secret_file_missing_is_a_located_error(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(
        "flows:\n"
        "  - name: a\n"
        "    source:\n"
        "      type: http\n"
        "      url: http://127.0.0.1:1/\n"
        "      headers: {Authorization_file: nope.txt}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{config}:6: flows[0].source.headers.Authorization_file: ")
    assert "cannot read secret file nope.txt" in problem


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("timezone: UTC\ntimezone: Europe/Copenhagen\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    assert caught.value.problems == [f"{config}:2: timezone: duplicate key (first at line 1)"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("90d", 7776000), ("1h30m", 5400),
     (15, 15.0), ("2.5s", 2.5)],
)  # fmt: skip
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "5", "10 s", "-1s", "0s", "1x", "s", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.25, 1, 90, 300, 3600, 86400 * 3):
        assert parse_duration(format_duration(seconds)) == seconds


def test_the_design_documents_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """DESIGN.md promises its example stays valid; this copy of it is checked verbatim."""
    monkeypatch.setenv("GS_TOKEN", "t0ken-value")
    loaded = load_config(DATA / "design-example.yaml")
    gs_adt, gs_rest, labka_api = resolve_flows(loaded.config)
    assert gs_adt.source.type == "mllp"
    assert [d.config.type for d in gs_adt.destinations] == ["mllp", "http"]
    assert gs_adt.destinations[1].slo_latency == 60.0
    assert gs_rest.destinations[0].poll == 0.5
    assert labka_api.is_check
    assert loaded.config.maintenance[0].weekly is not None


def _big_config(flows: int) -> str:
    """A config well past `C_LOADER_FROM`, so libyaml's loader parses it."""
    lines = ["flows:"]
    for n in range(flows):
        lines += [
            f"  - name: check-{n:04d}",
            "    source: {type: http, url: 'http://127.0.0.1:1/health'}",
        ]
    return "\n".join(lines) + "\n"


def test_a_big_config_loads_with_lines_and_its_errors_are_located(tmp_path: Path) -> None:
    from probe.configfile import C_LOADER_FROM

    text = _big_config(1500)
    assert len(text) > C_LOADER_FROM
    good = tmp_path / "big.yaml"
    good.write_text(text)
    assert len(load_config(good).config.flows) == 1500
    last = text.count("\n")
    for name, tail, line, message in [
        ("syntax", "  - : : [\n", last + 1, "YAML syntax error"),
        ("deep", "x: " + "[" * 3000 + "]" * 3000 + "\n", last + 1, "nesting depth"),
        ("unknown", "  - name: x\n    sauce: {}\n", last + 2, "sauce"),
    ]:
        bad = tmp_path / f"{name}.yaml"
        bad.write_text(text + tail)
        with pytest.raises(ConfigError) as caught:
            load_config(bad)
        assert any(
            p.startswith(f"{bad}:{line}:") and message in p for p in caught.value.problems
        ), (name, caught.value.problems[:3])
