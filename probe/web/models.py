"""What ``/api/v1`` answers, as pydantic models: one per JSON object.

>>> Error(error="no flow named 'x'").model_dump(mode="json")
{'error': "no flow named 'x'"}

`probe.web.api` builds these and answers their ``model_dump(mode="json")``; the OpenAPI
document (`probe.web.openapi`) is generated from them. The monthly report's models are in
`probe.report.models`, which also gives the base (`Shape`: frozen, closed as served) and the
value types; a maintenance `Window` is the same object in both.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from probe.model import Outcome
from probe.report.models import Count, Ratio, Seconds, Shape, Time, Window
from probe.web.status import State

__all__ = [
    "Availability",
    "Destination",
    "DestinationSlo",
    "Error",
    "Flow",
    "FlowList",
    "LastProbe",
    "ResultPage",
    "RunResult",
    "StoredResult",
    "Window",
]

StateName = Annotated[
    State,
    WithJsonSchema(
        {
            "type": "string",
            "enum": [state.value for state in State],
            "description": "maintenance: a window is active now. unknown: no recent result. "
            "down: the last 3 results failed (lost, send_error, observe_error). degraded: not "
            "down, but the newest result or one of the last 10 within the hour was not "
            "delivered. ok: the recent results were all delivered.",
        }
    ),
]
"""A `State`, with the rules a client needs to read it (`probe.web.status` has them all)."""


class Error(Shape):
    """Every error: a sentence saying what's wrong."""

    error: str


class LastProbe(Shape):
    """The newest stored result of a flow and destination."""

    probe_id: str
    slot: Time
    outcome: Outcome
    latency_seconds: Seconds | None
    reason: str | None
    maintenance: bool
    resolved_at: Time


class Availability(Shape):
    """delivered / results outside maintenance; null without results. 1h from raw results;
    24h and 30d from hourly rollups (the current UTC hour and the 23 or 719 before it)."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    hour: Ratio | None = Field(alias="1h")
    day: Ratio | None = Field(alias="24h")
    month: Ratio | None = Field(alias="30d")


class DestinationSlo(Shape):
    """The objectives of a flow and destination."""

    objective: Ratio
    latency_seconds: Seconds


class Destination(Shape):
    """A destination of a flow, or the flow itself for a check."""

    name: str = Field(description='The destination; "" for a check.')
    state: StateName
    last_probe: LastProbe | None
    down_since: Time | None
    availability: Availability
    slo: DestinationSlo


class Flow(Shape):
    """A configured flow: its state, maintenance and destinations."""

    name: str
    description: str
    state: StateName
    maintenance: Window | None
    next_maintenance: Window | None
    destinations: tuple[Destination, ...]


class FlowList(Shape):
    """``GET /api/v1/flows``: every flow and destination now."""

    generated_at: Time
    timezone: str
    flows: tuple[Flow, ...]


class StoredResult(Shape):
    """One stored result of a probe at a destination."""

    probe_id: str
    destination: str
    slot: Time
    outcome: Outcome
    latency_seconds: Seconds | None
    latency_clock: Literal["monotonic", "destination", "wall"] | None
    duplicates: Count
    reason: str | None
    mismatch: str | None
    maintenance: bool
    resolved_at: Time


class ResultPage(Shape):
    """``GET /api/v1/flows/{flow}/results``: one page of results."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    flow: str
    start: Time = Field(alias="from")
    end: Time = Field(alias="to")
    results: tuple[StoredResult, ...]
    next: str | None = Field(description="Pass as cursor for the next page.")


class RunResult(Shape):
    """``POST /api/v1/flows/{flow}/run``: the results of a probe made now."""

    flow: str
    slot: Time
    results: tuple[StoredResult, ...] = Field(min_length=1)
