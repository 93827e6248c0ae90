"""A config problem as a line of text: ``file:line: path: message``, secrets masked.

    >>> where = Locator(Path("probe.yaml"), {("flows", 0, "interval"): 5}, None)
    >>> where.at(("flows", 0, "interval"), "invalid duration 'fast'")
    "probe.yaml:5: flows[0].interval: invalid duration 'fast'"

A pydantic error becomes one such line through `Locator.describe`: the union-tag steps
pydantic adds to a path are dropped, an unknown key gets a "did you mean"
(`probe.config.suggestions`), and every value that came from ``${ENV}`` or a ``*_file``
shows as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_core import ErrorDetails

from probe.config.suggestions import did_you_mean
from probe.logs import REDACTED

PathT = tuple[str | int, ...]
"""A path into the config's data: ``("flows", 0, "interval")`` is ``flows[0].interval``."""

_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]+")
_LINE = re.compile(r"[^:]*:(\d+):")


class Locator:
    """Turns a data path into ``file:line: path`` text, using the YAML node marks.

    ``hidden`` holds every value that came from ``${ENV}`` or a ``*_file``, filled in before
    validation; a problem's message shows each of them as ``***``.
    """

    def __init__(self, path: Path, lines: dict[PathT, int], data: Any) -> None:
        self.path, self.lines, self.data = path, lines, data
        self.hidden: set[str] = set()

    def line(self, at: PathT) -> int:
        """The line of ``at``, or of its nearest parent that has one (else 1)."""
        for end in range(len(at), -1, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return 1

    def at(self, at: PathT, message: str, *, about: Any = None) -> str:
        """``file:line: path: message``, the secrets in ``about`` (the value) masked."""
        return f"{self.path}:{self.line(at)}: {prefix(at)}{self._mask(message, about)}"

    def describe(self, error: ErrorDetails) -> str:
        """A pydantic error as ``file:line: path: message``."""
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


def line_of(problem: str) -> int:
    """The line a problem is at (0 if it names none): problems are sorted by it."""
    match = _LINE.match(problem)
    return int(match.group(1)) if match else 0


def prefix(at: PathT) -> str:
    """``flows[0].interval: `` for a path, nothing for the root."""
    return f"{_render(at)}: " if at else ""


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


def _message(error: ErrorDetails, at: PathT) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"], at)
    if kind == "missing":
        return "missing required key"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r} (expected one of: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "missing key 'type'"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _unknown_key(loc: tuple[str | int, ...], at: PathT) -> str:
    """``unknown key``, and the key meant if one is close: ``did you mean 'interval'?``."""
    meant = did_you_mean(loc)
    if meant is None:
        return "unknown key"
    if at and at[-1] != loc[-1]:  # written as ``intervall_file``: read from a file
        meant += "_file"
    return f"unknown key; did you mean {meant!r}?"


def _render(at: PathT) -> str:
    text = ""
    for step in at:
        if isinstance(step, str) and not _PLAIN_KEY.fullmatch(step):
            step = repr(step)  # an empty key, or one with a line break, stays visible
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text
