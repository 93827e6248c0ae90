"""The package graph of probe/: drawn up to date, without cycles, and in layers.

The graph comes from `scripts/archgraph.py`, which reads the imports with `ast`. An edge
has a kind: ``module`` (a module-level import), ``function`` (an import inside a function,
run when it first runs) or ``typing`` (under ``if TYPE_CHECKING:``, never run).

- The cycle check counts ``module`` and ``function`` edges: both run, and a cycle of lazy
  imports is a cycle all the same, only hidden. ``typing`` edges are left out: they never
  run and cannot make an import cycle.
- The layer check counts every kind, ``typing`` included: a type-only import upwards still
  ties a lower layer to a higher one. Set `LAYERS_COUNT_TYPING` to False to relax it.

To change the rules, edit `LAYERS`, `SIDE_UNITS` and `KNOWN_BREACHES` below. After a change
to the imports of probe/, regenerate the picture with ``python scripts/archgraph.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _archgraph() -> ModuleType:
    path = ROOT / "scripts" / "archgraph.py"
    spec = importlib.util.spec_from_file_location("archgraph", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("archgraph", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


archgraph = _archgraph()

# The layers, from the top. A unit may import units of the layers *below* its own, never
# its own layer or one above. Every unit of probe/ must be here or in SIDE_UNITS, so a new
# package gets a place on purpose.
LAYERS: list[set[str]] = [
    {"probe.cli"},
    {"probe.engine", "probe.notices_cli"},
    {"probe.web"},
    {"probe.report", "probe.metrics", "probe.notify"},
    {"probe.config"},
    {"probe.transports"},
    {"probe.store"},
    {"probe.model", "probe.errors", "probe.logs", "probe.durations", "probe.markdown"},
]

# Tools beside the stack: what each may import, and who may import it. probe.sim is the
# simulated landscape of `probe sim` and `probe demo` and of the tests.
SIDE_UNITS: dict[str, dict[str, set[str]]] = {
    "probe.sim": {
        "imports": {
            "probe.transports",
            "probe.model",
            "probe.errors",
            "probe.logs",
            "probe.durations",
        },
        "imported_by": {"probe.cli", "probe.engine"},
    },
}

# Edges that break the rules today and are known; each must still exist (so a fixed one is
# taken off this list), and no other may appear. Empty it as the layout settles.
KNOWN_BREACHES: dict[tuple[str, str], str] = {
    ("probe.sim", "probe.store"): "sim imports store.create_engine and store.safe_url",
    ("probe.sim", "probe.web"): "sim imports web.listener (Listener, bind_tcp)",
}

# Edges that close a cycle today, if any. The graph without them must have no cycle, and
# each must still close one.
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()

LAYERS_COUNT_TYPING = True


def _layer(unit: str) -> int | None:
    for depth, layer in enumerate(LAYERS):
        if unit in layer:
            return depth
    return None


def allowed(source: str, target: str) -> bool:
    """Whether ``source`` may import ``target`` under `LAYERS` and `SIDE_UNITS`."""
    if source in SIDE_UNITS:
        return target in SIDE_UNITS[source]["imports"]
    if target in SIDE_UNITS:
        return source in SIDE_UNITS[target]["imported_by"]
    high, low = _layer(source), _layer(target)
    assert high is not None
    assert low is not None
    return low > high


def breaches(edges: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    return {
        edge: kind
        for edge, kind in edges.items()
        if (LAYERS_COUNT_TYPING or kind != "typing") and not allowed(*edge)
    }


def find_cycle(edges: list[tuple[str, str]]) -> list[str] | None:
    """One cycle in the directed graph, as its nodes, or None."""
    succ: dict[str, list[str]] = {}
    for source, target in edges:
        succ.setdefault(source, []).append(target)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in succ.get(node, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(succ):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.fixture(scope="module")
def edges() -> dict[tuple[str, str], str]:
    return archgraph.graph()  # type: ignore[no-any-return]


def test_committed_dot_is_current() -> None:
    committed = (ROOT / "docs" / "architecture.dot").read_text(encoding="utf-8")
    assert committed == archgraph.current_dot(), (
        "docs/architecture.dot is stale: run `python scripts/archgraph.py` and commit it"
    )


def test_svg_matches_the_dot_nodes() -> None:
    """The picture shows every unit (it is rendered from the DOT; regenerate both)."""
    svg = ROOT / "docs" / "architecture.svg"
    if not svg.exists():
        pytest.skip("docs/architecture.svg is not rendered (Graphviz missing)")
    text = svg.read_text(encoding="utf-8")
    for unit in archgraph.units(ROOT / "probe"):
        assert f">{unit}<" in text, f"{unit} is not in docs/architecture.svg: regenerate it"


def test_every_unit_has_a_place() -> None:
    placed = set().union(*LAYERS) | set(SIDE_UNITS)
    missing = [u for u in archgraph.units(ROOT / "probe") if u not in placed]
    assert not missing, f"give these a layer in LAYERS (or SIDE_UNITS): {missing}"


def test_no_import_cycle(edges: dict[tuple[str, str], str]) -> None:
    running = [edge for edge, kind in edges.items() if kind != "typing"]
    cycle = find_cycle([edge for edge in running if edge not in KNOWN_CYCLE_EDGES])
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    rest = [edge for edge in running if edge not in KNOWN_CYCLE_EDGES]
    stale = [edge for edge in KNOWN_CYCLE_EDGES if find_cycle([*rest, edge]) is None]
    assert not stale, f"no longer closes a cycle, take it off KNOWN_CYCLE_EDGES: {stale}"


def test_layers(edges: dict[tuple[str, str], str]) -> None:
    found = breaches(edges)
    new = {edge: kind for edge, kind in found.items() if edge not in KNOWN_BREACHES}
    fixed = [edge for edge in KNOWN_BREACHES if edge not in found]
    assert not new, "imports against the layers: " + ", ".join(
        f"{s} -> {t} ({kind})" for (s, t), kind in new.items()
    )
    assert not fixed, f"fixed, take them off KNOWN_BREACHES: {fixed}"


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        pytest.param("probe.cli", "probe.model", True, id="down-many"),
        pytest.param("probe.store", "probe.model", True, id="down-one"),
        pytest.param("probe.store", "probe.transports", False, id="up"),
        pytest.param("probe.report", "probe.metrics", False, id="same-layer"),
        pytest.param("probe.engine", "probe.sim", True, id="side-imported"),
        pytest.param("probe.web", "probe.sim", False, id="side-not-imported"),
        pytest.param("probe.sim", "probe.transports", True, id="side-imports"),
        pytest.param("probe.sim", "probe.config", False, id="side-not-imports"),
    ],
)
def test_the_rule(source: str, target: str, expected: bool) -> None:
    assert allowed(source, target) is expected


def test_finder_kinds(tmp_path: Path) -> None:
    """The three kinds, relative imports, and `from probe import name` read as they should."""
    pkg = tmp_path / "probe"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "b.py").write_text("")
    (pkg / "c.py").write_text("")
    (pkg / "d.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .. import b\nfrom probe import __version__\n")
    (pkg / "a" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from probe.c import C\n"
        "def f():\n    import probe.d\n    from . import y\n"
    )
    (pkg / "a" / "y.py").write_text("")
    assert archgraph.graph(pkg) == {
        ("probe.a", "probe.b"): "module",
        ("probe.a", "probe.c"): "typing",
        ("probe.a", "probe.d"): "function",
    }
