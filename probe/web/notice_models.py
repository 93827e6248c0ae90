"""What ``/api/v1/incidents`` answers and takes, as pydantic models, and its OpenAPI paths.

    >>> NoticeChange.model_validate_json('{"state": "identified", "body": "Queue stuck."}')
    NoticeChange(state='identified', body='Queue stuck.', title=None)
    >>> notice_model(notice, ZoneInfo("Europe/Copenhagen"), now=now).updates[0].body_html
    '<p>Queue stuck.</p>\\n'

The answers (`Notice`, `NoticeList`) follow `probe.web.models`: frozen `Shape`\\ s, times as
ISO 8601 text in the configured time zone, every body given both as written (Markdown) and
rendered (``body_html``, `probe.markdown.render`: safe to insert as it is). The requests
(`NewIncident`, `NewAnnouncement`, `NoticeChange`) are closed: an unknown key is an error,
not ignored. Their JSON Schema says all that can be said of valid input (a title with a
letter in it, no comma in a glob, times from 1970 to 2999), so what it allows the store
takes, except for what JSON Schema cannot relate (``ends_at`` after ``starts_at``, a state
the notice's kind has): a 409 says so. `probe.web.openapi` lists these models and
`openapi_paths` in the document.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)

from probe.markdown import render
from probe.report.models import Shape, Time
from probe.store import notices

# Python's whitespace (str.split, which titles are collapsed with), spelt out: regex
# engines differ on \s, and the schema, pydantic and the store must agree.
_SPACE: Final = r"\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TIME_PATTERN: Final = (
    r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIME: Final = re.compile(TIME_PATTERN)
MAX_REQUEST: Final = 1024 * 1024  # bytes of JSON: 64 Ki characters of body, escaped, fit

NoticeState = Literal["investigating", "identified", "monitoring", "resolved", "active", "ended"]
Title = Annotated[
    str,
    Field(
        min_length=1,
        max_length=notices.MAX_TITLE,
        pattern=f"[^{_SPACE}]",
        description="One line (runs of white space become one space).",
    ),
]
Body = Annotated[
    str, Field(max_length=notices.MAX_BODY, description="Markdown; raw HTML is shown as text.")
]
Glob = Annotated[
    str,
    Field(
        max_length=200,
        pattern=f"^[^,]*[^,{_SPACE}][^,]*$",
        description="A glob of flow names, such as gs-*; no comma.",
    ),
]
Flows = Annotated[
    list[Glob],
    Field(max_length=notices.MAX_FLOWS, description="The flows affected; none: every flow."),
]


def _instant(value: object) -> datetime:
    """ISO 8601 with a UTC offset, from 1970 to 2999, as `TIME_PATTERN` spells it."""
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError("not an ISO 8601 time with a UTC offset, e.g. 2026-10-06T18:00:00+02:00")
    return datetime.fromisoformat(value)


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIME_PATTERN}),
]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewIncident(_Request):
    """``POST /api/v1/incidents``: open an incident."""

    kind: Literal["incident"] = "incident"
    title: Title
    flows: Flows = []
    state: Literal["investigating", "identified", "monitoring"] = "investigating"
    body: Body = ""


class NewAnnouncement(_Request):
    """``POST /api/v1/incidents`` with ``kind: announcement``: post an announcement, shown
    from ``starts_at`` (default: now) until ``ends_at`` (default: until it is ended)."""

    kind: Literal["announcement"]
    title: Title
    flows: Flows = []
    state: Literal["active"] = "active"
    body: Body = ""
    starts_at: Instant | None = None
    ends_at: Instant | None = None


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind", "incident")
        return kind if isinstance(kind, str) else None
    return None


NewNotice = Annotated[
    Annotated[NewIncident, Tag("incident")] | Annotated[NewAnnouncement, Tag("announcement")],
    Discriminator(_kind),
]


class NoticeChange(_Request):
    """``PATCH /api/v1/incidents/{id}``: a new state, text or title (all optional; none: no
    change). State resolved (or ended) resolves the notice."""

    state: NoticeState | None = None
    body: Body = ""
    title: Title | None = None


class NoticeUpdate(Shape):
    """One entry of a notice's timeline."""

    at: Time
    state: NoticeState
    body: str = Field(description="Markdown, as written; may be empty.")
    body_html: str = Field(description="The body as sanitised HTML, safe to insert as is.")


class Notice(Shape):
    """A written incident or announcement, with its timeline oldest first."""

    id: int = Field(ge=1)
    kind: notices.Kind
    title: str
    state: NoticeState
    active: bool = Field(description="Shown now: an open incident, a current announcement.")
    flows: tuple[str, ...] = Field(description="Globs of the flows affected; none: every flow.")
    created_at: Time
    updated_at: Time
    starts_at: Time | None
    ends_at: Time | None
    resolved_at: Time | None
    updates: tuple[NoticeUpdate, ...] = Field(min_length=1)


class NoticeList(Shape):
    """``GET /api/v1/incidents``: the active notices, or the recent ones (``all=1``)."""

    generated_at: Time
    timezone: str
    notices: tuple[Notice, ...]


RESPONSES: Final[tuple[type[BaseModel], ...]] = (Notice, NoticeList)
REQUESTS: Final[tuple[type[BaseModel], ...]] = (NewIncident, NewAnnouncement, NoticeChange)


def notice_model(notice: notices.Notice, tz: ZoneInfo, *, now: datetime) -> Notice:
    """The answer for one stored notice, its times in ``tz``."""

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(tz).isoformat()

    return Notice(
        id=notice.id,
        kind=notice.kind,
        title=notice.title,
        state=notice.state,
        active=notice.active(now),
        flows=notice.flows,
        created_at=notice.created_at.astimezone(tz).isoformat(),
        updated_at=notice.updated_at.astimezone(tz).isoformat(),
        starts_at=iso(notice.starts_at),
        ends_at=iso(notice.ends_at),
        resolved_at=iso(notice.resolved_at),
        updates=tuple(
            NoticeUpdate(
                at=u.at.astimezone(tz).isoformat(),
                state=u.state,
                body=u.body,
                body_html=render(u.body),
            )
            for u in notice.updates
        ),
    )


# --- the OpenAPI paths ---------------------------------------------------------------------

_REF: Final = "#/components/schemas/{}"


def _content(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model)}}}


def _answers(status: int, model: str, text: str, errors: dict[int, str]) -> dict[str, Any]:
    found = {str(status): {"description": text, "content": _content(model)}}
    for code, why in errors.items():
        found[str(code)] = {"description": why, "content": _content("Error")}
    return found


_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "description": "The notice's id.",
}
_AUTH: Final = {401: "No or a wrong bearer token.", 403: "Disabled: no server.api_token."}
_DOWN: Final = {503: "The store cannot be used."}
_BAD: Final = {
    400: "The body is not JSON.",
    413: f"The body is over {MAX_REQUEST} bytes.",
    422: "The JSON does not fit the schema; the error says where.",
}


_MISSING: Final = {404: "No such notice."}
_CONFLICT: Final = {
    409: "It cannot be done: ends_at not after starts_at, a state its kind has not, or a "
    "notice already resolved or ended."
}


def openapi_paths() -> dict[str, Any]:
    """The operations of ``/api/v1/incidents``, for `probe.web.openapi`."""
    return {
        "/api/v1/incidents": {"get": _list(), "post": _create()},
        "/api/v1/incidents/{id}": {"get": _get(), "patch": _change()},
    }


def _list() -> dict[str, Any]:
    every = {
        "name": "all",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["0", "1"], "default": "0"},
        "description": "1: the 50 updated last, resolved and ended ones too.",
    }
    return {
        "operationId": "listIncidents",
        "summary": "The active incidents and announcements, newest first",
        "parameters": [every],
        "responses": _answers(
            200, "NoticeList", "The notices.", {422: "all is not 0 or 1."} | _DOWN
        ),
    }


def _create() -> dict[str, Any]:
    kinds = [{"$ref": _REF.format("NewIncident")}, {"$ref": _REF.format("NewAnnouncement")}]
    errors = _BAD | _AUTH | _CONFLICT | _DOWN
    return {
        "operationId": "createIncident",
        "summary": "Open an incident, or post an announcement (kind: announcement)",
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": kinds}}},
        },
        "responses": _answers(201, "Notice", "Stored; notifications are queued.", errors),
    }


def _get() -> dict[str, Any]:
    return {
        "operationId": "getIncident",
        "summary": "One incident or announcement, with its timeline",
        "parameters": [_ID],
        "responses": _answers(200, "Notice", "The notice.", _MISSING | _DOWN),
    }


def _change() -> dict[str, Any]:
    errors = _BAD | _AUTH | _MISSING | _CONFLICT | _DOWN
    return {
        "operationId": "updateIncident",
        "summary": "Add an update: a state, text or title; state resolved resolves it",
        "security": [{"bearer": []}],
        "parameters": [_ID],
        "requestBody": {"required": True, "content": _content("NoticeChange")},
        "responses": _answers(200, "Notice", "Updated (or as it was, for no change).", errors),
    }
