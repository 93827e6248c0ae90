"""The two transport protocols, a transport's registry value, and the resources they share.

A transport is a `Source` (where a probe is injected) and an `Observer` (where its arrival
is seen), with a config model for each, put together in one `Transport` value that
`probe.transports.registry` lists.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import time
import typing
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

from pydantic import BaseModel

from probe.errors import TransportError
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

    @property
    def start_error(self) -> str | None:
        """Why `start` could not start the observer (a port it cannot bind); None when it
        did. A config reload then fails instead of taking it on."""
        ...

    async def start(self) -> None: ...

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None: ...

    async def aclose(self) -> None: ...


class Destination(Protocol):
    """What an observer factory reads of a resolved destination (config's `DestinationSpec`)."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> Any: ...

    @property
    def poll(self) -> float: ...


class Closeable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closeable)


@runtime_checkable
class RecordingObserver(Protocol):
    """A push observer whose listener records every arrival itself, before it answers.

    The runner hands it the store's ``add_sighting``; it then does not store the sighting
    `expect` returns a second time.
    """

    def set_recorder(self, record: Callable[[Sighting], None]) -> None: ...


class Resources:
    """Long-lived things transports share, each made once per key and closed at the end.

    An HTTP client per TLS setting, an SQL engine per URL, an MLLP listener per address:

        client = resources.shared(("http", True, None), make_client)

    Transports built through a `lease` give their items back when the lease is closed; an
    item that no lease holds any more is closed then (a config reload frees a listener
    nobody uses), while one taken directly stays until `aclose`.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Closeable] = {}
        self._holders: dict[Hashable, int] = {}  # leases holding an item; absent: pinned

    def shared(self, key: Hashable, factory: Callable[[], C]) -> C:
        return self._take(key, factory, leased=False)

    def lease(self) -> Lease:
        """A view of these resources for one set of transports (see `Lease`)."""
        return Lease(self)

    def _take(self, key: Hashable, factory: Callable[[], C], *, leased: bool) -> C:
        if key not in self._items:
            self._items[key] = factory()
            if leased:
                self._holders[key] = 0
        if not leased:
            self._holders.pop(key, None)  # taken for good: closed only by `aclose`
        elif key in self._holders:
            self._holders[key] += 1
        return self._items[key]  # type: ignore[return-value]

    async def _give_back(self, keys: list[Hashable]) -> None:
        for key in keys:
            if key not in self._holders:
                continue
            self._holders[key] -= 1
            if self._holders[key] == 0:
                del self._holders[key]
                await self._items.pop(key).aclose()

    async def aclose(self) -> None:
        """Close everything, newest first."""
        for item in reversed(list(self._items.values())):
            await item.aclose()
        self._items.clear()
        self._holders.clear()


class Lease(Resources):
    """The shared items one set of transports uses; `aclose` gives them back to the owner.

    An item is closed when the last lease holding it is closed, so a listener that a new
    flow definition shares with an old one stays open while either uses it.
    """

    def __init__(self, owner: Resources) -> None:
        super().__init__()
        self._owner = owner
        self._keys: list[Hashable] = []

    def shared(self, key: Hashable, factory: Callable[[], C]) -> C:
        if key in self._keys:  # held already: one hold per lease, however often it is asked
            return self._owner._items[key]  # type: ignore[return-value]
        self._keys.append(key)
        return self._owner._take(key, factory, leased=True)

    async def aclose(self) -> None:
        keys, self._keys = self._keys, []
        await self._owner._give_back(list(reversed(keys)))


SourceFactory = Callable[[Any, Resources], Source]
"""Builds the source for a validated ``source:`` model, e.g. ``HttpProbeSource``."""
ObserverFactory = Callable[[Destination, Resources], Observer]
"""Builds the observer for one resolved ``destinations:`` entry (its model is ``.config``)."""


@dataclass(frozen=True, slots=True)
class Transport:
    """One transport, as the registry lists it: its ``type``, its two config models and
    the factories that build its source and observer from them.

        TRANSPORT = Transport(
            type="http",
            source_spec=HttpSource,
            destination_spec=HttpDestination,
            source=HttpProbeSource,
            observer=HttpPollObserver.for_destination,
        )

    Both models are `probe.transports.spec.Model` subclasses with a field
    ``type: Literal["http"]``. The config reads ``summary`` (text for people) of a source
    model, and ``name``, ``slo`` and ``poll`` (None: ``defaults.poll``) of a destination
    model. A transport of another package is found through the entry-point group
    ``probe.transports`` (see `probe.transports.registry`).
    """

    type: str
    source_spec: builtins.type[BaseModel]  # `builtins`: the field `type` hides the builtin
    destination_spec: builtins.type[BaseModel]
    source: SourceFactory
    observer: ObserverFactory

    def __post_init__(self) -> None:
        for model in (self.source_spec, self.destination_spec):
            field = model.model_fields.get("type")
            if field is None or typing.get_args(field.annotation) != (self.type,):
                raise TypeError(
                    f"transport {self.type!r}: {model.__name__} needs a field "
                    f"type: Literal[{self.type!r}]"
                )


def fill(template: str, variables: Mapping[str, str], *, url: bool = False) -> str:
    """Fill ``${probe_id}``-style variables; in URLs the values are percent-encoded."""

    def value(match: re.Match[str]) -> str:
        text = variables[match.group(1)]
        return quote(text, safe="") if url else text

    return _TEMPLATE.sub(value, template)


def has_variables(template: str) -> bool:
    """Whether ``template`` has any ``${probe_id}``-style variable for `fill` to fill."""
    return _TEMPLATE.search(template) is not None


FINAL_LOOK = 1.5
"""Seconds a poll observer's look may take once its deadline has passed (a resumed probe).

The final look must be a real one: on a busy machine, or right after a restart when every
resumed probe looks at once, a window of one poll interval timed out on readable
destinations and recorded observe_error where the message had arrived. It stays below the
runner's own bound past the deadline (poll + 2 s)."""


async def poll_until(
    look: Callable[[], Awaitable[Sighting | None]], *, every: float, deadline: float
) -> Sighting | None:
    """Look at a fixed rate until the probe is seen or the deadline (a monotonic time).

    There is always at least one look. A failed look is retried at the next one; if the
    last look before the deadline failed, its error is raised (observe_error), otherwise
    None means the destination was readable and did not show the probe (lost).
    """
    last_error: TransportError | None = None
    next_look = time.monotonic()
    while True:
        try:
            sighting = await look()
        except TransportError as exc:
            last_error = exc
        else:
            if sighting is not None:
                return sighting
            last_error = None
        now = time.monotonic()
        # Fixed rate; a look slower than the interval is followed at once, not in bursts.
        next_look = max(next_look + every, now)
        if now >= deadline:
            break
        await asyncio.sleep(max(0.0, min(next_look, deadline) - now))
    if last_error is not None:
        raise last_error
    return None
