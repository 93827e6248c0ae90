"""The config for people: ``display:`` names and ``notify:`` channels.

    display:
      gs-adt: {da: "Patientdata fra GS", en: "Patient data from GS"}
      gs-adt/labka: {da: "Labka (laboratorie)", en: "Labka (lab)"}
    notify:
      defaults: {failure_threshold: 3, success_threshold: 2, reminder_interval: 1h}
      channels:
        - name: drift-teams
          url: "${TEAMS_WEBHOOK_URL}"   # an Apprise URL: workflows:// (Teams), mailtos://, json://
          flows: ["gs-*"]
          events: [down, recovered, reminder, incident]
          lang: da

A ``display:`` key is a flow's name, or ``flow/destination``. A channel's ``url`` is a
secret wherever it came from: Apprise URLs carry their tokens and passwords.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from probe.durations import DurationOrZero
from probe.transports.spec import NAME_PATTERN, Model

Lang = Literal["da", "en"]
LANGS: tuple[Lang, ...] = ("da", "en")
Severity = Literal["critical", "warning", "info"]


class Event(StrEnum):
    """What a channel can be told."""

    DOWN = "down"  # a flow and destination went down (failure_threshold bad slots)
    RECOVERED = "recovered"  # it came back (success_threshold good slots)
    REMINDER = "reminder"  # it is still down, every reminder_interval
    MAINTENANCE_STARTED = "maintenance_started"
    MAINTENANCE_ENDED = "maintenance_ended"
    INCIDENT = "incident"  # a written incident was opened, updated or resolved


class Text(Model):
    """A text in Danish and English; either may be left out (the other is shown)."""

    da: str | None = Field(default=None, description="In Danish.")
    en: str | None = Field(default=None, description="In English.")

    def get(self, lang: Lang) -> str | None:
        """The text in ``lang``, else in the other language, else None."""
        first, second = (self.da, self.en) if lang == "da" else (self.en, self.da)
        return first or second


class Display(Text):
    """What people read for a flow or a flow and destination."""

    description: Text = Field(
        default=Text(), description="A sentence or two for people, in either language."
    )


class Channel(Model):
    """One place notifications go: an Apprise URL, for the flows and events it wants."""

    name: str = Field(
        pattern=NAME_PATTERN, description="Unique; the `channel` label of the metrics."
    )
    url: str = Field(
        min_length=1,
        description="An Apprise URL, such as `workflows://…` (Microsoft Teams), "
        "`mailtos://…`, `slack://…` or `json://host/path`. A secret: give it as `url_file` "
        "or `${ENV}`.",
    )
    flows: list[str] = Field(
        default=["*"], description="Globs of the flow names it is for (default: all)."
    )
    severities: list[Severity] = Field(
        default=["critical", "warning", "info"],
        description="The flow severities it is for (`severity` of a flow; default: all).",
    )
    events: list[Event] = Field(
        default=list(Event), description="The events it is told (default: all)."
    )
    lang: Lang = Field(default="en", description="The language of its messages: `da` or `en`.")

    def wants(self, flow: str, severity: str, event: Event) -> bool:
        """Whether this channel is told ``event`` about ``flow``."""
        return (
            event in self.events
            and severity in self.severities
            and any(fnmatch.fnmatchcase(flow, glob) for glob in self.flows)
        )


class NotifyDefaults(Model):
    """When a flow and destination counts as down or recovered, and how often to remind.

    The state follows the results in slot order, as incidents do: results in maintenance
    and probe-side faults (not measured) neither count nor break a run."""

    failure_threshold: int = Field(
        default=3, ge=1, le=1000, description="Consecutive bad slots to go down."
    )
    success_threshold: int = Field(
        default=2, ge=1, le=1000, description="Consecutive delivered slots to recover."
    )
    reminder_interval: DurationOrZero = Field(
        default=3600.0, description="While down, a reminder this often; `0` sends none."
    )


class Notify(Model):
    """``notify:``, messages on state change, sent by the daemon itself."""

    defaults: NotifyDefaults = Field(
        default=NotifyDefaults(), description="Thresholds for channels that set none."
    )
    channels: list[Channel] = Field(default=[], description="Where messages go.")

    @model_validator(mode="after")
    def _unique(self) -> Notify:
        names = [c.name for c in self.channels]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"duplicate channel name {name!r}")
        return self


def check_display_keys(display: Mapping[str, Display], flows: Sequence[Any]) -> None:
    """A `ValueError` for a ``display:`` key that names no flow (with ``name`` and
    ``destinations``) or flow/destination."""
    known = {f.name for f in flows} | {f"{f.name}/{d.name}" for f in flows for d in f.destinations}
    for key in display:
        if key not in known:
            raise ValueError(f"display: {key!r} is no flow or flow/destination")


def display_name(display: Mapping[str, Display], key: str, lang: Lang) -> str:
    """What people read for ``key`` (``flow`` or ``flow/destination``): its display name
    in ``lang``, else the key itself."""
    found = display.get(key)
    return (found.get(lang) if found is not None else None) or key
