"""``/api/v1/incidents``: written incidents and announcements, read by anyone, written with
the API token.

    $ curl -s http://probe:9464/api/v1/incidents                       # the active ones
    $ curl -s -X POST http://probe:9464/api/v1/incidents -H "Authorization: Bearer $TOKEN" \\
    >   -d '{"title": "Labka gets nothing", "flows": ["gs-*"], "body": "Looking into it."}'
    $ curl -s -X PATCH http://probe:9464/api/v1/incidents/7 -H "Authorization: Bearer $TOKEN" \\
    >   -d '{"state": "resolved", "body": "The engine was restarted."}'

- ``GET /api/v1/incidents``: the active notices; ``?all=1``: the 50 updated last, resolved
  ones too. ``GET /api/v1/incidents/{id}``: one, with its timeline.
- ``POST /api/v1/incidents`` (`NewIncident` or `NewAnnouncement`) answers 201 and the notice;
  ``PATCH /api/v1/incidents/{id}`` (`NoticeChange`) the notice updated. Both need
  ``Authorization: Bearer <server.api_token>`` (403 without a configured token, 401 with a
  wrong one, as ``POST /api/v1/flows/{flow}/run``), and write the notice and queue its
  notifications (`probe.notify.queue.queue_notice`) in one transaction.

Answers are `probe.web.notice_models`; errors are ``{"error": "..."}``: 400 not JSON, 413
over `MAX_REQUEST` bytes, 422 not the schema, 404 no such notice, 409 what the schema
cannot say (`probe.web.notice_models`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from probe.config.models import Config
from probe.model import utcnow
from probe.notify.queue import queue_notice
from probe.store import notices
from probe.web.api import Api, ApiError, authorize, model_response
from probe.web.notice_models import (
    MAX_REQUEST,
    NewAnnouncement,
    NewNotice,
    NoticeChange,
    NoticeList,
    notice_model,
)

_NEW: Final = TypeAdapter[NewNotice](NewNotice)
RECENT: Final = 50
_MESSAGES: Final = {  # what a pattern means, instead of the pattern
    "title": "the title is empty",
    "flows": "a flow glob is empty or contains a comma",
    "starts_at": "not an ISO 8601 time with a UTC offset, from 1970 to 2999",
    "ends_at": "not an ISO 8601 time with a UTC offset, from 1970 to 2999",
}

Change = Literal["opened", "updated", "resolved"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NoticesApi:
    """The endpoints, over the daemon's `Api` (its context is read at each request: a reload
    may change the config, and with it the token)."""

    api: Api

    def routes(self) -> list[Route]:
        guard = Api._guard  # the API's one mapping of errors to answers
        return [
            Route("/api/v1/incidents", guard(self.collection), methods=["GET", "POST"]),
            Route("/api/v1/incidents/{id:int}", guard(self.item), methods=["GET", "PATCH"]),
        ]

    @property
    def config(self) -> Config:
        return self.api.context.config

    async def collection(self, request: Request) -> Response:
        return await (self.create(request) if request.method == "POST" else self.list(request))

    async def item(self, request: Request) -> Response:
        return await (self.change(request) if request.method == "PATCH" else self.one(request))

    async def list(self, request: Request) -> Response:
        every = request.query_params.get("all", "0")
        if every not in ("0", "1"):
            raise ApiError(422, "all must be 0 or 1")
        now = utcnow()
        async with self.api.context.engine.connect() as conn:
            if every == "1":
                found = await notices.recent_notices(conn, limit=RECENT)
            else:
                found = await notices.active_notices(conn, now=now)
        return model_response(
            NoticeList(
                generated_at=now.astimezone(self.api.tz).isoformat(),
                timezone=self.config.timezone,
                notices=tuple(notice_model(n, self.api.tz, now=now) for n in found),
            )
        )

    async def one(self, request: Request) -> Response:
        notice_id = _id(request)
        async with self.api.context.engine.connect() as conn:
            found = await notices.get_notice(conn, notice_id)
        if found is None:
            raise ApiError(404, f"no incident or announcement {notice_id}")
        return model_response(notice_model(found, self.api.tz, now=utcnow()))

    async def create(self, request: Request) -> Response:
        config = self._authorized(request)
        new = _parsed(await _read(request), _NEW.validate_json)
        starts = ends = None
        if isinstance(new, NewAnnouncement):
            starts, ends = new.starts_at, new.ends_at
        async with self.api.context.engine.begin() as conn:
            now = utcnow()
            try:
                notice = await notices.open_notice(
                    conn, kind=new.kind, title=new.title, flows=new.flows, body=new.body,
                    now=now, state=new.state, starts_at=starts, ends_at=ends,
                )  # fmt: skip
            except ValueError as exc:  # what the schema cannot say: ends_at before starts_at
                raise ApiError(409, str(exc)) from None
            await queue_notice(conn, config, notice, "opened", now=now)
        location = {"Location": f"/api/v1/incidents/{notice.id}"}
        answer = notice_model(notice, self.api.tz, now=now)
        return model_response(answer, status=201, headers=location)

    async def change(self, request: Request) -> Response:
        config = self._authorized(request)
        notice_id = _id(request)
        change = _parsed(await _read(request), NoticeChange.model_validate_json)
        async with self.api.context.engine.begin() as conn:
            now = utcnow()
            current = await notices.get_notice(conn, notice_id)
            if current is None:
                raise ApiError(404, f"no incident or announcement {notice_id}")
            state: str | None = change.state
            if state == "resolved":  # resolves an announcement too: it ends it
                state = notices.FINAL[current.kind]
            try:
                notice = await notices.update_notice(
                    conn, notice_id, now=now, state=state, body=change.body, title=change.title
                )
            except notices.NothingToUpdate:
                return model_response(notice_model(current, self.api.tz, now=now))
            except ValueError as exc:  # a state its kind has not; resolved already
                raise ApiError(409, str(exc)) from None
            what: Change = "resolved" if notice.resolved_at is not None else "updated"
            await queue_notice(conn, config, notice, what, now=now)
        return model_response(notice_model(notice, self.api.tz, now=now))

    def _authorized(self, request: Request) -> Config:
        """The config, once the request has shown the token."""
        config = self.config
        token = config.server.api_token
        if token is None:
            raise ApiError(
                403, "writing incidents through the API is disabled: set server.api_token"
            )
        authorize(request.headers.get("authorization"), token)
        return config


def _id(request: Request) -> int:
    notice_id = int(request.path_params["id"])
    if not 1 <= notice_id <= notices.MAX_ID:
        raise ApiError(404, f"no incident or announcement {notice_id}")
    return notice_id


async def _read(request: Request) -> bytes:
    """The request body, refused (413) past `MAX_REQUEST` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST:
        raise ApiError(413, f"the request is over {MAX_REQUEST} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST:
            raise ApiError(413, f"the request is over {MAX_REQUEST} bytes")
    return bytes(body)


def _parsed(raw: bytes, validate: Callable[[bytes], T]) -> T:
    """The request as a model: 400 for what is not JSON, 422 for what does not fit."""
    try:
        return validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(400, "the body is not JSON") from None
        raise ApiError(422, "; ".join(_describe(e) for e in errors[:3])) from None


def _describe(error: ErrorDetails) -> str:
    """``title: the title is empty``: where, and what is wrong, in words."""
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in notices.KINDS:  # the tag of the request's kind
        loc = loc[1:]
    where = ".".join(loc) or "body"
    if error["type"] == "string_pattern_mismatch" or loc[-1:] in (["starts_at"], ["ends_at"]):
        field = next((part for part in reversed(loc) if part in _MESSAGES), None)
        if field is not None:
            return f"{where}: {_MESSAGES[field]}"
    return f"{where}: {error['msg']}"
