"""YAML read the careful way, through its node tree: the data and the line of every path.

    >>> data, lines = parse_yaml("flows:\\n  - name: a\\n", Path("probe.yaml"))
    >>> lines[("flows", 0, "name")]
    2

The tree is walked (`Walk`) before anything is built from it, so a file that is endless
(too deep, or aliases that repeat too much) or holds an integer too long for `int` is a
located `ConfigError`, refused at the first sign, never built. Every YAML error is one too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from probe.config.problems import PathT, prefix
from probe.errors import ConfigError

MAX_DEPTH = 64  # far beyond any real config; deeper YAML is refused, never recursed into
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep, or an alias that contains itself"
# Values that aliases (``*name``) may repeat, in all: an anchored flow or destination block
# reused a thousand times is far below it; billion laughs (ten levels of ten aliases, 10^10
# values from 400 bytes) is refused after 100,000, in 0.06 s.
MAX_ALIAS_VALUES = 100_000
_BOMB = f"YAML aliases expand to more than {MAX_ALIAS_VALUES} values"
# Python's int() refuses longer decimal numbers (its int-string conversion limit).
MAX_DIGITS = 4300
_INT = "tag:yaml.org,2002:int"

# Past this size, libyaml's loader (when PyYAML has it) parses: 5,000 flows (1.5 MB) took
# 6 s in pure Python and 2.5 s with it, and 0.3 s by `probe.config.yaml_events`, the fast
# way. Small files keep the pure-Python loader, whose errors the fuzz tests pin down;
# libyaml stops nesting at 1,000 levels by itself.
C_LOADER_FROM = 64 * 1024


def has_c_loader(text: str) -> bool:
    """Whether ``text`` is big enough for libyaml, and PyYAML has it."""
    return len(text) > C_LOADER_FROM and hasattr(yaml, "CSafeLoader")


def parse_yaml(text: str, path: Path) -> tuple[Any, dict[PathT, int]]:
    """The data and the line of each path; the node tree is walked before anything is built."""
    walk = Walk(path)
    try:
        loader = yaml.CSafeLoader(text) if has_c_loader(text) else yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                walk.run(node)
            if walk.problems:
                raise ConfigError(walk.problems)
            data = _construct(loader, node, path) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: YAML syntax error: {exc.problem}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character such as NUL
        line = text.count("\n", 0, exc.position) + 1
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError([f"{path}:{line}: YAML error: {message}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1: YAML error: {exc}"]) from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise ConfigError([f"{path}:1: {TOO_DEEP}"]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the config must be a mapping of keys to values"])
    return data, walk.lines


def _construct(loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.Node, path: Path) -> Any:
    """The node tree's data; a scalar its constructor refuses is a located problem."""
    try:
        return loader.construct_document(node)
    except (ValueError, OverflowError) as exc:  # `!!float soon`, a 13th month
        for at, scalar in _scalars(node, ()):
            constructor = loader.yaml_constructors.get(scalar.tag)
            try:
                if constructor is not None:
                    constructor(loader, scalar)
            except (ValueError, OverflowError) as found:
                kind = scalar.tag.rpartition(":")[2]
                message = f"invalid YAML {kind} {scalar.value!r}: {found}"
                line = scalar.start_mark.line + 1
                raise ConfigError([f"{path}:{line}: {prefix(at)}{message}"]) from None
        raise ConfigError([f"{path}:1: YAML error: {exc}"]) from None


def _scalars(node: yaml.Node, at: PathT) -> Iterator[tuple[PathT, yaml.ScalarNode]]:
    """Every scalar, keys included, in document order (`Walk` has bounded the tree)."""
    if isinstance(node, yaml.ScalarNode):
        yield at, node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(key, (*at, key.value))
            yield from _scalars(value, (*at, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, (*at, index))


class _Stop(Exception):
    """The walk found the tree endless: too deep, or aliases that repeat too much."""


class Walk:
    """One walk over the node tree, before anything is built from it.

    It records the line of every path, and finds duplicate keys, integers too long for
    `int` (`MAX_DIGITS`) and the two ways a small file can be endless, each refused at the
    first sign: nesting deeper than `MAX_DEPTH` (or an alias that contains itself) and
    aliases that repeat more than `MAX_ALIAS_VALUES` values. Building the data (and
    validating it) only expands what this walk has counted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[PathT, int] = {}
        self.problems: list[str] = []
        self._seen: set[int] = set()  # the nodes walked; seen again, a node is an alias
        self._repeated = 0

    def run(self, root: yaml.Node) -> None:
        """Walk from ``root``; what was found is in `lines` and `problems`."""
        with contextlib.suppress(_Stop):
            self._node(root, (), 1, None)

    def _node(self, node: yaml.Node, at: PathT, line: int, alias: tuple[PathT, int] | None) -> None:
        """``line``: where ``node`` is referred to; ``alias``: the outermost alias above it."""
        self.lines[at] = node.start_mark.line + 1
        if id(node) not in self._seen:
            self._seen.add(id(node))
            self._check_digits(node, at)
        else:
            self._repeated += 1
            alias = alias or (at, line)
            if self._repeated > MAX_ALIAS_VALUES:
                self._problem(*alias, _BOMB)
                raise _Stop
        if len(at) > MAX_DEPTH:  # also ends an alias that contains itself (``a: &a [*a]``)
            self._problem(at[:MAX_DEPTH], self.lines[at], TOO_DEEP)
            raise _Stop
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, at, alias)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._node(item, (*at, index), self.lines[at], alias)

    def _mapping(self, node: yaml.MappingNode, at: PathT, alias: tuple[PathT, int] | None) -> None:
        seen: dict[object, int] = {}
        for key, value in node.value:
            name = key.value
            key_line = key.start_mark.line + 1
            if name in seen:
                self._problem((*at, name), key_line, f"duplicate key (first at line {seen[name]})")
            seen[name] = key_line
            self._node(value, (*at, name), key_line, alias)
            self.lines[(*at, name)] = key_line

    def _check_digits(self, node: yaml.Node, at: PathT) -> None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT and len(node.value) > MAX_DIGITS:
            digits = len(node.value.lstrip("+-"))
            self._problem(at, self.lines[at], f"integer too large ({digits} digits)")

    def _problem(self, at: PathT, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {prefix(at)}{message}")
