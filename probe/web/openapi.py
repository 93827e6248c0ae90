"""The OpenAPI 3.1 document of ``/api/v1``, generated from the models of what is served.

>>> document = openapi_document(["gs-adt", "labka-api"])
>>> document["paths"]["/api/v1/flows"]["get"]["responses"]["200"]["content"]["application/json"]
{'schema': {'$ref': '#/components/schemas/FlowList'}}

- ``components/schemas`` are the serialization JSON Schemas of the response models
  (`probe.web.models`, `probe.report.models`), made by pydantic with references into
  ``#/components/schemas``: a field added to a model is in the document at once.
- The paths, with their parameters, error responses and the bearer auth, are written here,
  one small function per operation. ``flow`` path parameters are an enum of the configured
  flows, so the document also tells a client what exists.

schemathesis checks the document against the live daemon (``tests/test_api.py``).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from probe import __version__
from probe.report.models import MONTH_PATTERN, MonthlyReport, Time
from probe.web import notice_models
from probe.web.models import Error, FlowList, ResultPage, RunResult

REF: Final = "#/components/schemas/{model}"
RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    Error,
    FlowList,
    ResultPage,
    RunResult,
    MonthlyReport,
    *notice_models.RESPONSES,
)
"""The models of every response body; the schemas they use come with them."""
REQUESTS: Final = notice_models.REQUESTS
"""The models of request bodies, as validated."""
_TIME: Final = TypeAdapter(Time).json_schema()
_STORE_DOWN: Final = "The store cannot be read."


def schemas() -> dict[str, Any]:
    """``components/schemas``: each response model and every model it uses, as served."""
    return copy.deepcopy(_generated())  # a copy: a caller may change its document


@cache
def _generated() -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "serialization") for m in RESPONSES]
    wanted += [(m, "validation") for m in REQUESTS]
    _, found = models_json_schema(wanted, ref_template=REF)
    defs: dict[str, Any] = found["$defs"]
    # `StateName` gives the states inline, with their rules; pydantic lists the enum's own
    # definition all the same, unreferenced.
    defs.pop("State", None)
    return defs


def openapi_document(flows: list[str]) -> dict[str, Any]:
    """The document for a daemon whose configured flows are ``flows``."""
    flow = {
        "name": "flow",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": flows} if flows else {"type": "string"},
        "description": "A configured flow.",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dataflow-probe",
            "version": __version__,
            "description": "Status, results and reports of the data-flow probe daemon. Every "
            'error is {"error": "..."}. Times are ISO 8601 with the UTC offset of the '
            "configured time zone.",
        },
        "paths": {
            "/api/v1/flows": {"get": _list_flows()},
            "/api/v1/flows/{flow}/results": {"get": _list_results(flow)},
            "/api/v1/flows/{flow}/run": {"post": _run_flow(flow)},
            "/api/v1/reports/monthly/{month}": {"get": _monthly_report()},
            "/api/v1/events": {"get": _events()},
            **notice_models.openapi_paths(),  # /api/v1/incidents
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "server.api_token from the config.",
                }
            },
        },
    }


def _responses(ok: type[BaseModel], description: str, errors: dict[int, str]) -> dict[str, Any]:
    """The 200 answer with `ok`'s schema, and each error status with the `Error` schema."""
    answers = {200: (ok, description)} | {status: (Error, text) for status, text in errors.items()}
    return {
        str(status): {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
        for status, (model, text) in answers.items()
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _list_flows() -> dict[str, Any]:
    return {
        "operationId": "listFlows",
        "summary": "Every flow and destination: state, newest result, availability",
        "responses": _responses(
            FlowList, "The status now (cached for up to 2 s).", {503: _STORE_DOWN}
        ),
    }


def _list_results(flow: dict[str, Any]) -> dict[str, Any]:
    limit = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    invalid = (
        "What the schema cannot say: from after to, a range of more than 31 days (from "
        "defaults to to - 24h, to to now), a cursor that is not the next value of a page, or "
        "a destination the flow does not have."
    )
    return {
        "operationId": "listResults",
        "summary": "Stored results whose slot lies in [from, to), ordered by slot, probe_id "
        "and destination",
        "parameters": [
            flow,
            _query("from", _TIME, "Start (inclusive), with a UTC offset. Default: to - 24h."),
            _query(
                "to",
                _TIME,
                "End (exclusive), with a UTC offset. Default: now. At most 31 days after from.",
            ),
            _query("limit", limit, "Results per page."),
            _query("cursor", {"type": "string"}, "The next value of the previous page."),
            _query("destination", {"type": "string"}, "Only this destination."),
        ],
        "responses": _responses(
            ResultPage,
            "One page of results.",
            {404: "No flow of that name is configured.", 422: invalid, 503: _STORE_DOWN},
        ),
    }


def _run_flow(flow: dict[str, Any]) -> dict[str, Any]:
    errors = {
        401: "No or a wrong bearer token.",
        403: "Disabled: server.api_token is not configured.",
        404: "No flow of that name is configured.",
        409: "A run of this flow through the API is in progress.",
        503: "The probe could not be stored, so it was not sent.",
    }
    return {
        "operationId": "runFlow",
        "summary": "Probe the flow now (slot = now) and return its results once every "
        "destination has one (at most the flow's timeout)",
        "security": [{"bearer": []}],
        "parameters": [flow],
        "responses": _responses(RunResult, "The results, also stored.", errors),
    }


def _monthly_report() -> dict[str, Any]:
    month = {
        "name": "month",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": MONTH_PATTERN},
        "description": "YYYY-MM, from 1970-01 to 2999-12, in the configured time zone.",
    }
    errors = {
        400: "Not a month from 1970-01 to 2999-12.",
        404: "No such path (a month with a slash in it).",
        503: _STORE_DOWN,
    }
    return {
        "operationId": "monthlyReport",
        "summary": "The monthly report, as `probe report --format json` prints it",
        "parameters": [month],
        "responses": _responses(MonthlyReport, "The report.", errors),
    }


def _events() -> dict[str, Any]:
    """The event stream (`probe.web.live`): it never ends, so it is described, not fuzzed."""
    stream = {
        "description": "Server-Sent Events: `state` (JSON: overall, flows with their "
        "destinations' state and down_since, active notices), sent at once and on each "
        "change; `unavailable` while the store cannot be read; a comment every 15 s.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    busy = {
        "description": "Too many streams are open; see Retry-After.",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }
    return {
        "operationId": "streamEvents",
        "summary": "The state of every flow and destination as it changes, for the status page",
        "responses": {"200": stream, "503": busy},
    }
