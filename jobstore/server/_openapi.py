"""The service's OpenAPI 3.1 document, its job schema taken from the store's (never a second copy)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .._status import STATES
from .._version import __version__
from ._dashboard import MINUTES

_JOB = "#/components/schemas/Job"


def _moved(value: Any, base: str) -> Any:
    """The job schema with its own references (``#/properties/...``) pointing into the document's component."""
    if isinstance(value, dict):
        return {
            key: (base + item[1:] if key == "$ref" and isinstance(item, str) and item.startswith("#/") else _moved(item, base))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_moved(item, base) for item in value]
    return value


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


#: What each refusal means, by its status.
_ERROR_WORDS = {
    400: "an invalid job or argument; `fields` names the job fields at fault",
    401: "no token, or a wrong one, where the service asks for one",
    403: "a Host header naming a host the service does not answer to, or a write from a page of another site",
    404: "no such job",
    409: "the job is not in a state the operation fits",
    413: "the request body (or the length it declares) is over the limit",
    503: "the store cannot serve now: its lock is held too long, its disk refuses, or a file is damaged",
}
#: What any request may be refused with before it reaches its operation: the Host and the origin
#: (403), the token (401) and the declared length of its body (413) are checked for every request.
_REFUSALS = (401, 403, 413)


def _errors(*statuses: int, store: bool = True, words: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The error answers of an operation: the refusals of every request, 503 when it reads or writes the store, and ``statuses``."""
    told = {**_ERROR_WORDS, **(words or {})}
    codes = sorted({*_REFUSALS, *((503,) if store else ()), *statuses})
    return {str(status): _json(_ref("Error"), told[status]) for status in codes}


def _body(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


_SECONDS = {"type": "number", "minimum": 0}
#: The longest delay a job may be given, in seconds, as the store takes it.
_LONGEST_DELAY = 1e11
_WORKER = {"type": "string", "minLength": 1}
_ID_PARAMETER = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job's id. An id with a slash, or `.` or `..`, names no job in a URL (a slash ends the id, even sent as %2F, "
    "and clients drop dot segments): such a job is reached through the library alone.",
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$", "not": {"enum": [".", ".."]}},
}
_HTML = {"text/html": {"schema": {"type": "string"}}}


def _format(pjson: str) -> dict[str, Any]:
    """The ``f`` query parameter of a resource that is a page too."""
    return {
        "name": "f",
        "in": "query",
        "description": f"json, {pjson}, or html for the page; without it a browser's Accept header (text/html before application/json) asks for the page",
        "schema": {"type": "string", "enum": ["json", "pjson", "html"]},
    }


def openapi_document(job_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI document of the service whose store checks jobs against ``job_schema``."""
    job = _moved({key: value for key, value in copy.deepcopy(dict(job_schema)).items() if key not in ("$schema", "$id")}, _JOB)
    fields = job.get("properties", {})
    spec = {
        "type": "object",
        "description": "The fields of a new job: any field of the job schema but id and status, and delay. The scheduling fields "
        "(runAt or delay, priority, maxRetries, retryBackoff, dependsOn, key) say when and in which order it is claimed, how often "
        "a failure sends it back to pending, and what it waits for; a key held by a job not yet ended answers with that job.",
        "properties": {
            **{name: {"$ref": f"{_JOB}/properties/{name}"} for name in fields if name not in ("id", "status")},
            "delay": {
                "type": "number",
                "minimum": 0,
                "maximum": _LONGEST_DELAY,
                "description": "Seconds from when the service takes the job before it is due: stored as runAt, so not with runAt.",
            },
        },
        "additionalProperties": False,
    }

    def nullable(name: str) -> dict[str, Any]:
        """A job field as the status resource has it: the field's own schema, or null when the job lacks it."""
        return {"oneOf": [{"$ref": f"{_JOB}/properties/{name}"}, {"type": "null"}]}

    schemas = {
        "Job": job,
        "JobSpec": spec,
        "Error": {
            "type": "object",
            "description": "A refused request: the exception's class and message, the attributes that made the message and, for an "
            "invalid job, the fields at fault (a refusal before the operation names the path and status instead).",
            "properties": {
                "error": {"type": "string"},
                "detail": {"type": "string"},
                "attributes": {"type": "object"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "url": {"type": "string"},
                "status": {"type": "integer"},
            },
            "required": ["error", "detail"],
        },
        "Page": {
            "type": "object",
            "properties": {"jobs": {"type": "array", "items": _ref("Job")}, "next": {"type": ["string", "null"]}},
            "required": ["jobs", "next"],
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"$ref": f"{_JOB}/properties/status"},
                "progress": nullable("progress"),
                "startedAt": nullable("startedAt"),
                "finishedAt": nullable("finishedAt"),
                "estimatedSecondsLeft": {"type": ["number", "null"], "minimum": 0},
                "cancelRequested": {"type": "boolean"},
                "canceled": {"type": "boolean"},
            },
            "required": ["id", "status", "progress", "startedAt", "finishedAt", "estimatedSecondsLeft", "cancelRequested", "canceled"],
            "additionalProperties": False,
        },
        "History": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "status": {"$ref": f"{_JOB}/properties/status"}, "history": {"$ref": f"{_JOB}/properties/history"}},
            "required": ["id", "status", "history"],
            "additionalProperties": False,
        },
        "Stats": {
            "type": "object",
            "properties": {
                **{state.value: {"type": "integer", "minimum": 0} for state in STATES},
                "leaseLapsed": {"type": "integer", "minimum": 0},
                "total": {"type": "integer", "minimum": 0},
                "oldestPendingSeconds": {"type": ["number", "null"]},
                "finishedLastHour": {"type": "integer", "minimum": 0},
            },
            "required": [state.value for state in STATES] + ["leaseLapsed", "total", "oldestPendingSeconds", "finishedLastHour"],
            "additionalProperties": False,
        },
        "Activity": {
            "type": "object",
            "description": f"Jobs finished and failed per minute over the last {MINUTES} minutes, oldest minute first.",
            "properties": {
                "minutes": {"const": MINUTES},
                "until": {"type": "string", "format": "date-time"},
                **{kind: {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": MINUTES, "maxItems": MINUTES} for kind in ("finished", "failed")},
            },
            "required": ["minutes", "until", "finished", "failed"],
            "additionalProperties": False,
        },
    }
    ids = {"type": "array", "items": {"type": "string"}}
    submitted = {"oneOf": [_ref("Job"), {"type": "object", "properties": {"jobs": {"type": "array", "items": _ref("Job")}}, "required": ["jobs"], "additionalProperties": False}]}
    job_actions: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
        "cancel": ("Cancel the job: a waiting one ends canceled, a running one is asked to stop.", {}, ()),
        "retry": ("Run an ended job again: back to pending, its history kept.", {}, ()),
        "heartbeat": ("Renew a running job's lease; the answer tells its worker whether to stop (cancelRequested).", {"lease": {**_SECONDS, "exclusiveMinimum": 0}, "worker": _WORKER}, ()),
        "progress": ("Record how far a running job has got.", {"completed": {"type": "integer", "minimum": 0}, "total": {"type": ["integer", "null"], "minimum": 0}}, ("completed",)),
        "messages": ("Add a line to a running job's messages.", {"text": {"type": "string"}}, ("text",)),
        "result": ("Store the job's result and finish it: a string as given, any other JSON value as its indented JSON text.", {"result": {}, "inputJob": {"type": "object"}}, ("result",)),
        "fail": (
            "Move a job that has not ended to error, adding the message; a running job with retries left (maxRetries) goes back to "
            "pending instead, due after its backoff, unless retry is false.",
            {"message": {"type": "string"}, "retry": {"type": "boolean", "default": True}},
            (),
        ),
        "release": ("Hand a running job back to pending, its claim not counted as an attempt.", {"reason": {"type": "string"}, "worker": _WORKER}, ()),
    }
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "operationId": "getIndex",
                "summary": "The service's name, version and links to its resources; ?f=html (or a browser's Accept) the dashboard's overview.",
                "parameters": [_format("pjson (the same)")],
                "responses": {
                    "200": {
                        "description": "the links, or the overview page",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "service": {"const": "jobstore"},
                                        "version": {"type": "string"},
                                        "links": {"type": "object", "additionalProperties": {"type": "string"}},
                                    },
                                    "required": ["service", "version", "links"],
                                    "additionalProperties": False,
                                }
                            },
                            **_HTML,
                        },
                    },
                    **_errors(400),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document.",
                "responses": {"200": _json({"type": "object", "required": ["openapi", "info", "paths"]}, "the OpenAPI document"), **_errors()},
            }
        },
        "/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "A page of jobs, filtered by state, name and user together, newest or oldest first; ?f=html (or a browser's Accept) the page of the list.",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": [state.value for state in STATES]}},
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                    {"name": "user", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "The next of the page before."},
                    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["newest", "oldest"], "default": "newest"}},
                    _format("pjson (the same)"),
                ],
                "responses": {
                    "200": {
                        "description": "the page; next is the cursor of the page after, null on the last (or the page of the list, an empty filter meaning any)",
                        "content": {"application/json": {"schema": _ref("Page")}, **_HTML},
                    },
                    **_errors(400),
                },
            },
            "post": {
                "operationId": "submitJobs",
                "summary": "Submit one job (an object) or many (an array, all or none); each starts pending, or, for a key a job not yet "
                "ended holds, is answered by that job.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [_ref("JobSpec"), {"type": "array", "items": _ref("JobSpec")}]}}}},
                "responses": {
                    "200": _json(submitted, "nothing was made: every spec gave a key a job not yet ended holds, and that job is answered in its place"),
                    "201": _json(submitted, "the job, or {jobs: [...]} for an array; at least one was made (a key already held answers with its holder)"),
                    **_errors(400),
                },
            },
        },
        "/jobs/{job_id}": {
            "parameters": [_ID_PARAMETER],
            "get": {
                "operationId": "getJob",
                "summary": "The job; ?f=html (or a browser's Accept) its page, ?f=pjson indented.",
                "parameters": [_format("pjson indented")],
                "responses": {
                    "200": {"description": "the job, or its page", "content": {"application/json": {"schema": _ref("Job")}, **_HTML}},
                    **_errors(400, 404),
                },
            },
            "put": {
                "operationId": "setJob",
                "summary": "Put the job in a state with the data merged into it, making it when no table holds it (api.job's setJob).",
                "requestBody": _body({"data": {"type": ["object", "null"]}, "state": {"$ref": f"{_JOB}/properties/status"}}),
                "responses": {"200": _json(_ref("Job"), "the job as stored"), **_errors(400)},
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Delete the job; its data is gone from the disk once this answers.",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"id": {"type": "string"}, "deleted": {"const": True}}, "required": ["id", "deleted"], "additionalProperties": False},
                        "deleted",
                    ),
                    **_errors(404),
                },
            },
        },
        "/jobs/{job_id}/status": {
            "parameters": [_ID_PARAMETER],
            "get": {"operationId": "getJobStatus", "summary": "The short form: status, progress, times and an estimate of the time left.", "responses": {"200": _json(_ref("Status"), "the status"), **_errors(404)}},
        },
        "/jobs/{job_id}/history": {
            "parameters": [_ID_PARAMETER],
            "get": {"operationId": "getJobHistory", "summary": "The job's changes of state, oldest first.", "responses": {"200": _json(_ref("History"), "the history"), **_errors(404)}},
        },
        "/jobs/{job_id}/wait": {
            "parameters": [_ID_PARAMETER],
            "get": {
                "operationId": "waitForJob",
                "summary": "Long-poll: answers once the job has ended (200), or with the job as it is when the timeout passes (202).",
                "parameters": [{"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 300, "default": 30}}],
                "responses": {"200": _json(_ref("Job"), "the job, ended"), "202": _json(_ref("Job"), "the job, not ended yet"), **_errors(400, 404)},
            },
        },
        "/claims": {
            "post": {
                "operationId": "claimJob",
                "summary": "Claim the job that has waited longest, for this worker alone (204 when none waits, or when the claimer went away).",
                "requestBody": _body({"worker": _WORKER, "lease": {**_SECONDS, "exclusiveMinimum": 0}, "wait": {**_SECONDS, "maximum": 300}}),
                "responses": {"200": _json(_ref("Job"), "the job, now running"), "204": {"description": "no job waits"}, **_errors(400)},
            }
        },
        "/stats": {"get": {"operationId": "getStats", "summary": "The count per state and the other figures of `jobstore stats`.", "responses": {"200": _json(_ref("Stats"), "the figures"), **_errors()}}},
        "/activity": {
            "get": {"operationId": "getActivity", "summary": "What the dashboard's chart shows: jobs finished and failed per minute, the last hour.", "responses": {"200": _json(_ref("Activity"), "the figures"), **_errors()}}
        },
        "/purge": {
            "post": {
                "operationId": "purgeJobs",
                "summary": "Remove old jobs of a history state, by age (seconds), by count, or both.",
                "requestBody": _body({"state": {"enum": ["finished", "error"]}, "olderThan": _SECONDS, "keepLast": {"type": "integer", "minimum": 0}}, ("state",)),
                "responses": {
                    "200": _json({"type": "object", "properties": {"removed": {"type": "integer", "minimum": 0}}, "required": ["removed"], "additionalProperties": False}, "how many went"),
                    **_errors(400),
                },
            }
        },
        "/requeue-expired": {
            "post": {
                "operationId": "requeueExpiredJobs",
                "summary": "Recover running jobs whose lease lapsed.",
                "requestBody": _body({}),
                "responses": {"200": _json({"type": "object", "properties": {"requeued": ids}, "required": ["requeued"], "additionalProperties": False}, "their ids"), **_errors(400)},
            }
        },
        "/retries": {
            "post": {
                "operationId": "retryFailedJobs",
                "summary": "Send every job in error of this name back to pending (the dashboard's bulk retry).",
                "requestBody": _body({"name": {"type": "string"}}, ("name",)),
                "responses": {"200": _json({"type": "object", "properties": {"retried": ids}, "required": ["retried"], "additionalProperties": False}, "the ids of the jobs retried"), **_errors(400)},
            }
        },
        "/problems": {
            "get": {
                "operationId": "checkStore",
                "summary": "Every problem of the store's files, as `jobstore validate` lists them.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "problems": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {"path": {"type": "string"}, "jobId": {"type": ["string", "null"]}, "detail": {"type": "string"}},
                                        "required": ["path", "jobId", "detail"],
                                        "additionalProperties": False,
                                    },
                                }
                            },
                            "required": ["problems"],
                            "additionalProperties": False,
                        },
                        "the problems; empty when sound",
                    ),
                    **_errors(),
                },
            }
        },
        "/schema": {"get": {"operationId": "getSchema", "summary": "The store's job schema.", "responses": {"200": _json({"type": "object"}, "the JSON Schema"), **_errors()}}},
        "/events": {
            "get": {
                "operationId": "followEvents",
                "summary": "Server-Sent Events: one `job` event (id, status, progress) per job changed, deleted ones with status `deleted`.",
                "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_errors(store=False)},
            }
        },
        "/static/{name}": {
            "get": {
                "operationId": "getDashboardFile",
                "summary": "A file of the dashboard's, shipped in the package: dashboard.css or dashboard.js.",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}}],
                "responses": {
                    "200": {"description": "the file", "content": {"text/css": {"schema": {"type": "string"}}, "text/javascript": {"schema": {"type": "string"}}}},
                    **_errors(404, store=False, words={404: "no such file"}),
                },
            }
        },
    }
    for name, (summary, properties, required) in job_actions.items():
        paths[f"/jobs/{{job_id}}/{name}"] = {
            "parameters": [_ID_PARAMETER],
            "post": {
                "operationId": f"{name}Job",
                "summary": summary,
                "requestBody": _body(properties, required),
                "responses": {"200": _json(_ref("Job"), "the job as it is now"), **_errors(400, 404, 409)},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobstore", "version": __version__, "description": "A store's jobs as HTTP resources."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
    }
