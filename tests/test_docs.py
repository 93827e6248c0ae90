"""The operator docs agree with the code: reason codes, metrics, links and commands.

**Reason codes** are short strings scattered over the transports and the runner, not an
enum, so they are collected from the source with `ast` (`reason_codes`). A code is any
string that can reach a result's ``reason``:

1. a class attribute ``reason = "..."`` of `TransportError` or any class derived from it
   (found by name, across modules, so a transport's own error class counts);
2. the ``reason`` argument of a call that makes an error or a result: a call of such a
   class or of ``type(exc)``; of any class with an annotated ``reason`` field (`Result`,
   the runner's verdict), by keyword or by position; or of any function with a parameter
   annotated `Outcome` and one named ``reason`` (the runner's helper that records a
   result, whatever its name);
3. when that argument is a variable, every string constant assigned to that variable in
   the same function (``reason = "http_5xx" if ... else "unexpected_status"``,
   ``outcome, reason = Outcome.LOST, "seen_after_deadline"``,
   ``reason = probe.send_reason or "interrupted"``);
4. an f-string argument is expanded from `COMPUTED`: ``f"ack_{code.lower()}"`` is each of
   ``ACK_CODES_ERROR``, read from the source too. An f-string the table does not know
   fails the test, so a new computed code cannot slip past;
5. `probe.model.PROBE_FAULTS`, imported.

``reason=`` on a log call (``log.warning(..., reason=...)``) is a log field, not a result
reason, and is not collected. The simulator (`probe/sim`) records no results and is left
out. `test_collector_sees_the_error_tree` checks the collector against the live classes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from probe import errors
from probe.cli import main
from probe.config.models import Config, resolve_flows
from probe.metrics.registry import Metrics
from probe.model import PROBE_FAULTS, Outcome, Result

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "probe"
DOCS = ROOT / "docs"
SKIPPED_PACKAGES = ("sim",)  # the simulator's strings are never a result's reason

# f-string reasons: the template (each {...} as {}) -> the module-level constant whose
# members fill it in, and how.
COMPUTED = {"ack_{}": ("ACK_CODES_ERROR", str.lower)}

# Files that other work writes; a link to one that is not there yet is reported, not failed.
PENDING = {"docs/config-reference.md"}


# --- reason codes ---------------------------------------------------------------------------


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PROBE.rglob("*.py")):
        if path.relative_to(PROBE).parts[0] in SKIPPED_PACKAGES:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _error_classes(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """`TransportError` and every class that derives from it, by name, to a fixed point."""
    family = {"TransportError"}
    classes = [
        node for _, tree in trees for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
    ]
    while True:
        more = {c.name for c in classes if any(_name(b) in family for b in c.bases)}
        if more <= family:
            return family
        family |= more


def _constants(node: ast.expr) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def _own(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``scope`` (a module or function), without those of functions inside it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.ClassDef):
            stack.extend(n for n in node.body if not isinstance(n, ast.FunctionDef))


def _assigned(function: ast.AST, variable: str) -> Iterator[ast.expr]:
    """Each value assigned to ``variable`` in ``function``, tuple assignments unpacked."""
    for node in _own(function):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id == variable:
                yield node.value
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for t, v in zip(target.elts, node.value.elts, strict=False):
                    if isinstance(t, ast.Name) and t.id == variable:
                        yield v


def _module_constant(trees: list[tuple[Path, ast.Module]], name: str) -> set[str]:
    for _, tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                return set(_constants(node.value))
    raise AssertionError(f"no module-level {name} in probe/: update COMPUTED in this test")


def _reason_fields(trees: list[tuple[Path, ast.Module]]) -> dict[str, int]:
    """Classes with an annotated ``reason`` field (`Result`, a verdict), and its position
    among the fields, for a positional argument."""
    found = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                fields = [
                    stmt.target.id
                    for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                ]
                if "reason" in fields:
                    found[node.name] = fields.index("reason")
    return found


def _result_makers(trees: list[tuple[Path, ast.Module]]) -> set[str]:
    """Functions that record a result: a parameter annotated `Outcome` and one named reason."""
    makers = set()
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                typed = any(a.annotation is not None and "Outcome" in ast.unparse(a.annotation)
                            for a in args)  # fmt: skip
                if typed and any(a.arg == "reason" for a in args):
                    makers.add(node.name)
    return makers


def _makes_result(call: ast.Call, makers: set[str]) -> bool:
    if _name(call.func) in makers:
        return True
    # type(exc)(message, reason=exc.reason): an error of the same class, passed on.
    return isinstance(call.func, ast.Call) and _name(call.func.func) == "type"


def _functions(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def reason_codes() -> dict[str, set[str]]:
    """Every reason code the daemon can record, with where each one comes from."""
    trees = list(_sources())
    family = _error_classes(trees)
    fields = _reason_fields(trees)
    makers = family | _result_makers(trees) | set(fields)
    found: dict[str, set[str]] = {}

    def add(code: str, path: Path, line: int) -> None:
        found.setdefault(code, set()).add(f"{path.relative_to(ROOT)}:{line}")

    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in family:
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "reason" for t in stmt.targets)
                        and isinstance(stmt.value, ast.Constant)
                    ):
                        add(stmt.value.value, path, stmt.lineno)
        for function in _functions(tree):
            # Only the calls of this function itself: nested ones come with their own scope.
            for call in _own(function):
                if not isinstance(call, ast.Call) or not _makes_result(call, makers):
                    continue
                values = [k.value for k in call.keywords if k.arg == "reason"]
                position = fields.get(_name(call.func) or "")
                if position is not None and len(call.args) > position:
                    values.append(call.args[position])
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        add(value.value, path, call.lineno)
                    elif isinstance(value, ast.JoinedStr):
                        template = "".join(
                            part.value if isinstance(part, ast.Constant) else "{}"
                            for part in value.values
                        )
                        assert template in COMPUTED, (
                            f"{path}:{call.lineno}: a computed reason {template!r}: "
                            "tell COMPUTED in tests/test_docs.py how to expand it"
                        )
                        constant, how = COMPUTED[template]
                        for member in _module_constant(trees, constant):
                            add(template.format(how(member)), path, call.lineno)
                    elif isinstance(value, ast.Name):
                        for assigned in _assigned(function, value.id):
                            for code in _constants(assigned):
                                add(code, path, call.lineno)
    for code in PROBE_FAULTS:
        add(code, PROBE / "model.py", 0)
    return found


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of each body row of the first table under ``heading`` (a Markdown heading)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip("#").strip() == heading), None)
    assert start is not None, f"no heading {heading!r}"
    rows: list[list[str]] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells):
                rows.append(cells)
        elif in_table or line.startswith("#"):
            break
    return rows[1:]  # without the header row


def documented_reasons() -> set[str]:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    rows = _table_rows(text, "Reason codes")
    return {code for cells in rows for code in re.findall(r"`([a-z0-9_]+)`", cells[0])}


def test_every_reason_code_is_in_the_troubleshooting_table() -> None:
    codes = reason_codes()
    documented = documented_reasons()
    missing = {code: sorted(where) for code, where in codes.items() if code not in documented}
    assert not missing, f"reason codes missing from docs/troubleshooting.md: {missing}"
    unknown = documented - set(codes)
    assert not unknown, f"docs/troubleshooting.md lists codes the code never records: {unknown}"


def test_collector_sees_the_error_tree() -> None:
    """The AST collector finds what the live classes say, and the codes of each kind."""
    codes = reason_codes()

    def tree(cls: type[errors.TransportError]) -> Iterator[type[errors.TransportError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from tree(sub)

    live = {cls.reason for cls in tree(errors.TransportError)}
    assert live <= set(codes)
    # One of each way a code is written: a literal, a variable, a tuple, an f-string.
    assert {"tls", "http_5xx", "seen_after_deadline", "ack_ae", "interrupted"} <= set(codes)


# --- metrics --------------------------------------------------------------------------------

STATIC = {"region": "test"}


def _prometheus_metrics(registry: CollectorRegistry) -> Iterator[Counter | Gauge | Histogram]:
    """The prometheus_client metrics in ``registry``, and in registries registered in it."""
    for collector in list(registry._collector_to_names):
        if isinstance(collector, CollectorRegistry):
            yield from _prometheus_metrics(collector)
        elif isinstance(collector, Counter | Gauge | Histogram):
            yield collector


def _busy_metrics() -> Metrics:
    """The daemon's real registry, with a flow of each shape and every series touched."""
    config = Config.model_validate(
        {
            "labels": STATIC,
            "flows": [
                {
                    "name": "gs-adt",
                    "source": {"type": "mllp", "host": "127.0.0.1", "port": 1},
                    "destinations": [{"name": "labka", "type": "mllp", "listen": "127.0.0.1:2"}],
                },
                {"name": "labka-api", "source": {"type": "http", "url": "http://127.0.0.1:1/"}},
            ],
        }
    )
    metrics = Metrics(config.labels)
    flows = resolve_flows(config)
    metrics.declare(flows)
    slot = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for flow, dest in (("gs-adt", "labka"), ("labka-api", "")):
        result = Result(
            probe_id="PR0000000000000000000",
            flow=flow,
            destination=dest,
            outcome=Outcome.DELIVERED,
            latency=0.2,
            latency_clock="monotonic",
            duplicates=1,
            reason=None,
            slot=slot,
            resolved_at=slot,
            mismatch="PID-5",
        )
        metrics.observe_result(result, now=slot.timestamp())
    # Every other series gets a value, through prometheus_client's own objects, so the
    # test does not depend on the names of the daemon's helper methods.
    for collector in _prometheus_metrics(metrics.registry):
        names = collector._labelnames
        child: Any = collector.labels(*("x" for _ in names)) if names else collector
        if isinstance(collector, Counter):
            child.inc()
        elif isinstance(collector, Gauge):
            child.set(1)
        else:
            child.observe(0.01)
    return metrics


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """``name -> (type, labels)`` from the table in docs/metrics.md."""
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    table: dict[str, tuple[str, set[str]]] = {}
    for cells in _table_rows(text, "The metrics"):
        name = cells[0].strip("`")
        labels = {label.strip() for label in re.sub(r"[`]", "", cells[2]).split(",")}
        table[name] = (cells[1], {label for label in labels if label and label != "—"})
    return table


def exposed_metrics(metrics: Metrics) -> dict[str, tuple[str, set[str]]]:
    """``name -> (type, labels)`` as the exposition shows them (a counter as ``*_total``)."""
    text = metrics.exposition().decode()
    exposed: dict[str, tuple[str, set[str]]] = {}
    families = list(text_string_to_metric_families(text))
    created = {f.name for f in families if f.name.endswith("_created") and f.type == "gauge"}
    for family in families:
        if family.name in created:
            continue  # prometheus_client's `_created`, folded into its counter or histogram
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels} - {"le"} - set(STATIC)
        exposed[name] = (family.type, labels)
    return exposed


def _created_families(metrics: Metrics) -> set[str]:
    text = metrics.exposition().decode()
    return {
        f.name
        for f in text_string_to_metric_families(text)
        if f.name.endswith("_created") and f.type == "gauge"
    }


def test_every_exposed_metric_is_documented_and_nothing_more() -> None:
    metrics = _busy_metrics()
    exposed = exposed_metrics(metrics)
    # Whatever the registry holds, touched or not, is in the exposition that was checked.
    registered = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in metrics.registry.collect()
    }
    missing = registered - set(exposed)
    assert not missing, f"series the test did not touch: {missing}"
    folded = {name.removesuffix("_created") for name in _created_families(metrics)}
    assert folded <= {name.removesuffix("_total") for name in exposed}
    documented = documented_metrics()
    assert set(exposed) - set(documented) == set(), "undocumented metrics in docs/metrics.md"
    assert set(documented) - set(exposed) == set(), "docs/metrics.md lists metrics not exported"
    for name, (kind, labels) in exposed.items():
        assert documented[name] == (kind, labels), f"{name}: docs say {documented[name]}"


# --- links and commands ---------------------------------------------------------------------


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    pending = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else ""
        assert relative, f"{path.name}: {target} points outside the repository"
        if not resolved.exists() and relative in PENDING:
            pending.append(relative)
            continue
        assert resolved.exists(), f"{path.name}: broken link {target}"
        if anchor and resolved.suffix == ".md":
            anchors = _anchors(resolved.read_text(encoding="utf-8"))
            assert anchor in anchors, f"{path.name}: no heading #{anchor} in {file or path.name}"
    if pending:
        pytest.skip(f"links to files not written yet: {sorted(set(pending))}")


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_docs_stand_alone(path: Path) -> None:
    """The project's docs never point at the workspace's shared folder."""
    assert "../shared" not in path.read_text(encoding="utf-8")


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = re.compile(r'pip"? install (-q )?"\.\[test,dev\]"')
    assert install.search(readme), "the README installs what CI installs"
    assert install.search(ci)
    assert re.search(r"\bpython -m pytest$", ci, re.MULTILINE), "CI runs plain pytest"
    assert "python -m pytest" in readme


@pytest.mark.parametrize("name", ["README.md", "docs/cli.md"])
def test_documented_commands_exist(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``probe COMMAND`` the README and the CLI reference name is a real subcommand."""
    text = (ROOT / name).read_text(encoding="utf-8")
    commands = sorted(set(re.findall(r"`probe ([a-z-]+(?: [a-z]+)?)", text)))
    assert commands
    for command in commands:
        words = command.split()
        if words == ["db"]:
            continue
        with pytest.raises(SystemExit) as exit_info:
            main([*words, "--help"])
        assert exit_info.value.code == 0, command
    capsys.readouterr()
