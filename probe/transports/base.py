"""The two transport protocols, the registry, and the resources transports share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from probe.config import DestinationSpec
from probe.model import ProbeMessage, Receipt, Sighting

_TEMPLATE = re.compile(r"\$\{(probe_id|sent_at|flow|destination)\}")


class Source(Protocol):
    """Where a probe is injected. `send` returns once the source has accepted it."""

    async def send(self, probe: ProbeMessage) -> Receipt:
        """Send the probe; raise a `TransportError` if the source refused or failed."""
        ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    """Where a probe's arrival is observed.

    `expect` returns a `Sighting` as soon as the probe is seen, or ``None`` if the
    destination was readable and did not show it by ``deadline`` (a `time.monotonic`
    value). It raises a `TransportError` if the destination could not be read at the end.
    It always looks at least once, even when the deadline has passed, so a restarted
    daemon can still resolve old probes.
    """

    async def start(self) -> None: ...

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None: ...

    async def aclose(self) -> None: ...


class Resources(Protocol):
    """Long-lived things transports share, e.g. pooled HTTP clients."""

    def http_client(self, *, verify: bool, ca_file: str | None) -> Any: ...


SourceFactory = Callable[[Any, Resources], Source]
ObserverFactory = Callable[[DestinationSpec, Resources], Observer]

SOURCES: dict[str, SourceFactory] = {}
OBSERVERS: dict[str, ObserverFactory] = {}


def make_source(config: Any, resources: Resources) -> Source:
    """Build the source for a ``source:`` config block, by its ``type``."""
    _load_builtin()
    return SOURCES[config.type](config, resources)


def make_observer(spec: DestinationSpec, resources: Resources) -> Observer:
    """Build the observer for one resolved ``destinations:`` entry, by its ``type``."""
    _load_builtin()
    return OBSERVERS[spec.config.type](spec, resources)


def _load_builtin() -> None:
    # Imported lazily so that each transport module can import this one.
    import probe.transports.http  # noqa: F401


def fill(template: str, variables: Mapping[str, str], *, url: bool = False) -> str:
    """Fill ``${probe_id}``-style variables; in URLs the values are percent-encoded."""

    def value(match: re.Match[str]) -> str:
        text = variables[match.group(1)]
        return quote(text, safe="") if url else text

    return _TEMPLATE.sub(value, template)
