"""Reading a config file: YAML with line numbers, ``${ENV}`` and ``*_file`` secrets.

Every problem is reported with its YAML path and line, all at once, as a `ConfigError`:

    probe.yaml:12: flows[0].interval: invalid duration 'fast': use a number and a unit, ...

``${NAME}`` is replaced by the environment variable NAME when the file is loaded, except the
probe's own template variables (``${probe_id}``, ``${sent_at}``, ``${flow}``,
``${destination}``), which are filled in for each probe. A key ``X_file`` (other than the
ones that name real files, such as ``template_file`` and ``ca_file``) is replaced by ``X``
holding the file's content: that is how secrets stay out of the config file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from probe.config.models import Config
from probe.errors import ConfigError
from probe.logs import REDACTED

TEMPLATE_VARS = frozenset({"probe_id", "sent_at", "flow", "destination"})
_PATH_KEYS = frozenset({"template_file", "ca_file", "cert_file", "key_file"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL", re.IGNORECASE)
Path_ = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]+")
MAX_DEPTH = 64  # far beyond any real config; deeper YAML is refused, never recursed into
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep, or an alias that contains itself"
# Values that aliases (``*name``) may repeat, in all: an anchored flow or destination block
# reused a thousand times is far below it; billion laughs (ten levels of ten aliases, 10^10
# values from 400 bytes) is refused after 100,000, in 0.06 s.
MAX_ALIAS_VALUES = 100_000
_BOMB = f"YAML aliases expand to more than {MAX_ALIAS_VALUES} values"
# Python's int() refuses longer decimal numbers (its int-string conversion limit).
MAX_DIGITS = 4300


@dataclass(slots=True)
class LoadedConfig:
    """A validated config plus what was learnt while loading it."""

    config: Config
    path: Path
    secrets: frozenset[str] = field(default_factory=frozenset)


def load_config(path: str | Path, *, environ: dict[str, str] | None = None) -> LoadedConfig:
    """Load and validate a config file, or raise `ConfigError` listing every problem."""
    path = Path(path)
    env = dict(os.environ if environ is None else environ)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: config is not UTF-8: {exc.reason}"]) from None
    if len(text) > C_LOADER_FROM and hasattr(yaml, "CSafeLoader"):
        # The fast way: no node tree and no line map. Any problem at all, and the file is
        # read again the slow way below, which finds the problems' lines.
        data = _parse_plain(text)
        if data is not None:
            config, secrets, problems = _validate(data, _Locator(path, {}, data), env, path)
            if config is not None and not problems:
                return LoadedConfig(config=config, path=path, secrets=frozenset(secrets))
            del config, data  # freed before the node tree is built
    data, lines = _parse_yaml(text, path)
    config, secrets, problems = _validate(data, _Locator(path, lines, data), env, path)
    if config is None or problems:
        raise ConfigError(sorted(problems, key=_line_of))
    return LoadedConfig(config=config, path=path, secrets=frozenset(secrets))


def _validate(
    data: Any, where: _Locator, env: dict[str, str], path: Path
) -> tuple[Config | None, set[str], list[str]]:
    """``${ENV}`` and ``*_file`` filled in, then checked: (config or None, secrets, problems)."""
    problems: list[str] = []
    secrets: set[str] = set()
    data = _substitute(data, (), env, secrets, problems, where, base=path.parent)
    problems += _check_duplicate_flows(data, where)
    try:
        config = Config.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems += [where.describe(err) for err in exc.errors()]
        return None, secrets, problems
    return config, secrets, problems


# Past this size, libyaml's loader (when PyYAML has it) parses: 5,000 flows (1.5 MB) took
# 6 s in pure Python and 2.5 s with it, and 0.3 s by `_parse_plain`, the fast way. Small
# files keep the pure-Python loader, whose errors the fuzz tests pin down; libyaml stops
# nesting at 1,000 levels by itself.
C_LOADER_FROM = 64 * 1024


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[Path_, int]]:
    """The data and the line of each path; the node tree is walked before anything is built."""
    big = len(text) > C_LOADER_FROM and hasattr(yaml, "CSafeLoader")
    walk = _Walk(path)
    try:
        loader = yaml.CSafeLoader(text) if big else yaml.SafeLoader(text)
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
        raise ConfigError([f"{path}:1: {_TOO_DEEP}"]) from None
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
                raise ConfigError([f"{path}:{line}: {_prefix(at)}{message}"]) from None
        raise ConfigError([f"{path}:1: YAML error: {exc}"]) from None


def _scalars(node: yaml.Node, at: Path_) -> Iterator[tuple[Path_, yaml.ScalarNode]]:
    """Every scalar, keys included, in document order (`_Walk` has bounded the tree)."""
    if isinstance(node, yaml.ScalarNode):
        yield at, node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(key, (*at, key.value))
            yield from _scalars(value, (*at, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, (*at, index))


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
# The scalar types a config has; any other tag (a merge key ``<<``, ``!!binary``, ``=``) is
# left to `_parse_yaml`.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_KEY = object()  # an open mapping waiting for its next key


def _parse_plain(text: str) -> dict[Any, Any] | None:
    """The document as `_parse_yaml` builds it, straight from libyaml's events, or None.

    None, and `_parse_yaml` reads the file again, for anything unusual: an error of any kind,
    an anchor or alias, an explicit tag, a merge key, a duplicate or complex key, more than
    `MAX_DEPTH` levels, more than one document, or a document that is not a mapping.
    Neither a node tree nor a line map: on 5,000 flows (1.5 MB) 0.2 s and 7 MB at most,
    against 1.0 s and 93 MB for `_parse_yaml`'s node tree. Repeated scalars (keys, hosts)
    are one object each.
    """
    loader = yaml.CSafeLoader(text)
    try:
        return _from_events(loader)
    except Exception:  # whatever it is, the slow way reports it exactly as it always has
        return None
    finally:
        loader.dispose()


def _from_events(loader: yaml.CSafeLoader) -> dict[Any, Any] | None:
    get, construct = loader.get_event, loader.yaml_constructors
    resolve: Any = loader.resolve  # untyped in types-PyYAML
    if type(get()) is not yaml.StreamStartEvent or type(get()) is not yaml.DocumentStartEvent:
        return None
    scalars: dict[tuple[str, bool], Any] = {}  # repeated scalars are resolved once
    open_: list[Any] = []  # the mappings and sequences being filled, outermost first
    keys: list[Any] = []  # for each, the key waiting for its value, or _KEY
    while True:
        event: Any = get()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.tag is not None or event.anchor is not None:
                return None
            item = scalars.get(cache := (event.value, event.implicit[0]), _KEY)
            if item is _KEY:
                tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                if tag == _STR:
                    item = event.value
                elif tag in _PLAIN_TAGS:
                    node = yaml.ScalarNode(tag, event.value)
                    item = construct[tag](loader, node)
                else:
                    return None
                scalars[cache] = item
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if event.tag is not None or event.anchor is not None or len(open_) >= MAX_DEPTH:
                return None
            item = {} if kind is yaml.MappingStartEvent else []
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            keys.pop()
            done = open_.pop()
            if open_:
                continue
            end, stream_end = get(), get()
            if (
                type(end) is not yaml.DocumentEndEvent
                or type(stream_end) is not yaml.StreamEndEvent
                or not isinstance(done, dict)
            ):
                return None
            return done
        else:  # an alias, or an empty document
            return None
        if not open_:  # the document's root
            if not isinstance(item, dict):
                return None
        elif isinstance(parent := open_[-1], list):
            parent.append(item)
        elif keys[-1] is _KEY:
            if isinstance(item, dict | list) or item in parent:
                return None
            keys[-1] = item
        else:
            parent[keys[-1]] = item
            keys[-1] = _KEY
        if isinstance(item, dict | list):
            open_.append(item)
            keys.append(_KEY)


class _Stop(Exception):
    """The walk found the tree endless: too deep, or aliases that repeat too much."""


class _Walk:
    """One walk over the node tree, before anything is built from it.

    It records the line of every path, and finds duplicate keys, integers too long for
    `int` (`MAX_DIGITS`) and the two ways a small file can be endless, each refused at the
    first sign: nesting deeper than `MAX_DEPTH` (or an alias that contains itself) and
    aliases that repeat more than `MAX_ALIAS_VALUES` values. Building the data (and
    validating it) only expands what this walk has counted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []
        self._seen: set[int] = set()  # the nodes walked; seen again, a node is an alias
        self._repeated = 0

    def run(self, root: yaml.Node) -> None:
        with contextlib.suppress(_Stop):
            self._node(root, (), 1, None)

    def _node(self, node: yaml.Node, at: Path_, line: int, alias: tuple[Path_, int] | None) -> None:
        """``line``: where ``node`` is referred to; ``alias``: the outermost alias above it."""
        self.lines[at] = node.start_mark.line + 1
        if id(node) not in self._seen:
            self._seen.add(id(node))
            if (
                isinstance(node, yaml.ScalarNode)
                and node.tag == _INT
                and len(node.value) > MAX_DIGITS
            ):
                digits = len(node.value.lstrip("+-"))
                self._problem(at, self.lines[at], f"integer too large ({digits} digits)")
        else:
            self._repeated += 1
            alias = alias or (at, line)
            if self._repeated > MAX_ALIAS_VALUES:
                self._problem(*alias, _BOMB)
                raise _Stop
        if len(at) > MAX_DEPTH:  # also ends an alias that contains itself (``a: &a [*a]``)
            self._problem(at[:MAX_DEPTH], self.lines[at], _TOO_DEEP)
            raise _Stop
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key, value in node.value:
                name = key.value
                key_line = key.start_mark.line + 1
                if name in seen:
                    self._problem(
                        (*at, name), key_line, f"duplicate key (first at line {seen[name]})"
                    )
                seen[name] = key_line
                self._node(value, (*at, name), key_line, alias)
                self.lines[(*at, name)] = key_line
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._node(item, (*at, index), self.lines[at], alias)

    def _problem(self, at: Path_, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {_prefix(at)}{message}")


def _substitute(
    value: Any,
    at: Path_,
    env: dict[str, str],
    secrets: set[str],
    problems: list[str],
    where: _Locator,
    *,
    base: Path,
) -> Any:
    # Most values are neither containers nor hold a ``${``: they are kept without a call.
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            sub = (
                _substitute(item, (*at, key), env, secrets, problems, where, base=base)
                if isinstance(item, dict | list) or (isinstance(item, str) and "${" in item)
                else item
            )
            if isinstance(key, str) and key.endswith("_file") and key not in _PATH_KEYS:
                secret = _read_secret(sub, (*at, key), problems, where, base=base)
                if secret is not None:
                    secrets.add(secret)
                    where.hidden.add(secret)
                    out[key.removesuffix("_file")] = secret
                continue
            out[key] = sub
        return out
    if isinstance(value, list):
        return [
            _substitute(item, (*at, i), env, secrets, problems, where, base=base)
            if isinstance(item, dict | list) or (isinstance(item, str) and "${" in item)
            else item
            for i, item in enumerate(value)
        ]
    if isinstance(value, str) and "${" in value:
        return _VAR.sub(lambda m: _env_value(m, at, env, secrets, problems, where), value)
    return value


def _env_value(
    match: re.Match[str],
    at: Path_,
    env: dict[str, str],
    secrets: set[str],
    problems: list[str],
    where: _Locator,
) -> str:
    name = match.group(1)
    if name in TEMPLATE_VARS:
        return match.group(0)
    if name not in env:
        problems.append(where.at(at, f"environment variable {name} is not set"))
        return match.group(0)
    value = env[name]
    if value:  # masked in every config error, before the value is validated
        where.hidden.add(value)
    # Header values (Authorization, API keys) and the API token are secrets whatever the name,
    # in the logs too; other values are masked only in config errors.
    if value and (_SECRET_NAME.search(name) or "headers" in at or "api_token" in at):
        secrets.add(value)
    return value


def _read_secret(
    value: Any, at: Path_, problems: list[str], where: _Locator, *, base: Path
) -> str | None:
    if not isinstance(value, str):
        problems.append(where.at(at, "must be a file path"))
        return None
    file = Path(value) if Path(value).is_absolute() else base / value
    try:
        return file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        message = f"cannot read secret file {value}: {exc.strerror or exc}"
        problems.append(where.at(at, message, about=value))
    except UnicodeDecodeError:
        problems.append(where.at(at, f"secret file {value} is not UTF-8", about=value))
    except ValueError:  # a NUL in the path
        message = f"cannot read secret file {value!r}: invalid path"
        problems.append(where.at(at, message, about=value))
    return None


def _check_duplicate_flows(data: Any, where: _Locator) -> list[str]:
    flows = data.get("flows") if isinstance(data, dict) else None
    if not isinstance(flows, list):
        return []
    problems = []
    first: dict[str, int] = {}
    for index, flow in enumerate(flows):
        name = flow.get("name") if isinstance(flow, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            line = where.line(("flows", first[name], "name"))
            message = f"duplicate flow name {name!r} (first at line {line})"
            problems.append(where.at(("flows", index, "name"), message, about=name))
        else:
            first[name] = index
    return problems


def _line_of(problem: str) -> int:
    match = re.match(r"[^:]*:(\d+):", problem)
    return int(match.group(1)) if match else 0


class _Locator:
    """Turns a data path into ``file:line: path`` text, using the YAML node marks.

    ``hidden`` holds every value that came from ``${ENV}`` or a ``*_file``, filled in before
    validation; a problem's message shows each of them as ``***``.
    """

    def __init__(self, path: Path, lines: dict[Path_, int], data: Any) -> None:
        self.path, self.lines, self.data = path, lines, data
        self.hidden: set[str] = set()

    def line(self, at: Path_) -> int:
        for end in range(len(at), -1, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return 1

    def at(self, at: Path_, message: str, *, about: Any = None) -> str:
        """``file:line: path: message``, the secrets in ``about`` (the value) masked."""
        return f"{self.path}:{self.line(at)}: {_prefix(at)}{self._mask(message, about)}"

    def describe(self, error: ErrorDetails) -> str:
        at = tuple(self._real_path(error["loc"]))
        return self.at(at, _message(error, at), about=error["input"])

    def _mask(self, message: str, about: Any) -> str:
        # Only the secrets the value holds: a short one (a port) is not masked everywhere.
        if not self.hidden:
            return message
        held = {text for text in _texts(about) if any(s in text for s in self.hidden)}
        if not held:
            return message
        secrets = sorted(
            {s for s in self.hidden if any(s in text for text in held)}, key=len, reverse=True
        )
        for text in sorted(held, key=len, reverse=True):  # as repr() quoted and escaped it
            masked = text
            for secret in secrets:
                masked = masked.replace(secret, REDACTED)
            message = message.replace(repr(text), repr(masked))
        for secret in secrets:  # anywhere else, as is or escaped
            message = message.replace(secret, REDACTED).replace(repr(secret)[1:-1], REDACTED)
        return message

    def _real_path(self, loc: tuple[str | int, ...]) -> Iterator[str | int]:
        """Drop the union-tag steps pydantic adds to a path (``source.http.url``)."""
        node: Any = self.data
        for i, step in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, dict) and step not in node:
                if f"{step}_file" in node:
                    step = f"{step}_file"  # the value was read from that file
                elif not last:
                    continue
            yield step
            if isinstance(node, dict):
                node = node.get(step)
            elif isinstance(node, list) and isinstance(step, int) and step < len(node):
                node = node[step]
            else:
                node = None


def _texts(value: Any) -> Iterator[str]:
    """Every string in ``value`` (a validator's input: a scalar, a mapping, a list)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _message(error: ErrorDetails, at: Path_) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r} (expected one of: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "missing key 'type'"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _prefix(at: Path_) -> str:
    return f"{_render(at)}: " if at else ""


def _render(at: Path_) -> str:
    text = ""
    for step in at:
        if isinstance(step, str) and not _PLAIN_KEY.fullmatch(step):
            step = repr(step)  # an empty key, or one with a line break, stays visible
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text
