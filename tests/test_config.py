"""Config loading: every broken file gives its exact message and location, and exits 2."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.cli import main
from probe.config.loader import MAX_DEPTH, load_config
from probe.config.models import resolve_flows
from probe.config.yaml_events import parse_plain
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
    pytest.param(
        "invalid-bounds.yaml",
        [
            "invalid-bounds.yaml:2: store.batch_size: Input should be less than or equal to 100000",
            "invalid-bounds.yaml:3: store.retention.raw: invalid duration '4000d': must be at "
            "most 3660d",
            "invalid-bounds.yaml:5: server.listen: invalid listen address '127.0.0.1:99999': "
            "the port must be at most 65535",
            "invalid-bounds.yaml:7: defaults.poll: invalid duration '5ms': must be at least 10ms",
            "invalid-bounds.yaml:8: defaults.max_in_flight: Input should be greater than or "
            "equal to 1",
            "invalid-bounds.yaml:10: maintenance[0].once.start: invalid time "
            "'9999-12-31T20:00': the year must be 1970 to 2999",
            "invalid-bounds.yaml:13: flows[0].interval: invalid duration "
            "'99999999999999999999999d': must be at most 366d",
            "invalid-bounds.yaml:14: flows[0].timeout: invalid duration '0.5ms': must be at "
            "least 1ms",
            "invalid-bounds.yaml:15: flows[0].max_in_flight: Input should be less than or "
            "equal to 10000",
            "invalid-bounds.yaml:16: flows[0].source.expect_status[1]: Input should be less "
            "than or equal to 599",
            "invalid-bounds.yaml:18: flows[0].destinations[0].slo.latency: invalid duration "
            "'400d': must be at most 366d",
        ],
        id="numbers-and-durations-out-of-bounds",
    ),
    pytest.param(
        "invalid-store-driver.yaml",
        [
            "invalid-store-driver.yaml:2: store.url: unsupported store driver "
            "'postgresql+psycopgx': use sqlite+aiosqlite:///FILE or "
            "postgresql+psycopg://user@host/db"
        ],
        id="store-driver",
    ),
    pytest.param(
        "invalid-alias-bomb.yaml",
        ["invalid-alias-bomb.yaml:6: e[7]: YAML aliases expand to more than 100000 values"],
        id="alias-bomb",
    ),
    pytest.param(
        "invalid-huge-integer.yaml",
        ["invalid-huge-integer.yaml:2: defaults.max_in_flight: integer too large (5000 digits)"],
        id="integer-beyond-pythons-digit-limit",
    ),
    pytest.param(
        "invalid-yaml-value.yaml",
        [
            "invalid-yaml-value.yaml:2: maintenance[0].once.start: invalid YAML timestamp "
            "'2026-13-01': month must be in 1..12"
        ],
        id="no-such-date",
    ),
    pytest.param(
        "invalid-misspelt-keys.yaml",
        [
            "invalid-misspelt-keys.yaml:1: timzone: unknown key; did you mean 'timezone'?",
            "invalid-misspelt-keys.yaml:3: store.retension: unknown key; did you mean 'retention'?",
            "invalid-misspelt-keys.yaml:5: defaults.slo.latncy: unknown key; did you mean "
            "'latency'?",
            "invalid-misspelt-keys.yaml:7: maintenance[0].weekly.day: missing required key",
            "invalid-misspelt-keys.yaml:7: maintenance[0].weekly.dya: unknown key; did you "
            "mean 'day'?",
            "invalid-misspelt-keys.yaml:10: flows[0].intervall: unknown key; did you mean "
            "'interval'?",
            "invalid-misspelt-keys.yaml:11: flows[0].source.heders: unknown key; did you mean "
            "'headers'?",
            "invalid-misspelt-keys.yaml:11: flows[0].source.verb: unknown key",
            "invalid-misspelt-keys.yaml:13: flows[0].destinations[0].listen: missing required key",
            "invalid-misspelt-keys.yaml:13: flows[0].destinations[0].lisen: unknown key; did "
            "you mean 'listen'?",
        ],
        id="misspelt-keys-did-you-mean",
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
    name: str,
    expected: list[str],
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI's entry point in this process: a child per case cost the suite a minute of CPU,
    # and `python -m probe` itself is run by the tests of `probe run` and `probe once`.
    monkeypatch.chdir(tmp_path)
    code = main([command, "-c", str(DATA / name)])  # an exception fails the test, as before
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err + out
    assert err.replace(f"{DATA}/", "").splitlines() == expected


FLOW = "flows:\n  - name: a\n    source: {type: http, url: 'http://127.0.0.1:1/'}\n"
SQL = "{type: sql, url: 'sqlite+aiosqlite:///x.db'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("timezon: UTC\n", "1: timezon: unknown key; did you mean 'timezone'?",
                     id="top-level"),
        pytest.param("server: {listn: '127.0.0.1:0'}\n",
                     "1: server.listn: unknown key; did you mean 'listen'?", id="nested"),
        pytest.param(FLOW + "    timeot: 5s\n",
                     "4: flows[0].timeot: unknown key; did you mean 'timeout'?", id="in-a-list"),
        pytest.param(FLOW + "    destinations:\n      - {name: b, " + SQL[1:] + ", query: "
                     "':probe_id', time_colum: at}\n",
                     "5: flows[0].destinations[0].time_colum: unknown key; did you mean "
                     "'time_column'?", id="the-sql-destinations-keys"),
        pytest.param(FLOW + "    destinations:\n      - {name: b, type: http, url: "
                     "'http://h/', time_colum: at}\n",
                     "5: flows[0].destinations[0].time_colum: unknown key; did you mean "
                     "'time_field'?", id="the-http-destinations-keys"),
        pytest.param("flows:\n  - name: a\n    source: " + SQL + ", statment: x}\n",
                     ["3: flows[0].source.statement: missing required key",
                      "3: flows[0].source.statment: unknown key; did you mean 'statement'?"],
                     id="a-source-type"),
        pytest.param(FLOW + "    intervall_file: interval.txt\n",
                     "4: flows[0].intervall_file: unknown key; did you mean 'interval_file'?",
                     id="a-file-key"),
        pytest.param("maintenance: [{name: m, once: {start: '2026-12-01T22:00', duraton: 1h}}]\n",
                     "1: maintenance[0].once.duraton: unknown key; did you mean 'duration'?",
                     id="deep"),
        pytest.param("labels: {a: b}\nxyz: 1\n", "2: xyz: unknown key", id="nothing-close"),
    ],
)  # fmt: skip
def test_an_unknown_key_suggests_the_key_meant(
    text: str, expected: str | list[str], tmp_path: Path
) -> None:
    """One problem each (the line, the path and the message), but for a missing key too."""
    (tmp_path / "interval.txt").write_text("30s\n")
    config = tmp_path / "probe.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    expected = [expected] if isinstance(expected, str) else expected
    assert [p.removeprefix(f"{config}:") for p in caught.value.problems] == expected


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
    from probe.config.loader import C_LOADER_FROM

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


# --- configs past C_LOADER_FROM: the fast way, and the slow way when anything is wrong ---


def _padded(source: Path, into: Path) -> Path:
    """``source`` copied past `C_LOADER_FROM` by a comment at its end: same data, same lines."""
    from probe.config.loader import C_LOADER_FROM

    padded = into / source.name
    padded.write_text(source.read_text() + "# " + "x" * C_LOADER_FROM + "\n")
    return padded


@pytest.mark.parametrize(("name", "expected"), INVALID)
def test_a_big_broken_config_has_the_same_messages(
    name: str, expected: list[str], tmp_path: Path
) -> None:
    """The fast way finds a problem, and the slow way reports it with its line, as ever."""
    if name == "invalid-yaml-syntax.yaml":  # libyaml's wording: big files always had it
        expected = [f"{name}:4: YAML syntax error: did not find expected ',' or '}}'"]
    with pytest.raises(ConfigError) as caught:
        load_config(_padded(DATA / name, tmp_path), environ={})
    assert [p.replace(f"{tmp_path}/", "") for p in caught.value.problems] == expected


@pytest.mark.parametrize("name", ["valid-full.yaml", "design-example.yaml"])
def test_a_big_valid_config_gives_the_same_flows_both_ways(name: str, tmp_path: Path) -> None:
    (tmp_path / "api-key.txt").write_text((DATA / "api-key.txt").read_text())
    padded = _padded(DATA / name, tmp_path)
    assert parse_plain(padded.read_text()) is not None  # so load_config takes the fast way
    environ = {"GS_TOKEN": "tok-abcdef"}
    slow, fast = load_config(DATA / name, environ=environ), load_config(padded, environ=environ)
    assert fast.config == slow.config
    assert resolve_flows(fast.config) == resolve_flows(slow.config)
    assert fast.secrets == slow.secrets


def test_a_big_config_with_aliases_takes_the_slow_way_to_the_same_flows(tmp_path: Path) -> None:
    plain = _big_config(1500)
    source = "source: {type: http, url: 'http://127.0.0.1:1/health'}"
    aliased = plain.replace(source, "source: *src").replace(
        "source: *src", f"source: &src {source.removeprefix('source: ')}", 1
    )
    assert aliased.count("*src") == 1499
    assert parse_plain(plain) is not None
    assert parse_plain(aliased) is None  # an alias: left to the node tree
    flows = []
    for text in (plain, aliased):
        (tmp_path / "probe.yaml").write_text(text)
        flows.append(resolve_flows(load_config(tmp_path / "probe.yaml").config))
    assert flows[0] == flows[1]
    assert len(flows[0]) == 1500


def _node_tree_data(text: str) -> str:
    """What `parse_yaml` builds from ``text`` with libyaml, as its repr (``nan`` included)."""
    return repr(yaml.load(text, Loader=yaml.CSafeLoader))


YAML_KEYS = st.sampled_from(["a", "name", "1", "01", "true", "~", "null", "2026-01-01", "1.0",
                             ".nan", "0x1f", "1_000", "1:30", "", "=", "<<", "x y"])  # fmt: skip
YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.sampled_from(["yes", "Off", "0o17", "-0x1A", "+.inf", "1e3", "1:2:3", "2026-11-26",
                     "2001-12-14t21:59:43.10-05:00", "${ENV}", "30s", "~", "="]),
)  # fmt: skip
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(YAML_KEYS, inner, max_size=3),
    max_leaves=12,
)


@settings(derandomize=True, deadline=None, max_examples=400)
@given(
    document=st.dictionaries(YAML_KEYS | st.text(max_size=4), YAML_VALUES, max_size=4),
    flow_style=st.booleans(),
    scalar_style=st.sampled_from([None, "'", '"', "|", ">"]),
)
def test_the_fast_way_builds_what_the_node_tree_builds(
    document: dict[Any, Any], flow_style: bool, scalar_style: str | None
) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow_style, default_style=scalar_style)
    fast = parse_plain(text)
    if fast is not None:
        assert repr(fast) == _node_tree_data(text)


@pytest.mark.parametrize(
    ("text", "fast"),
    [
        pytest.param("a: 1\nb: [x, 2.5, null, true, 2026-11-26]\nc: {d: '1'}\n", True, id="plain"),
        pytest.param("a: .nan\nb: 0x1f\nc: 1_000\nd: 1:30\ne: Off\n", True, id="yaml-1.1"),
        pytest.param("a: 1\n...\n", True, id="document-end"),
        pytest.param("1: a\n01: b\n", False, id="keys-equal-as-ints"),
        pytest.param("a: &x 1\nb: *x\n", False, id="alias"),
        pytest.param("a: &x 1\nb: &x 2\n", False, id="duplicate-anchor"),
        pytest.param("a: !!str 1\n", False, id="tag"),
        pytest.param("a: {b: 1}\nc: {<<: {b: 2}}\n", False, id="merge-key"),
        pytest.param("a: 1\na: 2\n", False, id="duplicate-key"),
        pytest.param("? [a]\n: 1\n", False, id="complex-key"),
        pytest.param("a: 1\n---\nb: 2\n", False, id="two-documents"),
        pytest.param("[1, 2]\n", False, id="a-list"),
        pytest.param("# nothing\n", False, id="empty"),
        pytest.param("a: 2026-13-45\n", False, id="no-such-date"),
        pytest.param("a: =\n", False, id="value-key"),
        pytest.param("a: [" + "[" * 70 + "]" * 70 + "]\n", False, id="deep"),
        pytest.param("a: b: c\n", False, id="syntax"),
    ],
)
def test_the_fast_way_builds_the_same_data_or_leaves_it_to_the_node_tree(
    text: str, fast: bool
) -> None:
    data = parse_plain(text)
    assert (data is not None) == fast
    if data is not None:
        assert repr(data) == _node_tree_data(text)


# --- bounds: what passed check-config and then crashed `probe run` ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("366d", 366 * 86400.0, id="the-longest"),
        pytest.param("8784h", 366 * 86400.0, id="the-longest-in-hours"),
        pytest.param("1ms", 0.001, id="the-shortest"),
        pytest.param("367d", "invalid duration '367d': must be at most 366d", id="too-long"),
        pytest.param(
            "99999999999999999999999d",
            "invalid duration '99999999999999999999999d': must be at most 366d",
            id="far-too-long",
        ),
        pytest.param(
            "9" * 400 + "s",
            f"invalid duration '{'9' * 400}s': must be at most 366d",
            id="beyond-any-float",
        ),
        pytest.param(
            10**30, f"invalid duration {10**30}: must be at most 366d", id="a-huge-bare-number"
        ),
        pytest.param("0.5ms", "invalid duration '0.5ms': must be at least 1ms", id="too-short"),
    ],
)
def test_parse_duration_bounds(value: object, expected: float | str) -> None:
    if isinstance(expected, float):
        assert parse_duration(value) == expected
    else:
        with pytest.raises(ValueError, match="invalid duration") as caught:
            parse_duration(value)
        assert str(caught.value) == expected


def _store_problems(url: str, tmp_path: Path) -> list[str]:
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump({"store": {"url": url}}))
    try:
        load_config(tmp_path / "probe.yaml", environ={})
    except ConfigError as exc:
        return [p.replace(f"{tmp_path}/probe.yaml:2: store.url: ", "") for p in exc.problems]
    return []


USE = "use sqlite+aiosqlite:///FILE or postgresql+psycopg://user@host/db"
INVALID_URL = "invalid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite+aiosqlite:///probe.db", [], id="sqlite"),
        pytest.param("sqlite+aiosqlite:///:memory:", [], id="sqlite-in-memory"),
        pytest.param("postgresql+psycopg://probe:pw@db:5432/probe", [], id="postgresql"),
        pytest.param("mysql://probe@db/probe", [f"unsupported store driver 'mysql': {USE}"],
                     id="mysql"),
        pytest.param("postgresql+psycopgx://probe@db/probe",
                     [f"unsupported store driver 'postgresql+psycopgx': {USE}"], id="typo"),
        pytest.param("sqlite:///probe.db", [f"unsupported store driver 'sqlite': {USE}"],
                     id="sqlite-without-an-async-driver"),
        pytest.param("postgresql://probe@db/probe",
                     [f"unsupported store driver 'postgresql': {USE}"],
                     id="postgresql-whose-driver-depends-on-the-sqlalchemy-version"),
        pytest.param("probe.db", [INVALID_URL], id="a-file-name"),
        pytest.param("postgresql+psycopg://probe@db:port/probe", [INVALID_URL], id="bad-port"),
        pytest.param("postgresql+psycopg://probe@db:99999/probe",
                     ["the port must be 1 to 65535"], id="port-out-of-range"),
    ],
)  # fmt: skip
def test_the_store_url_is_one_open_store_can_open(
    url: str, expected: list[str], tmp_path: Path
) -> None:
    assert _store_problems(url, tmp_path) == expected


def test_an_integer_of_100k_digits_is_a_located_problem(tmp_path: Path) -> None:
    """Past Python's int-string limit (4,300 digits) and past `C_LOADER_FROM`: libyaml's way."""
    config = tmp_path / "probe.yaml"
    config.write_text("defaults:\n  max_in_flight: " + "9" * 100_000 + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "probe", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"{config}:2: defaults.max_in_flight: integer too large (100000 digits)\n"


MERGE_BOMB = "a: &a {x: 1, y: 2}\n" + "".join(
    f"{name}: &{name} {{<<: [{', '.join([f'*{prev}'] * 10)}]}}\n"
    for prev, name in zip("abcdefghi", "bcdefghij", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            (DATA / "invalid-alias-bomb.yaml").read_text(),
            "6: e[7]: YAML aliases expand to more than 100000 values",
            id="billion-laughs",
        ),
        pytest.param(
            MERGE_BOMB,
            "6: f.<<[1]: YAML aliases expand to more than 100000 values",
            id="merge-keys",
        ),
        pytest.param(
            "labels: &a [*a, *a]\n",
            "1: labels" + "[0]" * 63 + f": nested more than {MAX_DEPTH} levels deep, or an "
            "alias that contains itself",
            id="an-alias-that-contains-itself-twice",
        ),
    ],
)
def test_alias_bombs_are_refused_at_once_and_small(
    text: str, expected: str, tmp_path: Path
) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(text)
    tracemalloc.start()
    started = time.process_time()  # CPU seconds: a busy machine does not inflate them
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(config, environ={})
        took = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.problems == [f"{config}:{expected}"]
    # Hang and blow-up guards, not benchmarks: 0.06 s of CPU and 15 MB here (before: 20 s
    # and 3 GB, then a MemoryError, for billion laughs; forever for the alias in itself).
    assert took < 5
    assert peak < 50 * 2**20
