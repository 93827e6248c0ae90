"""The ``type: http`` config models: a request per probe, and a URL polled for it.

    HttpSource(type="http", method="POST", url="https://gs.example/probe")
    HttpDestination(name="labka", type="http", url="https://labka.example/seen?id=${probe_id}")

Template variables (``${probe_id}`` ...) stay in the text here and are filled in for each
probe by the transport.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from jsonpath_ng.ext.parser import parse as parse_jsonpath
from pydantic import Field, field_validator, model_validator

from probe.durations import Interval
from probe.transports.spec import NAME_PATTERN, SLO, TLS, Model


class HttpSource(Model):
    """One request per probe; ``${probe_id}``, ``${sent_at}`` and ``${flow}`` are filled in."""

    type: Literal["http"] = Field(description="`http`.")
    method: str = Field(default="GET", description="The HTTP method.")
    url: str = Field(description="`http://` or `https://`. Template variables are allowed.")
    headers: dict[str, str] = Field(
        default={}, description="Template variables and `*_file` are allowed."
    )
    body: str | None = Field(
        default=None,
        description="The request body. Template variables are allowed, such as "
        '`\'{"probe_id": "${probe_id}"}\'`.',
    )
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,  # None: any 2xx
        description="The statuses that count as accepted, such as `[200, 202]`; each is "
        "100 to 599 (default: any 2xx).",
    )
    tls: TLS = Field(default=TLS(), description="`{verify, ca_file}`: the server's certificate.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        return url

    @field_validator("method")
    @classmethod
    def _method(cls, method: str) -> str:
        return method.upper()

    @property
    def summary(self) -> str:
        """For people: ``http POST http://host:port/path`` (no query: it may carry tokens)."""
        return f"http {self.method} {self.url.split('?', 1)[0]}"


class Match(Model):
    """How to find the probe id in a destination's reply: ``{jsonpath: ...}`` or ``{regex: ...}``.

    A regex may use ``${probe_id}``, which is replaced by the escaped probe id.
    """

    jsonpath: str | None = Field(
        default=None,
        description="Such as `$.events[*].probe_id`: counts JSON values equal to the probe "
        "id; invalid JSON is then an `observe_error` with reason `protocol`.",
    )
    regex: str | None = Field(
        default=None,
        description="Counts regex matches in the body, where `${probe_id}` stands for the "
        "escaped id.",
    )

    @field_validator("jsonpath")
    @classmethod
    def _valid_path(cls, path: str | None) -> str | None:
        return None if path is None else _check_jsonpath(path)

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                re.compile(regex.replace("${probe_id}", "X"))
            except re.error as exc:
                raise ValueError(f"invalid regex {regex!r}: {exc}") from None
        return regex

    @model_validator(mode="after")
    def _exactly_one(self) -> Match:
        if (self.jsonpath is None) == (self.regex is None):
            raise ValueError("give exactly one of jsonpath or regex")
        return self


class HttpDestination(Model):
    """Polls ``url`` every ``poll`` until the probe id shows up (JSONPath or regex match)."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique within the flow. It is the `destination` label.",
    )
    type: Literal["http"] = Field(description="`http`.")
    url: str = Field(
        description="The URL to poll. Template variables are allowed, such as "
        "`.../received?probe_id=${probe_id}`."
    )
    poll: Interval | None = Field(
        default=None, description="The time between polls (default: `defaults.poll`)."
    )
    match: Match = Field(
        default=Match(regex="${probe_id}"),
        description="How to find the probe in the reply: `{jsonpath: ...}` or `{regex: ...}`.",
    )
    time_field: str | None = Field(
        default=None,  # JSONPath to the destination's own arrival time
        description="A JSONPath evaluated on the object that holds the matched id, such as "
        "`received_at`. Its value is the destination's own arrival time: ISO 8601, or Unix "
        "seconds. Needs `match.jsonpath`.",
    )
    headers: dict[str, str] = Field(default={}, description="Request headers.")
    tls: TLS = Field(default=TLS(), description="As for the source (verification is on).")
    slo: SLO = Field(default=SLO(), description="`{latency, objective}`, overriding the flow's.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return HttpSource._http_url(url)

    @field_validator("time_field")
    @classmethod
    def _time_field(cls, path: str | None) -> str | None:
        return None if path is None else _check_jsonpath(path)

    @model_validator(mode="after")
    def _time_needs_json(self) -> HttpDestination:
        if self.time_field is not None and self.match.jsonpath is None:
            raise ValueError("time_field needs match: {jsonpath: ...}")
        return self


def _check_jsonpath(path: str) -> str:
    try:
        parse_jsonpath(path)
    except Exception as exc:  # jsonpath-ng raises several unrelated types
        raise ValueError(f"invalid JSONPath {path!r}: {exc}") from None
    return path
