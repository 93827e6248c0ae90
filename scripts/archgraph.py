"""Draw the package graph of ``probe/`` from its imports, with nothing but `ast`.

Usage::

    python scripts/archgraph.py            # write docs/architecture.dot, and
                                           # docs/architecture.svg when Graphviz is installed
    python scripts/archgraph.py --check    # exit 1 if docs/architecture.dot is not current
    python scripts/archgraph.py --print    # the DOT on stdout, nothing written

A node is a **unit**: a subpackage of ``probe`` (``probe.store``) or a top-level module
(``probe.model``); every module inside a subpackage counts as that subpackage. An edge
``a -> b`` says some module of ``a`` imports some module of ``b``. ``probe/__main__.py``,
the ``python -m probe`` shim, counts as ``probe.cli``; ``probe/__init__.py`` imports
nothing of ours and is not drawn.

Each edge has the strongest **kind** among its imports:

- ``module``: at module level, run when the module is imported (solid line);
- ``function``: inside a function, run when the function first runs (dashed);
- ``typing``: under ``if TYPE_CHECKING:`` only, never run (dotted).

`tests/test_architecture.py` holds the committed DOT equal to `render_dot(graph(...))`
and checks the graph for cycles and for imports against the layers.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "probe"
DOT_FILE = ROOT / "docs" / "architecture.dot"
SVG_FILE = ROOT / "docs" / "architecture.svg"

# From strongest to weakest: an edge is drawn with the strongest kind among its imports.
KINDS = ("module", "function", "typing")
_STYLE = {"module": "solid", "function": "dashed", "typing": "dotted"}
_SHIMS = {"__main__": "cli"}  # modules that count as another unit


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as seen from ``source`` (a module name)."""

    source: str
    target: str
    kind: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """``probe/store/spool.py`` -> ``probe.store.spool``; an ``__init__`` is its package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str | None:
    """The node a module belongs to: ``probe.store.spool`` -> ``probe.store``; None outside."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return f"{PACKAGE}.{_SHIMS.get(parts[1], parts[1])}"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Finder(ast.NodeVisitor):
    """Every import in a module, with the kind its place gives it."""

    def __init__(self, module: str, *, is_package: bool) -> None:
        self.module = module
        # What a relative import is relative to: the package itself, or the module's package.
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._kind = "module"

    def _within(self, kind: str, nodes: list[ast.stmt]) -> None:
        outer = self._kind
        if KINDS.index(kind) > KINDS.index(outer):  # typing inside a function stays typing
            self._kind = kind
        for node in nodes:
            self.visit(node)
        self._kind = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._within("function", node.body)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._within("function", node.body)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._within("typing", node.body)
            self._within(self._kind, node.orelse)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join([*base, node.module] if node.module else base)
        else:
            prefix = node.module or ""
        # `from probe.store import spool` may import a module: the target is the longest
        # name that is one (`resolve`), so `from probe import errors` is probe.errors and
        # `from probe import __version__` is probe itself.
        for alias in node.names:
            self._add(f"{prefix}.{alias.name}", node.lineno)

    def _add(self, target: str, line: int) -> None:
        self.found.append(Import(self.module, target, self._kind, line))


def imports(root: Path) -> Iterator[Import]:
    """Every import of every module under ``root`` (the ``probe`` folder)."""
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        finder = _Finder(module, is_package=path.name == "__init__.py")
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        yield from finder.found


def resolve(target: str, modules: set[str]) -> str:
    """The longest prefix of ``target`` that is one of ``modules`` (else ``target``)."""
    name = target
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name if name in modules else target


def units(root: Path) -> list[str]:
    """Every node: the subpackages and top-level modules of ``root``."""
    found = {unit_of(module_name(path, root)) for path in root.rglob("*.py")}
    return sorted(unit for unit in found if unit is not None)


def graph(root: Path = ROOT / PACKAGE) -> dict[tuple[str, str], str]:
    """``(source unit, target unit) -> kind`` for every import between two units."""
    modules = {module_name(path, root) for path in root.rglob("*.py")}
    edges: dict[tuple[str, str], str] = {}
    for found in imports(root):
        source, target = unit_of(found.source), unit_of(resolve(found.target, modules))
        if source is None or target is None or source == target:
            continue
        kind = edges.get((source, target))
        if kind is None or KINDS.index(found.kind) < KINDS.index(kind):
            edges[(source, target)] = found.kind
    return dict(sorted(edges.items()))


def render_dot(edges: dict[tuple[str, str], str], nodes: list[str]) -> str:
    """The graph in Graphviz DOT, sorted, so the same code always gives the same text."""
    lines = [
        "// Generated by scripts/archgraph.py from the imports of probe/: do not edit.",
        "// Solid: a module-level import; dashed: inside a function; dotted: TYPE_CHECKING only.",
        "digraph probe {",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.35, ranksep=0.5];',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    lines += [f'  "{node}";' for node in nodes]
    for (source, target), kind in edges.items():
        style = "" if kind == "module" else f" [style={_STYLE[kind]}]"
        lines.append(f'  "{source}" -> "{target}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def current_dot(root: Path = ROOT / PACKAGE) -> str:
    """The DOT that the code as it is now gives."""
    return render_dot(graph(root), units(root))


def render_svg(dot_file: Path, svg_file: Path) -> bool:
    """Render with Graphviz's ``dot``; False when it is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        return False
    subprocess.run([dot, "-Tsvg", str(dot_file), "-o", str(svg_file)], check=True)  # noqa: S603
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 if the DOT is not current")
    action.add_argument("--print", action="store_true", help="print the DOT, write nothing")
    args = parser.parse_args(argv)
    text = current_dot()
    if args.print:
        sys.stdout.write(text)
        return 0
    if args.check:
        committed = DOT_FILE.read_text(encoding="utf-8") if DOT_FILE.exists() else ""
        if committed != text:
            print(f"{DOT_FILE.relative_to(ROOT)} is stale: run python scripts/archgraph.py")
            return 1
        return 0
    DOT_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {DOT_FILE.relative_to(ROOT)}")
    if render_svg(DOT_FILE, SVG_FILE):
        print(f"wrote {SVG_FILE.relative_to(ROOT)}")
    else:
        print("Graphviz `dot` is not installed: no SVG (apt-get install graphviz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
