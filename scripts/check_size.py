"""Check the house rules ruff cannot: modules under 400 lines, functions under 50.

Usage::

    python scripts/check_size.py            # checks probe/, exit 1 on a breach


Lines are counted as in the file, docstrings and comments included: what a reader scrolls.
Migrations are exempt (they are history, written once).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

MODULE_LINES = 400
FUNCTION_LINES = 50
EXEMPT = ("probe/store/migrations/",)


def breaches(root: Path) -> list[str]:
    """Every module over `MODULE_LINES` and every function over `FUNCTION_LINES`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = path.as_posix()
        if any(part in name for part in EXEMPT):
            continue
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MODULE_LINES:
            found.append(f"{name}: {lines} lines (limit {MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = node.end_lineno - start + 1
                if length > FUNCTION_LINES:
                    where = f"{name}:{node.lineno}: {node.name}"
                    found.append(f"{where} is {length} lines (limit {FUNCTION_LINES})")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="probe", type=Path)
    args = parser.parse_args()
    found = breaches(args.root)
    for line in found:
        print(line)
    print(f"{len(found)} breach(es)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
