"""The OpenAPI 3.1 document of ``/api/v1``, written by hand so it says exactly what is served.

Every response shape here is checked against the live daemon by schemathesis in
``tests/test_api.py``; change an endpoint and its schema together. ``flow`` path parameters
are an enum of the configured flows, so the document also tells a client what exists.
"""

from __future__ import annotations

from typing import Any, Final

from probe import __version__
from probe.report.stats import MONTH_PATTERN

_STATES: Final = ["ok", "degraded", "down", "maintenance", "unknown"]
_OUTCOMES: Final = ["delivered", "late", "lost", "send_error", "observe_error"]
_TIME: Final = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (JSON Schema 2020-12, as OpenAPI 3.1 uses it)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object whose every property is always present."""
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        out["description"] = description
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_RATIO: Final = {"type": "number", "minimum": 0, "maximum": 1}
_SECONDS: Final = {"type": "number"}

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": _object({"error": {"type": "string"}}, "Every error: a sentence saying what's wrong."),
    "State": {
        "type": "string",
        "enum": _STATES,
        "description": "maintenance: a window is active now. unknown: no recent result. "
        "down: the last 3 results failed (lost, send_error, observe_error). degraded: not "
        "down, but the newest result or one of the last 10 within the hour was not "
        "delivered. ok: the recent results were all delivered.",
    },
    "Outcome": {"type": "string", "enum": _OUTCOMES},
    "Window": _object(
        {"name": {"type": "string"}, "start": _TIME, "end": _TIME},
        "One occurrence of a maintenance window.",
    ),
    "LastProbe": _object(
        {
            "probe_id": {"type": "string"},
            "slot": _TIME,
            "outcome": _ref("Outcome"),
            "latency_seconds": _nullable(_SECONDS),
            "reason": _nullable({"type": "string"}),
            "maintenance": {"type": "boolean"},
            "resolved_at": _TIME,
        },
        "The newest stored result of a flow and destination.",
    ),
    "Destination": _object(
        {
            "name": {"type": "string", "description": 'The destination; "" for a check.'},
            "state": _ref("State"),
            "last_probe": _nullable(_ref("LastProbe")),
            "down_since": _nullable(_TIME),
            "availability": _object(
                {
                    "1h": _nullable(_RATIO),
                    "24h": _nullable(_RATIO),
                    "30d": _nullable(_RATIO),
                },
                "delivered / results outside maintenance; null without results. 1h from raw "
                "results; 24h and 30d from hourly rollups (the current UTC hour and the "
                "23 or 719 before it).",
            ),
            "slo": _object({"objective": _RATIO, "latency_seconds": _SECONDS}),
        }
    ),
    "Flow": _object(
        {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "state": _ref("State"),
            "maintenance": _nullable(_ref("Window")),
            "next_maintenance": _nullable(_ref("Window")),
            "destinations": {"type": "array", "items": _ref("Destination")},
        }
    ),
    "FlowList": _object(
        {
            "generated_at": _TIME,
            "timezone": {"type": "string"},
            "flows": {"type": "array", "items": _ref("Flow")},
        }
    ),
    "Result": _object(
        {
            "probe_id": {"type": "string"},
            "destination": {"type": "string"},
            "slot": _TIME,
            "outcome": _ref("Outcome"),
            "latency_seconds": _nullable(_SECONDS),
            "latency_clock": _nullable(
                {"type": "string", "enum": ["monotonic", "destination", "wall"]}
            ),
            "duplicates": {"type": "integer", "minimum": 0},
            "reason": _nullable({"type": "string"}),
            "mismatch": _nullable({"type": "string"}),
            "maintenance": {"type": "boolean"},
            "resolved_at": _TIME,
        }
    ),
    "ResultPage": _object(
        {
            "flow": {"type": "string"},
            "from": _TIME,
            "to": _TIME,
            "results": {"type": "array", "items": _ref("Result")},
            "next": _nullable(
                {"type": "string", "description": "Pass as cursor for the next page."}
            ),
        }
    ),
    "RunResult": _object(
        {
            "flow": {"type": "string"},
            "slot": _TIME,
            "results": {"type": "array", "items": _ref("Result"), "minItems": 1},
        }
    ),
}


def _report_schemas() -> dict[str, Any]:
    """The monthly report (the JSON contract of `probe report`)."""
    percentiles = {"p50": _SECONDS, "p95": _SECONDS, "p99": _SECONDS}
    row = _object(
        {
            "flow": {"type": "string"},
            "destination": {"type": "string"},
            "probes": {"type": "integer", "minimum": 0},
            "outcomes": _object({name: {"type": "integer", "minimum": 0} for name in _OUTCOMES}),
            "excluded_maintenance": {"type": "integer", "minimum": 0},
            "availability": _nullable(_RATIO),
            "time_availability": _nullable({"type": "number", "maximum": 1}),
            "slo": _object(
                {
                    "objective": {"type": "number"},
                    "latency_seconds": _SECONDS,
                    "met": _nullable({"type": "boolean"}),
                    "error_budget_used": _nullable({"type": "number"}),
                }
            ),
            "latency_seconds": _nullable(_object({**percentiles, "max": _nullable(_SECONDS)})),
            "incidents": {
                "type": "array",
                "items": _object(
                    {
                        "start": _TIME,
                        "end": _TIME,
                        "duration_seconds": _SECONDS,
                        "cause": {"type": "string"},
                        "ended_by": _nullable({"enum": ["recovered", "not_measured"]}),
                        "open": {"type": "boolean"},
                    }
                ),
            },
            "mttr_seconds": _nullable(_SECONDS),
            "mtbf_seconds": _nullable(_SECONDS),
            "previous_month": _object({"availability": _nullable(_RATIO)}),
            "maintenance": {"type": "array", "items": _ref("Window")},
            "no_data": {"type": "boolean"},
            "daily": {
                "type": "array",
                "items": _object(
                    {
                        "date": {"type": "string", "format": "date"},
                        "probes": {"type": "integer", "minimum": 0},
                        "availability": _nullable(_RATIO),
                        "latency_seconds": _nullable(_object(percentiles)),
                        "coverage": _nullable(_RATIO),
                        "not_measured_seconds": _SECONDS,
                    }
                ),
            },
            "expected_slots": _nullable({"type": "integer", "minimum": 0}),
            "measured_slots": {"type": "integer", "minimum": 0},
            "coverage": _nullable(_RATIO),
            "measured_seconds": _SECONDS,
            "not_measured_seconds": _SECONDS,
            "not_measured_probes": {"type": "integer", "minimum": 0},
            "first_measured": _nullable(_TIME),
            "partial": {"type": "boolean"},
        }
    )
    report = _object(
        {
            "month": {"type": "string"},
            "timezone": {"type": "string"},
            "generated_at": _TIME,
            "period": _object(
                {
                    "start": _TIME,
                    "end": _TIME,
                    "hours": {"type": "number"},
                    "measured_until": _TIME,
                }
            ),
            "partial": {"type": "boolean"},
            "rows": {"type": "array", "items": _ref("ReportRow")},
        }
    )
    return {"ReportRow": row, "MonthlyReport": report}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _paths(flow_param: dict[str, Any]) -> dict[str, Any]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    limit = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}

    return {
        "/api/v1/flows": {
            "get": {
                "operationId": "listFlows",
                "summary": "Every flow and destination: state, newest result, availability",
                "responses": {
                    "200": _json("FlowList", "The status now (cached for up to 2 s)."),
                    "503": _error("The store cannot be read."),
                },
            }
        },
        "/api/v1/flows/{flow}/results": {
            "get": {
                "operationId": "listResults",
                "summary": "Stored results whose slot lies in [from, to), ordered by slot, "
                "probe_id and destination",
                "parameters": [
                    flow_param,
                    query(
                        "from", _TIME, "Start (inclusive), with a UTC offset. Default: to - 24h."
                    ),
                    query(
                        "to",
                        _TIME,
                        "End (exclusive), with a UTC offset. Default: now. At "
                        "most 31 days after from.",
                    ),
                    query("limit", limit, "Results per page."),
                    query("cursor", {"type": "string"}, "The next value of the previous page."),
                    query("destination", {"type": "string"}, "Only this destination."),
                ],
                "responses": {
                    "200": _json("ResultPage", "One page of results."),
                    "404": _error("No flow of that name is configured."),
                    "422": _error(
                        "What the schema cannot say: from after to, a range of more than 31 "
                        "days (from defaults to to - 24h, to to now), a cursor that is not the "
                        "next value of a page, or a destination the flow does not have."
                    ),
                    "503": _error("The store cannot be read."),
                },
            }
        },
        "/api/v1/flows/{flow}/run": {
            "post": {
                "operationId": "runFlow",
                "summary": "Probe the flow now (slot = now) and return its results once every "
                "destination has one (at most the flow's timeout)",
                "security": [{"bearer": []}],
                "parameters": [flow_param],
                "responses": {
                    "200": _json("RunResult", "The results, also stored."),
                    "401": _error("No or a wrong bearer token."),
                    "403": _error("Disabled: server.api_token is not configured."),
                    "404": _error("No flow of that name is configured."),
                    "409": _error("A run of this flow through the API is in progress."),
                    "503": _error("The probe could not be stored, so it was not sent."),
                },
            }
        },
        "/api/v1/reports/monthly/{month}": {
            "get": {
                "operationId": "monthlyReport",
                "summary": "The monthly report, as `probe report --format json` prints it",
                "parameters": [
                    {
                        "name": "month",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": MONTH_PATTERN},
                        "description": "YYYY-MM, from 1970-01 to 2999-12, in the configured "
                        "time zone.",
                    }
                ],
                "responses": {
                    "200": _json("MonthlyReport", "The report."),
                    "400": _error("Not a month from 1970-01 to 2999-12."),
                    "404": _error("No such path (a month with a slash in it)."),
                    "503": _error("The store cannot be read."),
                },
            }
        },
    }


def openapi_document(flows: list[str]) -> dict[str, Any]:
    """The document for a daemon whose configured flows are ``flows``."""
    flow_param = {
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
        "paths": _paths(flow_param),
        "components": {
            "schemas": {**_SCHEMAS, **_report_schemas()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "server.api_token from the config.",
                }
            },
        },
    }
