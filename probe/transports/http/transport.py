"""HTTP: a source that sends one request per probe, and an observer that polls a URL."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import httpx
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from probe.errors import CheckFailed, ProtocolError
from probe.model import ProbeMessage, Receipt, Sighting, utcnow
from probe.transports.base import (
    FINAL_LOOK,
    Destination,
    Resources,
    fill,
    has_variables,
    poll_until,
)
from probe.transports.http.client import http_client, map_http_errors, target_of
from probe.transports.http.spec import HttpDestination, HttpSource
from probe.transports.timestamps import parse_time


class HttpProbeSource:
    """``source: {type: http, ...}``: one request per probe; a 5xx or unexpected status fails."""

    def __init__(self, config: HttpSource, resources: Resources) -> None:
        self.config = config
        self.client = http_client(resources, verify=config.tls.verify, ca_file=config.tls.ca_file)
        self.target = target_of(config.url)
        # A request without per-probe values (a plain check) is prepared once.
        texts = [config.url, config.body or "", *config.headers.values()]
        self._fixed = not any(has_variables(text) for text in texts)
        self._url = httpx.URL(config.url) if self._fixed else None
        self._body = config.body.encode() if self._fixed and config.body is not None else None

    async def send(self, probe: ProbeMessage) -> Receipt:
        cfg = self.config
        if self._url is not None:
            url: httpx.URL | str = self._url
            body, headers = self._body, cfg.headers
        else:
            variables = probe.variables()
            url = fill(cfg.url, variables, url=True)
            body = fill(cfg.body, variables).encode() if cfg.body is not None else None
            headers = {name: fill(value, variables) for name, value in cfg.headers.items()}
        with map_http_errors(self.target):
            response = await self.client.request(cfg.method, url, content=body, headers=headers)
            await response.aread()
        status = response.status_code
        expected = cfg.expect_status
        if (expected is None and not 200 <= status < 300) or (expected and status not in expected):
            reason = "http_5xx" if status >= 500 else "unexpected_status"
            raise CheckFailed(f"{self.target} answered HTTP {status}", reason=reason)
        return Receipt(detail=f"HTTP {status}")

    async def aclose(self) -> None:
        """The client is shared and closed by its owner."""


class HttpPollObserver:
    """``destinations: [{type: http, ...}]``: polls until the probe id shows up."""

    def __init__(self, config: HttpDestination, resources: Resources, *, poll: float) -> None:
        self.config = config
        self.poll = poll
        self.client = http_client(resources, verify=config.tls.verify, ca_file=config.tls.ca_file)
        self.target = target_of(config.url)
        # Both were checked when the config was loaded.
        path = config.match.jsonpath
        self.jsonpath = parse_jsonpath(path) if path is not None else None
        self.time_path = parse_jsonpath(config.time_field) if config.time_field else None

    @classmethod
    def for_destination(cls, spec: Destination, resources: Resources) -> HttpPollObserver:
        """The observer of a resolved ``destinations:`` entry (the registry's factory)."""
        assert isinstance(spec.config, HttpDestination)
        return cls(spec.config, resources, poll=spec.poll)

    @property
    def start_error(self) -> None:
        """Polling starts nothing, so nothing fails to start."""
        return None

    async def start(self) -> None:
        """Nothing to bind: polling needs no listener."""

    async def aclose(self) -> None:
        """The client is shared and closed by its owner."""

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None:
        variables = probe.variables(self.config.name)
        url = fill(self.config.url, variables, url=True)
        headers = {name: fill(value, variables) for name, value in self.config.headers.items()}
        return await poll_until(
            lambda: self._poll_once(url, headers, probe, deadline),
            every=self.poll,
            deadline=deadline,
        )

    async def _poll_once(
        self, url: str, headers: dict[str, str], probe: ProbeMessage, deadline: float
    ) -> Sighting | None:
        timeout = max(deadline - time.monotonic(), FINAL_LOOK)
        with map_http_errors(self.target):
            response = await self.client.get(url, headers=headers, timeout=timeout)
            await response.aread()
        seen_mono = time.monotonic()
        seen_at = utcnow()
        status = response.status_code
        if status >= 400:
            reason = "http_5xx" if status >= 500 else "http_4xx"
            raise CheckFailed(f"{self.target} answered HTTP {status}", reason=reason)
        count, arrived_at = self._match(response, probe)
        if not count:
            return None
        return Sighting(
            probe_id=probe.probe_id,
            destination=self.config.name,
            seen_at=seen_at,
            seen_mono=seen_mono,
            count=count,
            arrived_at=arrived_at,
        )

    def _match(self, response: httpx.Response, probe: ProbeMessage) -> tuple[int, datetime | None]:
        probe_id = probe.probe_id
        if self.jsonpath is None:
            return len(re.findall(self._pattern(probe), response.text)), None
        try:
            document = json.loads(response.content)
        except ValueError:
            raise ProtocolError(f"{self.target} answered with invalid JSON") from None
        matches = [m for m in self.jsonpath.find(document) if m.value == probe_id]
        arrivals = [t for m in matches if (t := self._arrival(m)) is not None]
        return len(matches), min(arrivals) if arrivals else None

    def _pattern(self, probe: ProbeMessage) -> str:
        """The regex with ``${probe_id}`` (and the other template variables) escaped in."""
        assert self.config.match.regex is not None
        variables = probe.variables(self.config.name)
        return fill(self.config.match.regex, {k: re.escape(v) for k, v in variables.items()})

    def _arrival(self, match: Any) -> datetime | None:
        """The arrival time, read from the object that holds the matched probe id."""
        if self.time_path is None or match.context is None:
            return None
        found = self.time_path.find(match.context.value)
        return parse_time(found[0].value) if found else None
