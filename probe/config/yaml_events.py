"""YAML read the fast way, straight from libyaml's events, for a big and plain file.

    >>> parse_plain("flows:\\n  - {name: a, interval: 30s}\\n")
    {'flows': [{'name': 'a', 'interval': '30s'}]}
    >>> parse_plain("a: &x 1\\nb: *x\\n") is None  # an alias: left to the node tree
    True

Neither a node tree nor a line map: on 5,000 flows (1.5 MB) 0.2 s and 7 MB at most,
against 1.0 s and 93 MB for `probe.config.yaml_nodes.parse_yaml`. The data is what
`parse_yaml` builds, or None and `parse_yaml` reads the file again, for anything unusual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from probe.config.yaml_nodes import MAX_DEPTH

_STR = "tag:yaml.org,2002:str"
# The scalar types a config has; any other tag (a merge key ``<<``, ``!!binary``, ``=``) is
# left to `parse_yaml`.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_KEY = object()  # an open mapping waiting for its next key; also: the document goes on


class _Unusual(Exception):
    """Something the fast way leaves to the node tree."""


def parse_plain(text: str) -> dict[Any, Any] | None:
    """The document as `parse_yaml` builds it, or None.

    None for anything unusual: an error of any kind, an anchor or alias, an explicit tag, a
    merge key, a duplicate or complex key, more than `MAX_DEPTH` levels, more than one
    document, or a document that is not a mapping. Repeated scalars (keys, hosts) are one
    object each.
    """
    loader = yaml.CSafeLoader(text)
    try:
        return _from_events(loader)
    except Exception:  # whatever it is, the slow way reports it exactly as it always has
        return None
    finally:
        loader.dispose()


def _from_events(loader: yaml.CSafeLoader) -> dict[Any, Any] | None:
    get = loader.get_event
    if type(get()) is not yaml.StreamStartEvent or type(get()) is not yaml.DocumentStartEvent:
        return None
    steps = _Builder(loader).steps()
    while (step := steps.get(type(event := get()))) is not None:
        done = step(event)
        if done is not _KEY:  # the root's end
            end, stream_end = type(get()), type(get())
            ending = end is yaml.DocumentEndEvent and stream_end is yaml.StreamEndEvent
            return done if ending else None
    return None  # an alias, or an empty document


class _Builder:
    """The mappings and sequences being filled, outermost first, from one event at a time.

    Each step returns `_KEY` while the document goes on, and the root when it ends; it
    raises `_Unusual` for what the node tree must read.
    """

    def __init__(self, loader: yaml.CSafeLoader) -> None:
        self.loader = loader
        self.construct = loader.yaml_constructors
        self.resolve: Any = loader.resolve  # untyped in types-PyYAML
        self.scalars: dict[tuple[str, bool], Any] = {}  # repeated scalars are resolved once
        self.open: list[Any] = []
        self.keys: list[Any] = []  # for each open one, the key waiting for its value, or _KEY

    def steps(self) -> dict[type[object], Callable[[Any], Any]]:
        """What each kind of event does; any other kind (an alias) ends the fast way."""
        return {
            yaml.ScalarEvent: self.scalar,
            yaml.MappingStartEvent: self.start,
            yaml.SequenceStartEvent: self.start,
            yaml.MappingEndEvent: self.end,
            yaml.SequenceEndEvent: self.end,
        }

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        if event.tag is not None or event.anchor is not None:
            raise _Unusual
        item = self.scalars.get(cache := (event.value, event.implicit[0]), _KEY)
        if item is _KEY:
            item = self.scalars[cache] = self._resolved(event)
        return self._add(item)

    def _resolved(self, event: yaml.ScalarEvent) -> Any:
        tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        if tag not in _PLAIN_TAGS:
            raise _Unusual
        return self.construct[tag](self.loader, yaml.ScalarNode(tag, event.value))

    def start(self, event: yaml.CollectionStartEvent) -> Any:
        if event.tag is not None or event.anchor is not None or len(self.open) >= MAX_DEPTH:
            raise _Unusual
        item: Any = {} if type(event) is yaml.MappingStartEvent else []
        self._add(item)
        self.open.append(item)
        self.keys.append(_KEY)
        return _KEY

    def end(self, _event: yaml.CollectionEndEvent) -> Any:
        self.keys.pop()
        done = self.open.pop()
        return _KEY if self.open else done

    def _add(self, item: Any) -> Any:
        if not self.open:  # the document's root
            if not isinstance(item, dict):
                raise _Unusual
        elif isinstance(parent := self.open[-1], list):
            parent.append(item)
        elif self.keys[-1] is _KEY:
            if isinstance(item, dict | list) or item in parent:
                raise _Unusual
            self.keys[-1] = item
        else:
            parent[self.keys[-1]] = item
            self.keys[-1] = _KEY
        return _KEY
