"""Config reload: what a new config file changes, and what it may not change.

SIGHUP and ``POST /-/reload`` (`probe.engine.daemon.Daemon.reload`) read the config file again and
apply it without a restart. Reloadable: ``flows``, ``defaults``, ``maintenance``,
``shutdown_grace`` and ``server.api_token``. Restart-only (`RESTART_ONLY`): ``timezone``,
``labels`` (they are label names of every series), every ``store.*`` key and
``server.listen``; changing one fails the reload with a message that names it, rather than
being ignored. A failed reload changes nothing.

`FlowChanges` compares resolved flows, so a change to ``defaults`` shows up as a change to
every flow that inherits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probe.config.models import Config, FlowSpec, Store
from probe.errors import ProbeError

# Keys read once at start: the store is open, the port bound, the registry built with the
# static label names, and the scheduler and calendars made in the time zone.
RESTART_ONLY = (
    "timezone",
    "labels",
    *(f"store.{name}" for name in Store.model_fields),
    "server.listen",
)


class ReloadRefused(ProbeError):
    """The daemon cannot reload now (it is starting or stopping); nothing was changed."""


def restart_required(old: Config, new: Config) -> list[str]:
    """One problem per restart-only key whose value differs (values are not shown: secrets)."""
    return [
        f"{key}: cannot change while running; restart the daemon to apply it"
        for key in RESTART_ONLY
        if _get(old, key) != _get(new, key)
    ]


def _get(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True, slots=True)
class FlowChanges:
    """What a reload does to the flows: new, gone, redefined and untouched ones, by name."""

    added: tuple[FlowSpec, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[FlowSpec, ...] = ()
    unchanged: tuple[str, ...] = ()

    @classmethod
    def between(cls, old: Mapping[str, FlowSpec], new: Sequence[FlowSpec]) -> FlowChanges:
        """Compare the running flows (by name) with the resolved flows of a new config."""
        names = {flow.name for flow in new}
        return cls(
            added=tuple(f for f in new if f.name not in old),
            removed=tuple(name for name in old if name not in names),
            changed=tuple(f for f in new if f.name in old and old[f.name] != f),
            unchanged=tuple(f.name for f in new if f.name in old and old[f.name] == f),
        )

    @property
    def fresh(self) -> tuple[FlowSpec, ...]:
        """The flows that need new transports, a new schedule and declared metrics."""
        return (*self.added, *self.changed)

    @property
    def flows(self) -> int:
        """How many flows run after the reload."""
        return len(self.added) + len(self.changed) + len(self.unchanged)

    def summary(self) -> dict[str, Any]:
        """For the log and the ``POST /-/reload`` answer."""
        return {
            "flows": self.flows,
            "added": [f.name for f in self.added],
            "removed": list(self.removed),
            "changed": [f.name for f in self.changed],
        }
