"""Every transport by its ``type``: the built-in ones, and those other packages install.

    registry = transports()                 # built once: http, mllp, sql, then entry points
    source = registry.make_source(flow.source, resources)
    Source = registry.source_union()        # what `probe.config` validates ``source:`` with

A transport is one `probe.transports.base.Transport` value. Another package adds one by
naming it in the entry-point group ``probe.transports``, under its ``type``::

    [project.entry-points."probe.transports"]
    ftp = "probe_ftp:TRANSPORT"

An entry point that cannot be loaded, that names something else, or whose type is taken
is a `StartupError` that says which entry point, of which distribution, and why.
"""

from __future__ import annotations

import functools
import importlib.metadata
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from probe.errors import StartupError
from probe.transports import http, mllp, sql
from probe.transports.base import Destination, Observer, Resources, Source, Transport

ENTRY_POINTS = "probe.transports"
BUILTIN: tuple[Transport, ...] = (http.TRANSPORT, mllp.TRANSPORT, sql.TRANSPORT)
"""The transports of this package, in the order config errors list their types."""


@dataclass(frozen=True, slots=True)
class Registry:
    """The transports by ``type``, in order: the built-in ones first."""

    by_type: Mapping[str, Transport]

    def get(self, kind: str) -> Transport:
        """The transport of ``type: kind``; `KeyError` naming those there are if none."""
        try:
            return self.by_type[kind]
        except KeyError:
            known = ", ".join(self.by_type)
            raise KeyError(f"no transport of type {kind!r} (there are: {known})") from None

    def source_union(self) -> Any:
        """Every source model, as one pydantic field type told apart by ``type``."""
        return _union(t.source_spec for t in self.by_type.values())

    def destination_union(self) -> Any:
        """Every destination model, as one pydantic field type told apart by ``type``."""
        return _union(t.destination_spec for t in self.by_type.values())

    def make_source(self, config: Any, resources: Resources) -> Source:
        """Build the source for a ``source:`` config block, by its ``type``."""
        return self.get(config.type).source(config, resources)

    def make_observer(self, spec: Destination, resources: Resources) -> Observer:
        """Build the observer for one resolved ``destinations:`` entry, by its ``type``."""
        return self.get(spec.config.type).observer(spec, resources)


def load(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> Registry:
    """`BUILTIN` and the transports of ``entry_points`` (default: those installed)."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINTS)
    by_type = {transport.type: transport for transport in BUILTIN}
    for entry_point in sorted(entry_points, key=lambda e: e.name):
        transport = _load(entry_point)
        if transport.type in by_type:
            raise StartupError(f"{_describe(entry_point)}: the type {transport.type!r} is taken")
        by_type[transport.type] = transport
    return Registry(by_type)


@functools.cache
def transports() -> Registry:
    """The registry of this process, loaded once (`load`)."""
    return load()


def make_source(config: Any, resources: Resources) -> Source:
    """Build the source for a ``source:`` config block, by its ``type``."""
    return transports().make_source(config, resources)


def make_observer(spec: Destination, resources: Resources) -> Observer:
    """Build the observer for one resolved ``destinations:`` entry, by its ``type``."""
    return transports().make_observer(spec, resources)


def _load(entry_point: importlib.metadata.EntryPoint) -> Transport:
    try:
        value = entry_point.load()
    except Exception as exc:  # whatever importing someone else's module raises
        reason = f"{type(exc).__name__}: {exc}"
        raise StartupError(f"{_describe(entry_point)} cannot be loaded: {reason}") from exc
    if not isinstance(value, Transport):
        what = type(value).__name__
        message = f"{_describe(entry_point)} is a {what}, not a probe.transports.Transport"
        raise StartupError(message)
    if value.type != entry_point.name:
        message = f"{_describe(entry_point)} is the transport {value.type!r}: name them alike"
        raise StartupError(message)
    return value


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    origin = f", of {dist.name} {dist.version}" if dist is not None else ""
    return f"transport entry point {entry_point.name} = {entry_point.value}{origin}"


def _union(models: Iterable[type[BaseModel]]) -> Any:
    members: Any = functools.reduce(operator.or_, models)
    return Annotated[members, Field(discriminator="type")]
