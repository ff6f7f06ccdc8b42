"""The service against its own OpenAPI document: schemathesis sends what the document allows (and what it
does not), and every answer must be one the document describes: no 5xx, only documented statuses and
media types, every body valid against its schema.

Each operation gets ``JOBSTORE_API_EXAMPLES`` generated requests (25 unless set), of each kind, valid and
invalid, beside schemathesis's coverage cases (edges, missing and unexpected values, other methods),
against a real ``jobstore serve`` whose store holds a job in every state.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance

from jobstore.client import JobClient

#: Generated requests per operation and kind (the coverage cases come on top).
EXAMPLES = int(os.environ.get("JOBSTORE_API_EXAMPLES", "25"))

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

#: The operations not run, and why.
EXCLUDED = {
    # An endless stream: it answers its headers, then never ends.
    ("GET", "/events"),
    # A long-poll: on a job not ended it holds the request up to its timeout (30 s unless asked less).
    ("GET", "/jobs/{job_id}/wait"),
}

#: Ids the store takes and a URL can name, though only percent-encoded.
ODD_IDS = {"a job?#%": "pending", "ünï ✓": "finished", "42": "idle"}


def seeded(client: JobClient) -> dict[str, str]:
    """Put jobs in every state, and the variants of a state, into the store; return their ids and states."""

    def made(count: int) -> list[str]:
        return [job["id"] for job in client.create_jobs([{"name": "seed", "user": "ann", "request": "r"}] * count)]

    running, stopping, finished, failed = made(4)
    for expected in (running, stopping, finished, failed):  # claimed oldest first
        claimed = client.claim_job(worker="seeder", lease=600)
        assert claimed is not None and claimed["id"] == expected, claimed
    idle, pending, canceled = made(3)
    client.set_job(idle, state="idle")
    client.set_job_progress(running, 2, 5)
    client.append_job_message(running, "halfway")
    client.cancel_job(stopping)  # running, asked to stop
    client.update_job_result(finished, {"answer": 42})
    client.fail_job(failed, "it broke")
    client.cancel_job(canceled)  # pending: ends in error, canceled
    for job_id, state in ODD_IDS.items():
        client.set_job(job_id, {"name": "seed"}, state=state)
    states = {
        idle: "idle", pending: "pending", running: "running", stopping: "running",
        finished: "finished", failed: "error", canceled: "error", **ODD_IDS,
    }
    for job_id, state in states.items():
        found, status = client.find_job(job_id)
        assert found is not None and status == state, (job_id, status, state)
    return states


@pytest.fixture
def seeds(client: JobClient) -> dict[str, str]:
    """The seeded jobs' ids and states."""
    return seeded(client)


@pytest.fixture
def api_schema(service: Any, seeds: dict[str, str], request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    """The service's document as schemathesis loads it from the service.

    How requests reach real jobs: a dictionary of the seeded ids is bound to the ``job_id`` path
    parameter, so that half the ids drawn are seeded jobs' and the other half anything the document
    allows (or, for invalid requests, does not); the test puts a seeded job back before each request
    for it, and :func:`reached` checks, once the run is over, that each operation on one job did reach one.
    """
    # schemathesis 4 renames the test after each operation through the item's ``_nodeid``, which pytest 9.2
    # no longer has (it keeps ``_id``): give it one to read, so that its runner works; the names it sets are unused.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    config = schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": EXAMPLES, "mode": "all"},
            "dictionaries": {"jobs": {"values": sorted(seeds)}, "files": {"values": ["dashboard.css", "dashboard.js"]}},
            "parameters": {
                "path.job_id": {"dictionary": "jobs", "probability": 0.5},
                "path.name": {"dictionary": "files", "probability": 0.5},
            },
            # Sequences of calls following links: the document has none.
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(service.url + "/openapi.json", config=config)


@pytest.fixture
def reached(api_schema: schemathesis.BaseSchema) -> Iterator[Counter[tuple[str, int]]]:
    """The answers to requests for seeded jobs, by operation and status. Once the run is over, every
    operation on one job must have answered some of them otherwise than 404: it reached a real job."""
    answers: Counter[tuple[str, int]] = Counter()
    yield answers
    per_job = {
        f"{method.upper()} {path}"
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if "{job_id}" in path and method != "parameters" and (method.upper(), path) not in EXCLUDED
    }
    found = {label for label, status in answers if status != 404}
    assert per_job <= found, f"operations that never reached a seeded job: {sorted(per_job - found)}; answers: {dict(answers)}"


schema = schemathesis.pytest.from_fixture("api_schema")
for method, path in EXCLUDED:
    schema = schema.exclude(method=method, path=path)


@schema.parametrize()
def test_every_answer_is_documented(case: schemathesis.Case[Any], client: JobClient, seeds: dict[str, str], reached: Counter[tuple[str, int]]) -> None:
    job_id = (case.path_parameters or {}).get("job_id")
    if job_id in seeds:
        # A seeded job an earlier request deleted, purged or moved is put back as it was seeded, so that
        # each request for one reaches a job that exists, in the state it was drawn for.
        found, status = client.find_job(job_id)
        if found is None or status != seeds[job_id]:
            client.set_job(job_id, state=seeds[job_id])
    wait = case.body.get("wait") if case.operation.path == "/claims" and isinstance(case.body, dict) else None
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 1:
        # A claim waits up to this long for a job when none is pending: one is, so that it answers at once.
        client.create_job("claimable")
    response = case.call(timeout=10)
    if job_id in seeds:
        reached[(case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)
