"""The api.job functions: names, signatures and behaviour as documented."""

from __future__ import annotations

import datetime
import inspect
import json
import typing
import uuid

import pytest

import jobstore.api
from jobstore import InvalidArgumentError, InvalidJobError, InvalidStateError, JobNotFoundError, JobStore
from jobstore.api import job

from conftest import without_times

FIELDS = {"id", "name", "user", "request", "result", "status", "messages", "createdAt", "updatedAt", "history"}


def test_create_job_returns_the_stored_pending_document(api):
    created = api.createJob("resize", "ann", "cat.png", "")
    assert set(created) == FIELDS
    assert uuid.UUID(created["id"]).version == 4
    assert created["createdAt"] == created["updatedAt"]
    assert without_times(created) == {
        "id": created["id"],
        "name": "resize",
        "user": "ann",
        "request": "cat.png",
        "result": "",
        "status": "pending",
        "messages": "",
    }
    assert api.getJob(created["id"]) == created
    assert api.getPendingJobs() == [created]


def test_create_job_gives_each_job_its_own_id(api):
    ids = {api.createJob("n", "u", "r", "")["id"] for _ in range(20)}
    assert len(ids) == 20


def test_get_job_looks_only_in_the_named_state(api):
    created = api.createJob("n", "u", "r", "")
    assert api.getJob(created["id"], "running") is None
    api.setJobRunning(created["id"], {})
    assert api.getJob(created["id"]) is None
    assert api.getJob(created["id"], "running")["status"] == "running"


def test_get_job_of_an_unknown_id_is_none(api):
    assert api.getJob("no-such-job") is None


@pytest.mark.parametrize("state", ["bogus", "Pending", "", None, 3])
def test_an_unknown_state_raises_invalid_state_error(api, state):
    with pytest.raises(InvalidStateError, match="unknown job state") as caught:
        api.getJob("x", state)
    assert isinstance(caught.value, ValueError)
    assert caught.value.state == state


def test_find_job_names_the_table_that_holds_it(api):
    created = api.createJob("n", "u", "r", "")
    assert api.findJob(created["id"]) == (created, "pending")
    api.setJob(created["id"], {}, "error")
    job_found, state = api.findJob(created["id"])
    assert (job_found["status"], state) == ("error", "error")
    assert type(state) is str


def test_find_job_of_an_unknown_id_is_none_none(api):
    assert api.findJob("missing") == (None, None)


def test_set_job_moves_the_job_and_merges_data(api):
    created = api.createJob("n", "u", "r", "")
    moved = api.setJob(created["id"], {"messages": "half way"}, "running")
    assert without_times(moved) == without_times({**created, "status": "running", "messages": "half way"})
    assert moved["createdAt"] == created["createdAt"] and moved["updatedAt"] > created["updatedAt"]
    assert api.getPendingJobs() == []
    assert api.getRunningJobs() == [moved]


def test_set_job_creates_a_missing_job_with_defaults(api):
    made = api.setJob("job-1", {"name": "made"}, "idle")
    assert without_times(made) == {
        "id": "job-1",
        "name": "made",
        "user": "",
        "request": "",
        "result": "",
        "status": "idle",
        "messages": "",
    }
    assert api.getIdleJobs() == [made]


def test_set_job_defaults_to_pending(api):
    assert api.setJob("j", {})["status"] == "pending"
    assert api.getJob("j")["status"] == "pending"


def test_set_job_accepts_an_int_id_and_stores_its_string(api):
    made = api.setJob(42, {"name": "answer"})
    assert made["id"] == "42"
    assert api.getJob("42") == made
    assert api.getJob(42) == made


def test_set_job_status_always_follows_the_state(api):
    created = api.createJob("n", "u", "r", "")
    fetched = api.getJob(created["id"])
    assert api.setJob(created["id"], fetched, "running")["status"] == "running"


def test_set_job_refuses_data_naming_another_job(api):
    created = api.createJob("n", "u", "r", "")
    with pytest.raises(InvalidJobError, match="'id'.*another job"):
        api.setJob(created["id"], {"id": "other"}, "running")
    assert api.getJob(created["id"]) == created


@pytest.mark.parametrize(("job_id", "given"), [(7, 7), (7, "7"), ("7", 7)])
def test_set_job_takes_an_int_id_in_data_equal_to_the_job_id_as_the_same_job(api, job_id, given):
    made = api.setJob(job_id, {"id": given, "name": "seven"})
    assert made["id"] == "7" and made["name"] == "seven"
    assert api.setJob(job_id, {"id": given}, "running")["id"] == "7"
    assert [j["id"] for j in api.getJobs()] == ["7"]


@pytest.mark.parametrize("other", [8, "8", True, 7.0])
def test_set_job_with_an_int_id_still_refuses_data_naming_another_job(api, other):
    api.setJob(7, {"name": "seven"})
    with pytest.raises(InvalidJobError, match=r"invalid job '7': field 'id': the data names another job"):
        api.setJob(7, {"id": other})
    assert api.getJob(7)["name"] == "seven"


def test_set_job_within_a_state_keeps_its_place(api):
    first = api.createJob("first", "u", "r", "")
    second = api.createJob("second", "u", "r", "")
    api.setJobPending(first["id"], {"messages": "touched"})
    assert [j["name"] for j in api.getPendingJobs()] == ["first", "second"]
    assert api.getJob(second["id"]) == second


@pytest.mark.parametrize(
    ("function", "state"),
    [("setJobPending", "pending"), ("setJobRunning", "running"), ("setJobFinished", "finished")],
)
def test_set_job_state_shortcuts(api, function, state):
    made = getattr(api, function)("j", {"user": "bob"})
    assert made["status"] == state
    assert api.findJob("j") == (made, state)


def test_update_job_result_finishes_the_job(api):
    created = api.createJob("n", "u", "r", "")
    api.setJobRunning(created["id"], {"messages": "working"})
    assert api.updateJobResult(created["id"], "42") is None
    finished = api.getJobResults(created["id"])
    assert without_times(finished) == without_times(
        {**created, "result": "42", "status": "finished", "messages": "working"}
    )
    assert api.getRunningJobs() == []


def test_update_job_result_starts_from_the_input_job(api):
    created = api.createJob("n", "u", "r", "")
    api.updateJobResult(created["id"], "done", {**created, "messages": "from input"})
    assert api.getJobResults(created["id"])["messages"] == "from input"
    assert api.getPendingJobs() == []


def test_update_job_result_with_input_job_of_an_unstored_job_stores_it(api):
    api.updateJobResult("fresh", "done", {"name": "given"})
    assert api.findJob("fresh")[0]["name"] == "given"


def test_update_job_result_of_a_missing_job_raises_job_not_found(api):
    with pytest.raises(JobNotFoundError, match="no job with id 'ghost'") as caught:
        api.updateJobResult("ghost", "x")
    assert isinstance(caught.value, KeyError)
    assert api.getJobs() == []


@pytest.mark.parametrize(
    "data",
    [{"answer": 42, "parts": [1, 2.5]}, [1, "two", None], 42, 1.5, True, False, None, {}, []],
    ids=repr,
)
def test_update_job_result_stores_any_other_json_value_as_its_indented_text(api, data):
    created = api.createJob("n", "u", "r", "")
    api.updateJobResult(created["id"], data)
    result = api.getJobResults(created["id"])["result"]
    assert result == json.dumps(data, indent=4)
    assert json.loads(result) == data


def test_update_job_result_stores_a_string_as_given(api):
    created = api.createJob("n", "u", "r", "")
    api.updateJobResult(created["id"], '{"already": "json"}')
    assert api.getJobResults(created["id"])["result"] == '{"already": "json"}'


@pytest.mark.parametrize("data", [{1, 2}, object(), float("nan"), float("inf"), [float("-inf")], {"when": datetime.date(2026, 1, 1)}, b"bytes"], ids=repr)
def test_update_job_result_refuses_a_value_json_cannot_hold_and_changes_nothing(api, data):
    created = api.createJob("n", "u", "r", "")
    with pytest.raises(InvalidJobError, match=r"field 'result': a result is a string or a JSON value") as caught:
        api.updateJobResult(created["id"], data)
    assert caught.value.fields == ("result",)
    assert api.getJob(created["id"]) == created
    assert api.getFinishedJobs() == []


def test_update_job_result_of_a_missing_job_with_a_json_value_raises_job_not_found(api):
    with pytest.raises(JobNotFoundError, match="no job with id 'ghost'"):
        api.updateJobResult("ghost", {"a": 1})
    assert api.getJobs() == []


def test_update_job_result_takes_any_result_in_its_hints():
    assert typing.get_type_hints(job.updateJobResult)["data"] is typing.Any


def test_delete_job_removes_it_from_any_state(api):
    created = api.createJob("n", "u", "r", "")
    api.setJobRunning(created["id"], {})
    api.deleteJob(created["id"])
    assert api.findJob(created["id"]) == (None, None)
    assert api.getJobs() == []


def test_delete_job_of_a_missing_id_is_not_an_error(api):
    assert api.deleteJob("never-was") is None


def test_state_lists_keep_the_order_jobs_entered_the_state(api):
    a, b, c = (api.createJob(name, "u", "r", "") for name in "abc")
    api.setJobRunning(c["id"], {})
    api.setJobRunning(a["id"], {})
    assert [j["name"] for j in api.getRunningJobs()] == ["c", "a"]
    api.setJobPending(c["id"], {})
    assert [j["name"] for j in api.getPendingJobs()] == ["b", "c"]


def test_get_jobs_returns_every_job_state_by_state(api):
    api.setJob("e", {}, "error")
    api.setJob("i", {}, "idle")
    api.setJob("f", {}, "finished")
    api.setJob("p", {}, "pending")
    api.setJob("r", {}, "running")
    assert [j["id"] for j in api.getJobs()] == ["i", "p", "r", "f", "e"]
    assert [j["id"] for j in api.getIdleJobs()] == ["i"]
    assert [j["id"] for j in api.getErrorJobs()] == ["e"]
    assert [j["id"] for j in api.getFinishedJobs()] == ["f"]


def test_get_job_results_is_none_until_finished(api):
    created = api.createJob("n", "u", "r", "")
    assert api.getJobResults(created["id"]) is None
    assert api.getJobResults("missing") is None


def test_returned_documents_are_copies(api):
    created = api.createJob("n", "u", "r", "")
    created["name"] = "changed"
    fetched = api.getJob(created["id"])
    fetched["name"] = "changed too"
    api.getPendingJobs()[0]["name"] = "and this"
    api.findJob(created["id"])[0]["name"] = "and that"
    assert api.getJob(created["id"])["name"] == "n"


def test_data_passed_in_is_copied_too(api):
    data = {"name": "kept"}
    api.setJob("j", data)
    data["name"] = "changed after the call"
    assert api.getJob("j")["name"] == "kept"


def test_get_job_schema_prints_the_documented_field_table_and_nothing_more(api):
    plain = {"type": "string", "required": False, "unique": False, "default": "", "options": []}
    table = api.getJobSchema()
    assert list(table) == ["id", "name", "user", "request", "result", "status", "messages"]
    assert table == {
        "id": {"type": "string", "required": True, "unique": True, "default": "", "options": []},
        "name": plain,
        "user": plain,
        "request": plain,
        "result": plain,
        "status": {
            "type": "string",
            "required": False,
            "unique": False,
            "default": "idle",
            "options": ["idle", "pending", "running", "finished", "error"],
        },
        "messages": plain,
    }


def test_use_store_accepts_a_path_or_a_store(tmp_path):
    try:
        by_path = job.useStore(tmp_path / "a")
        assert isinstance(by_path, JobStore) and by_path.path == tmp_path / "a"
        job.createJob("in a", "u", "r", "")
        given = JobStore(tmp_path / "b")
        assert job.useStore(given) is given
        assert job.getJobs() == []
        assert [j["name"] for j in JobStore(tmp_path / "a").get_jobs()] == ["in a"]
    finally:
        job.useStore(None)


def test_the_default_store_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBSTORE_PATH", str(tmp_path / "from-env"))
    job.useStore(None)
    created = job.createJob("env", "u", "r", "")
    assert JobStore(tmp_path / "from-env").find_job(created["id"])[0] == created


def test_without_environment_the_default_store_is_jobstore_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("JOBSTORE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    job.useStore(None)
    created = job.createJob("cwd", "u", "r", "")
    assert JobStore(tmp_path / "jobstore").find_job(created["id"])[0] == created


def test_every_job_function_is_importable_from_the_api_package():
    from jobstore.api import createJob, getJobSchema, job as module, releaseJob, useStore  # noqa: F401

    assert module is job and createJob is job.createJob and useStore is job.useStore
    assert jobstore.api.__all__ == sorted(jobstore.api.__all__)
    assert set(job.__all__) <= set(jobstore.api.__all__)
    for name in job.__all__:
        assert getattr(jobstore.api, name) is getattr(job, name)


def test_star_import_from_the_api_package_gives_every_job_function():
    namespace: dict = {}
    exec("from jobstore.api import *", namespace)
    assert set(job.__all__) <= set(namespace)


def test_release_job_hands_a_running_job_back_to_pending(api):
    assert list(inspect.signature(api.releaseJob).parameters) == ["jobId", "reason"]
    created = api.createJob("n", "u", "r", "")
    claimed = api.claimJob("w1")
    assert claimed["id"] == created["id"] and claimed["attempts"] == 1
    released = api.releaseJob(created["id"], "shutting down")
    assert released["status"] == "pending"
    assert released["attempts"] == 0
    assert "worker" not in released
    assert released["messages"].endswith("shutting down; back in the queue")
    assert api.findJob(created["id"]) == (released, "pending")
    assert api.getRunningJobs() == []


@pytest.mark.parametrize(
    ("call", "pattern", "argument"),
    [
        (lambda api: api.purgeJobs("finished"), r"^olderThan must be .* when keepLast is None, not None$", "olderThan"),
        (lambda api: api.purgeJobs("finished", olderThan=-1), r"^olderThan must be a non-negative number of seconds or a timedelta, not -1$", "olderThan"),
        (lambda api: api.purgeJobs("finished", keepLast=-1), r"^keepLast must be an int of at least 0, not -1$", "keepLast"),
        (lambda api: api.purgeJobs("finished", None, "keep_last"), r"^keepLast must be an int of at least 0, not 'keep_last'$", "keepLast"),
        (lambda api: api.claimJob(lease=0), r"^lease must be a positive number of seconds, not 0$", "lease"),
        (lambda api: api.useStore(""), r"^pathOrStore must be a directory path or a postgresql:// URL, not ''$", "pathOrStore"),
    ],
)
def test_argument_errors_name_the_camel_case_arguments(api, call, pattern, argument):
    with pytest.raises(InvalidArgumentError, match=pattern) as caught:
        call(api)
    assert caught.value.argument == argument
    assert "_" not in str(caught.value).split(", not ")[0]


def test_job_errors_name_the_camel_case_arguments(api):
    with pytest.raises(InvalidJobError, match=r"^invalid job 'j': inputJob must be a dict of job fields, not list$") as caught:
        api.updateJobResult("j", "done", ["not", "a", "dict"])
    assert caught.value.problems == ((None, "inputJob must be a dict of job fields, not list"),)


def test_the_core_keeps_its_own_argument_names(store):
    with pytest.raises(InvalidArgumentError, match=r"^older_than must be .* when keep_last is None") as caught:
        store.purge_jobs("finished")
    assert caught.value.argument == "older_than"
    with pytest.raises(InvalidJobError, match="input_job must be a dict"):
        store.update_job_result("j", "done", ["x"])


def test_create_job_takes_the_scheduling_fields_as_camel_case_keywords(api):
    needed = api.createJob("first", "u", "r", "")
    made = api.createJob(
        "n", "u", "r", "", delay=60, priority=3, maxRetries=2, retryBackoff=5, dependsOn=[needed["id"]], key="k"
    )
    assert (made["priority"], made["maxRetries"], made["retryBackoff"], made["dependsOn"], made["key"]) == (3, 2, 5, [needed["id"]], "k")
    assert "runAt" in made
    assert api.createJob("again", "u", "r", "", key="k")["id"] == made["id"]
    with pytest.raises(InvalidJobError, match="field 'maxRetries'"):
        api.createJob("n", "u", "r", "", maxRetries=-1)


def test_fail_job_without_retry_ends_a_job_that_has_retries_left(api):
    made = api.createJob("n", "u", "r", "", maxRetries=3)
    api.claimJob("w")
    assert api.failJob(made["id"], "broken", retry=False)["status"] == "error"
