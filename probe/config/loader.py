"""Reading a config file: `load_config` gives a validated `Config`, or every problem at once.

    >>> loaded = load_config("probe.yaml")
    >>> loaded.config.flows[0].name
    'gs-adt'

Every problem is reported with its YAML path and line, all at once, as a `ConfigError`:

    probe.yaml:12: flows[0].interval: invalid duration 'fast': use a number and a unit, ...
    probe.yaml:14: flows[0].intervall: unknown key; did you mean 'interval'?

The steps, one module each: the YAML with its lines (`probe.config.yaml_nodes`, or for a
big plain file `probe.config.yaml_events`), ``${ENV}`` and ``*_file`` secrets filled in
(`probe.config.substitution`), the models (`probe.config.models`) and the problems' text
(`probe.config.problems`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from probe.config.models import Config
from probe.config.problems import Locator, line_of
from probe.config.substitution import TEMPLATE_VARS, Substitution
from probe.config.yaml_events import parse_plain
from probe.config.yaml_nodes import C_LOADER_FROM, MAX_DEPTH, has_c_loader, parse_yaml
from probe.errors import ConfigError

__all__ = ["C_LOADER_FROM", "MAX_DEPTH", "TEMPLATE_VARS", "LoadedConfig", "load_config"]


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
    text = _read(path)
    if has_c_loader(text):
        # The fast way: no node tree and no line map. Any problem at all, and the file is
        # read again the slow way below, which finds the problems' lines.
        data = parse_plain(text)
        if data is not None:
            config, secrets, problems = _validate(data, Locator(path, {}, data), env, path)
            if config is not None and not problems:
                return LoadedConfig(config=config, path=path, secrets=frozenset(secrets))
            del config, data  # freed before the node tree is built
    data, lines = parse_yaml(text, path)
    config, secrets, problems = _validate(data, Locator(path, lines, data), env, path)
    if config is None or problems:
        raise ConfigError(sorted(problems, key=line_of))
    return LoadedConfig(config=config, path=path, secrets=frozenset(secrets))


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: config is not UTF-8: {exc.reason}"]) from None


def _validate(
    data: Any, where: Locator, env: dict[str, str], path: Path
) -> tuple[Config | None, set[str], list[str]]:
    """``${ENV}`` and ``*_file`` filled in, then checked: (config or None, secrets, problems)."""
    substitution = Substitution(env, where, base=path.parent)
    data = substitution.value(data, ())
    problems = substitution.problems + _duplicate_flows(data, where)
    try:
        config = Config.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems += [where.describe(err) for err in exc.errors()]
        return None, substitution.secrets, problems
    # An Apprise URL holds its token or password, even when written in the file itself.
    secrets = substitution.secrets | {channel.url for channel in config.notify.channels}
    return config, secrets, problems


def _duplicate_flows(data: Any, where: Locator) -> list[str]:
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
