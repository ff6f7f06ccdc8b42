"""The service's OpenAPI 3.1 document, its job schema taken from the store's (never a second copy)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .._status import STATES
from .._version import __version__

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


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "an invalid job or argument; `fields` names the job fields at fault",
        401: "no token, or a wrong one",
        403: "a write from a page of another site",
        404: "no such job",
        409: "the job is not in a state the operation fits",
        413: "the request body is over the limit",
        503: "the store cannot serve now: its lock is held too long, its disk refuses, or a file is damaged",
    }
    return {str(status): _json(_ref("Error"), words[status]) for status in (401, 503, *statuses)}


def _body(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


_SECONDS = {"type": "number", "minimum": 0}
_WORKER = {"type": "string", "minLength": 1}
_ID_PARAMETER = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def openapi_document(job_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the OpenAPI document of the service whose store checks jobs against ``job_schema``."""
    job = _moved({key: value for key, value in copy.deepcopy(dict(job_schema)).items() if key not in ("$schema", "$id")}, _JOB)
    fields = job.get("properties", {})
    spec = {
        "type": "object",
        "description": "The fields of a new job: any field of the job schema but id and status.",
        "properties": {name: {"$ref": f"{_JOB}/properties/{name}"} for name in fields if name not in ("id", "status")},
        "additionalProperties": False,
    }
    nullable_time = {"type": ["string", "null"]}
    schemas = {
        "Job": job,
        "JobSpec": spec,
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "fields": {"type": "array", "items": {"type": "string"}}},
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
                "progress": {"oneOf": [{"$ref": f"{_JOB}/properties/progress"}, {"type": "null"}]},
                "startedAt": nullable_time,
                "finishedAt": nullable_time,
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
        },
    }
    job_actions: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
        "cancel": ("Cancel the job: a waiting one ends canceled, a running one is asked to stop.", {}, ()),
        "retry": ("Run an ended job again: back to pending, its history kept.", {}, ()),
        "heartbeat": ("Renew a running job's lease; the answer tells its worker whether to stop (cancelRequested).", {"lease": {**_SECONDS, "exclusiveMinimum": 0}, "worker": _WORKER}, ()),
        "progress": ("Record how far a running job has got.", {"completed": {"type": "integer", "minimum": 0}, "total": {"type": ["integer", "null"], "minimum": 0}}, ("completed",)),
        "messages": ("Add a line to a running job's messages.", {"text": {"type": "string"}}, ("text",)),
        "result": ("Store the job's result and finish it: a string as given, any other JSON value as its indented JSON text.", {"result": {}, "inputJob": {"type": "object"}}, ("result",)),
        "fail": ("Move a job that has not ended to error, adding the message.", {"message": {"type": "string"}}, ()),
        "release": ("Hand a running job back to pending, its claim not counted as an attempt.", {"reason": {"type": "string"}, "worker": _WORKER}, ()),
    }
    paths: dict[str, Any] = {
        "/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "A page of jobs, filtered by state, name and user together, newest or oldest first.",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": [state.value for state in STATES]}},
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                    {"name": "user", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "The next of the page before."},
                    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["newest", "oldest"], "default": "newest"}},
                ],
                "responses": {"200": _json(_ref("Page"), "the page; next is the cursor of the page after, null on the last"), **_errors(400)},
            },
            "post": {
                "operationId": "submitJobs",
                "summary": "Submit one job (an object) or many (an array, all or none); each starts pending.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [_ref("JobSpec"), {"type": "array", "items": _ref("JobSpec")}]}}}},
                "responses": {
                    "201": _json({"oneOf": [_ref("Job"), {"type": "object", "properties": {"jobs": {"type": "array", "items": _ref("Job")}}, "required": ["jobs"]}]}, "the job, or {jobs: [...]} for an array"),
                    **_errors(400, 403, 413),
                },
            },
        },
        "/jobs/{job_id}": {
            "parameters": [_ID_PARAMETER],
            "get": {
                "operationId": "getJob",
                "summary": "The job; ?f=html (or a browser's Accept) its page, ?f=pjson indented.",
                "parameters": [{"name": "f", "in": "query", "schema": {"type": "string", "enum": ["json", "pjson", "html"]}}],
                "responses": {
                    "200": {"description": "the job", "content": {"application/json": {"schema": _ref("Job")}, "text/html": {"schema": {"type": "string"}}}},
                    **_errors(400, 404),
                },
            },
            "put": {
                "operationId": "setJob",
                "summary": "Put the job in a state with the data merged into it, making it when no table holds it (api.job's setJob).",
                "requestBody": _body({"data": {"type": ["object", "null"]}, "state": {"$ref": f"{_JOB}/properties/status"}}),
                "responses": {"200": _json(_ref("Job"), "the job as stored"), **_errors(400, 403, 413)},
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Delete the job; its data is gone from the disk once this answers.",
                "responses": {
                    "200": _json({"type": "object", "properties": {"id": {"type": "string"}, "deleted": {"const": True}}, "required": ["id", "deleted"]}, "deleted"),
                    **_errors(403, 404),
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
                "summary": "Claim the job that has waited longest, for this worker alone (204 when none waits).",
                "requestBody": _body({"worker": _WORKER, "lease": {**_SECONDS, "exclusiveMinimum": 0}, "wait": {**_SECONDS, "maximum": 300}}),
                "responses": {"200": _json(_ref("Job"), "the job, now running"), "204": {"description": "no job waits"}, **_errors(400, 403, 413)},
            }
        },
        "/stats": {"get": {"operationId": "getStats", "summary": "The count per state and the other figures of `jobstore stats`.", "responses": {"200": _json(_ref("Stats"), "the figures")}}},
        "/purge": {
            "post": {
                "operationId": "purgeJobs",
                "summary": "Remove old jobs of a history state, by age (seconds), by count, or both.",
                "requestBody": _body({"state": {"enum": ["finished", "error"]}, "olderThan": _SECONDS, "keepLast": {"type": "integer", "minimum": 0}}, ("state",)),
                "responses": {"200": _json({"type": "object", "properties": {"removed": {"type": "integer"}}, "required": ["removed"]}, "how many went"), **_errors(400, 403, 413)},
            }
        },
        "/requeue-expired": {
            "post": {
                "operationId": "requeueExpiredJobs",
                "summary": "Recover running jobs whose lease lapsed.",
                "responses": {"200": _json({"type": "object", "properties": {"requeued": {"type": "array", "items": {"type": "string"}}}, "required": ["requeued"]}, "their ids"), **_errors(400, 403, 413)},
            }
        },
        "/problems": {
            "get": {
                "operationId": "checkStore",
                "summary": "Every problem of the store's files, as `jobstore validate` lists them.",
                "responses": {"200": _json({"type": "object", "properties": {"problems": {"type": "array", "items": {"type": "object"}}}, "required": ["problems"]}, "the problems; empty when sound")},
            }
        },
        "/schema": {"get": {"operationId": "getSchema", "summary": "The store's job schema.", "responses": {"200": _json({"type": "object"}, "the JSON Schema")}}},
        "/events": {
            "get": {
                "operationId": "followEvents",
                "summary": "Server-Sent Events: one `job` event (id, status, progress) per job changed, deleted ones with status `deleted`.",
                "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
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
                "responses": {"200": _json(_ref("Job"), "the job as it is now"), **_errors(400, 403, 404, 409, 413)},
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobstore", "version": __version__, "description": "A store's jobs as HTTP resources."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
    }
