"""The job service over real HTTP: each resource, each error's status and body, long-polls and events."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from jobstore import JobStore

from conftest import Service


def test_the_index_links_the_resources(service):
    answer = httpx.get(service.url + "/")
    assert answer.status_code == 200
    assert set(answer.json()["links"]) == {"jobs", "stats", "events", "activity", "openapi"}


def test_a_job_is_a_resource_in_json_pjson_and_html(service, store):
    job = store.create_job("resize", "ann", "cat.png", "")
    url = f"{service.url}/jobs/{job['id']}"
    assert httpx.get(url).json() == job
    indented = httpx.get(url, params={"f": "pjson"})
    assert indented.text == json.dumps(job, ensure_ascii=False, indent=2)
    page = httpx.get(url, params={"f": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>job " + job["id"] in page.text and "cat.png" in page.text
    browser = httpx.get(url, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html")
    assert httpx.get(url, headers={"Accept": "application/json, text/html"}).json() == job


def test_the_page_shows_every_field_as_text(service, store):
    hostile = "<script>alert(1)</script>"
    job = store.create_job(hostile, "<img src=x onerror=alert(1)>", "&amp;", "")
    store.claim_job("w")
    store.set_job_progress(job["id"], 2, 5)
    store.append_job_message(job["id"], "</pre><b>bold</b>")
    page = httpx.get(f"{service.url}/jobs/{job['id']}?f=html").text
    for raw in (hostile, "<img src=x", "</pre><b>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;" in page
    assert '<progress max="5" value="2">' in page and "2 of 5" in page


def test_status_is_the_short_form_with_an_estimate(service, store):
    job = store.create_job("j", "u", "r", "")
    store.claim_job("w")
    time.sleep(0.2)
    store.set_job_progress(job["id"], 1, 4)
    short = httpx.get(f"{service.url}/jobs/{job['id']}/status").json()
    assert set(short) == {"id", "status", "progress", "startedAt", "finishedAt", "estimatedSecondsLeft", "cancelRequested", "canceled"}
    assert short["status"] == "running" and short["progress"] == {"completed": 1, "total": 4}
    # one step of four took at least 0.2 s: three more take at least 0.6 s at that pace
    assert short["estimatedSecondsLeft"] >= 0.6
    store.update_job_result(job["id"], "done")
    ended = httpx.get(f"{service.url}/jobs/{job['id']}/status").json()
    assert ended["estimatedSecondsLeft"] is None and ended["finishedAt"] is not None


def test_history_lists_the_transitions(service, store):
    job = store.create_job("j", "u", "r", "")
    store.claim_job("w")
    store.fail_job(job["id"], "broke")
    answer = httpx.get(f"{service.url}/jobs/{job['id']}/history").json()
    assert [entry["status"] for entry in answer["history"]] == ["pending", "running", "error"]


def test_the_list_filters_state_name_and_user_together_and_pages_by_cursor(service, store):
    for n in range(7):
        store.create_job("resize" if n % 2 else "thumb", "ann" if n < 4 else "bob", str(n), "")
        time.sleep(0.002)  # distinct creation times, so the order is the submission order
    store.claim_job("w")  # the first job, a thumb of ann's
    url = service.url + "/jobs"
    both = httpx.get(url, params={"name": "resize", "user": "ann"}).json()
    assert [job["request"] for job in both["jobs"]] == ["3", "1"]  # newest first by default
    pending_thumbs = httpx.get(url, params={"name": "thumb", "state": "pending", "order": "oldest"}).json()
    assert [job["request"] for job in pending_thumbs["jobs"]] == ["2", "4", "6"]
    seen, cursor = [], None
    while True:
        page = httpx.get(url, params={"limit": 3, "order": "oldest", **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["jobs"]) <= 3
        seen += [job["request"] for job in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [str(n) for n in range(7)]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"state": "paused"}, "unknown job state 'paused'"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"order": "sideways"}, "order must be newest or oldest"),
        ({"cursor": "!!"}, "cursor must be a cursor"),
    ],
)
def test_a_bad_query_is_400_naming_it(service, query, words):
    answer = httpx.get(service.url + "/jobs", params=query)
    assert answer.status_code == 400
    assert words in answer.json()["detail"]


def test_submitting_one_or_many_jobs(service):
    one = httpx.post(service.url + "/jobs", json={"name": "a", "request": "r"})
    assert one.status_code == 201 and one.json()["status"] == "pending"
    many = httpx.post(service.url + "/jobs", json=[{"name": "b"}, {"name": "c"}])
    assert many.status_code == 201 and [job["name"] for job in many.json()["jobs"]] == ["b", "c"]
    refused = httpx.post(service.url + "/jobs", json=[{"name": "d"}, {"nme": "typo"}])
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "InvalidJobError" and body["fields"] == ["nme"] and "#1" in body["detail"]
    assert [job["name"] for job in JobStore(service.root).get_jobs()] == ["a", "b", "c"]  # all or none


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("get", "/jobs/nobody", None, 404, "JobNotFoundError"),
        ("delete", "/jobs/nobody", None, 404, "JobNotFoundError"),
        ("post", "/jobs/{id}/retry", {}, 409, "JobStateError"),
        ("post", "/jobs/{id}/progress", {"completed": 5, "total": 2}, 400, "InvalidJobError"),
        ("post", "/jobs/{id}/heartbeat", {"lease": -1}, 400, "InvalidArgumentError"),
        ("post", "/jobs/{id}/heartbeat", {"leese": 3}, 400, "InvalidArgumentError"),
        ("post", "/claims", {"lease": "soon"}, 400, "InvalidArgumentError"),
        ("post", "/jobs/{id}/messages", {}, 400, "InvalidArgumentError"),
        ("get", "/jobs/{id}/wait?timeout=-1", None, 400, "InvalidArgumentError"),
        ("get", "/no/such/place", None, 404, "NotFound"),
        ("patch", "/jobs", None, 405, "MethodNotAllowed"),
    ],
)
def test_each_error_is_its_status_and_a_json_body(service, store, method, path, body, status, error):
    job = store.create_job("j", "u", "r", "")
    answer = httpx.request(method, service.url + path.replace("{id}", job["id"]), json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == error and answer.json()["detail"]
    assert "Traceback" not in answer.text


def test_a_body_that_is_not_json_is_400(service):
    answer = httpx.post(service.url + "/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "body must be JSON" in answer.json()["detail"]


def test_a_body_over_the_limit_is_413_unread(root):
    service = Service(root, "--max-body", "1000")
    try:
        small = httpx.post(service.url + "/jobs", json={"name": "x" * 100})
        assert small.status_code == 201
        large = httpx.post(service.url + "/jobs", json={"name": "x" * 2000})
        assert large.status_code == 413 and "over the limit of 1000 bytes" in large.json()["detail"]

        def chunks():  # no Content-Length: the service counts as it reads, and stops past the limit
            for _ in range(100):
                yield b"x" * 100

        streamed = httpx.post(service.url + "/jobs", content=chunks())
        assert streamed.status_code == 413
        assert [job["name"] for job in JobStore(root).get_jobs()] == ["x" * 100]
    finally:
        service.stop()


def test_an_id_with_path_characters_stays_an_id(service, store, tmp_path):
    (tmp_path / "secret.json").write_text("{}")
    for job_id in ("..%2F..%2Fsecret.json", "%2E%2E", "a%00b"):
        answer = httpx.get(f"{service.url}/jobs/{job_id}")
        assert answer.status_code == 404, answer.text
    # A slash in an id, even encoded, ends the id: such a URL names no job resource.
    assert httpx.put(f"{service.url}/jobs/..%2Fescape", json={"state": "idle"}).status_code == 404
    made = httpx.put(f"{service.url}/jobs/%2E%2E", json={"state": "idle"})
    assert made.status_code == 200 and made.json()["id"] == ".."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.json", "store"]
    assert JobStore(service.root).find_job("..")[1] == "idle"


def test_worker_operations_follow_the_library_rules(service, store):
    store.create_job("j", "u", "r", "")
    claimed = httpx.post(service.url + "/claims", json={"worker": "remote-1", "lease": 30})
    assert claimed.status_code == 200 and claimed.json()["worker"] == "remote-1"
    job_id = claimed.json()["id"]
    base = f"{service.url}/jobs/{job_id}"
    assert not httpx.post(base + "/heartbeat", json={"worker": "remote-1"}).json().get("cancelRequested")
    other = httpx.post(base + "/heartbeat", json={"worker": "remote-2"})
    assert other.status_code == 409 and "remote-1" in other.json()["detail"]
    assert httpx.post(base + "/progress", json={"completed": 1, "total": 2}).json()["progress"] == {"completed": 1, "total": 2}
    assert httpx.post(base + "/messages", json={"text": "half"}).json()["messages"] == "half"
    assert httpx.post(base + "/result", json={"result": {"size": 3}}).json()["result"] == json.dumps({"size": 3}, indent=4)
    assert httpx.post(service.url + "/claims", json={}).status_code == 204
    assert httpx.post(base + "/retry").json()["status"] == "pending"
    assert httpx.post(base + "/cancel").json()["canceled"] is True
    assert httpx.delete(base).json() == {"id": job_id, "deleted": True}
    assert store.find_job(job_id) == (None, None)


def test_stats_gives_the_counts(service, store):
    store.create_job("a", "u", "r", "")
    store.create_job("b", "u", "r", "")
    store.claim_job("w")
    stats = httpx.get(service.url + "/stats").json()
    assert stats == {**stats, **store.stats(), "oldestPendingSeconds": stats["oldestPendingSeconds"]}
    assert (stats["pending"], stats["running"], stats["total"]) == (1, 1, 2)


def test_a_long_poll_wakes_when_a_worker_in_another_process_finishes(service, store):
    job = store.create_job("j", "u", "r", "")
    finish = (
        "import sys, time; from jobstore import JobStore\n"
        "store = JobStore(sys.argv[1]); time.sleep(0.5); store.claim_job('w')\n"
        "print(time.time(), flush=True); store.update_job_result(sys.argv[2], 'done')"
    )
    worker = subprocess.Popen([sys.executable, "-c", finish, str(service.root), job["id"]], stdout=subprocess.PIPE, text=True)
    try:
        answer = httpx.get(f"{service.url}/jobs/{job['id']}/wait", params={"timeout": 20}, timeout=30)
        answered = time.time()
    finally:
        out, _ = worker.communicate(timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "finished"
    assert answered - float(out) < 5  # woken by the finish, not by the 20 s timeout


def test_a_long_poll_that_times_out_is_202_with_the_job_as_it_is(service, store):
    job = store.create_job("j", "u", "r", "")
    started = time.monotonic()
    answer = httpx.get(f"{service.url}/jobs/{job['id']}/wait", params={"timeout": 0.3})
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    assert 0.3 <= time.monotonic() - started < 5
    store.claim_job("w")
    store.update_job_result(job["id"], "done")
    assert httpx.get(f"{service.url}/jobs/{job['id']}/wait", params={"timeout": 5}).status_code == 200


def test_many_waiters_are_woken_by_one_finish_each(service, store):
    jobs = store.create_jobs([{"name": str(n)} for n in range(40)])
    answers: dict[str, int | str] = {}

    def wait(job_id: str) -> None:
        try:
            answers[job_id] = httpx.get(f"{service.url}/jobs/{job_id}/wait", params={"timeout": 30}, timeout=40).status_code
        except httpx.HTTPError as error:  # named in the failure, rather than a key missing
            answers[job_id] = repr(error)

    threads = [threading.Thread(target=wait, args=(job["id"],)) for job in jobs]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    for job in jobs:
        store.set_job_finished(job["id"], {"result": "ok"})
    for thread in threads:
        thread.join(timeout=40)
    assert answers == {job["id"]: 200 for job in jobs}


def test_a_waiter_that_comes_while_the_waiters_are_answered_is_not_told_its_job_is_gone(root):
    from jobstore.server._changes import Changes

    store = JobStore(root)
    first, second = store.create_jobs([{"name": "first"}, {"name": "second"}])
    looking, registered = threading.Event(), threading.Event()
    find_jobs = store.find_jobs

    def held_find_jobs(job_ids):  # holds the answering look open until the second waiter has come
        looking.set()
        registered.wait(10)
        return find_jobs(job_ids)

    async def scenario():
        changes = Changes(store)
        await changes.start()
        try:
            waiting_first = asyncio.ensure_future(changes.wait_for_end(first["id"], 10))
            await asyncio.sleep(0.5)  # its first look is done: it waits for the change
            store.find_jobs = held_find_jobs
            store.set_job_finished(first["id"], {"result": "ok"})
            assert await asyncio.to_thread(looking.wait, 10)
            waiting_second = asyncio.ensure_future(changes.wait_for_end(second["id"], 1))
            await asyncio.sleep(0.1)  # it is registered, and its own look is held with the other
            registered.set()
            assert (await waiting_first)["status"] == "finished"
            with pytest.raises(TimeoutError):  # still pending: not answered as if no table held it
                await waiting_second
        finally:
            await changes.stop()

    asyncio.run(scenario())


def read_events(url: str, count: int, ready: threading.Event, timeout: float = 20) -> list[dict]:
    events: list[dict] = []
    with httpx.stream("GET", url + "/events", timeout=timeout) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith(":"):
                ready.set()
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) >= count:
                    break
    return events


def test_events_tell_each_change_in_order(service, store):
    ready = threading.Event()
    events: list[dict] = []
    reader = threading.Thread(target=lambda: events.extend(read_events(service.url, 4, ready)))
    reader.start()
    assert ready.wait(10)
    time.sleep(0.3)  # the service's first look at the jobs, which later changes are told against
    job = store.create_job("j", "u", "r", "")
    time.sleep(0.2)
    store.claim_job("w")
    time.sleep(0.2)
    store.set_job_progress(job["id"], 1, 2)
    time.sleep(0.2)
    store.delete_job(job["id"])
    reader.join(timeout=20)
    assert [(event["id"], event["status"]) for event in events] == [(job["id"], status) for status in ("pending", "running", "running", "deleted")]
    assert events[2]["progress"] == {"completed": 1, "total": None} or events[2]["progress"] == {"completed": 1, "total": 2}


def test_no_traceback_reaches_a_client_when_the_store_is_damaged(service, store):
    job = store.create_job("j", "u", "r", "")
    store.flush()
    (service.root / "pending.json").write_text('{"pending": {"torn')
    answer = httpx.get(f"{service.url}/jobs/{job['id']}")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "CorruptStoreError" and "Traceback" not in answer.text


def test_a_cursor_stays_good_while_jobs_come_and_go(service, store):
    made = []
    for n in range(6):
        made.append(store.create_job("j", "u", str(n), ""))
        time.sleep(0.002)
    first = httpx.get(service.url + "/jobs", params={"limit": 2}).json()
    assert [job["request"] for job in first["jobs"]] == ["5", "4"]
    store.create_job("j", "u", "new", "")  # newer than every page: never shows up further on
    store.delete_job(made[3]["id"])  # the next page's first job goes: the page starts after it
    second = httpx.get(service.url + "/jobs", params={"limit": 2, "cursor": first["next"]}).json()
    assert [job["request"] for job in second["jobs"]] == ["2", "1"]
    third = httpx.get(service.url + "/jobs", params={"limit": 2, "cursor": second["next"]}).json()
    assert [job["request"] for job in third["jobs"]] == ["0"] and third["next"] is None


def test_a_body_nested_past_reason_is_400_not_a_failure(service):
    answer = httpx.post(service.url + "/jobs", content=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"] == "InvalidArgumentError"


def test_a_job_nested_deep_within_the_limit_is_400(service):
    answer = httpx.post(service.url + "/jobs", content=b'{"request": ' + b"[" * 900 + b"]" * 900 + b"}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("get", "/jobs?limit=%C2%B2", None, "limit must be"),
        ("get", "/jobs?limit=" + "9" * 5000, None, "limit must be"),
        ("get", "/jobs?cursor=" + "WwWw" * 2000, None, "cursor must be"),
        ("post", "/claims", b'{"wait": NaN}', "NaN is not a JSON value"),
        ("post", "/claims", b'{"lease": Infinity}', "Infinity is not a JSON value"),
    ],
)
def test_odd_values_are_400_never_a_failure(service, method, path, body, words):
    answer = httpx.request(method, service.url + path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"]


def test_a_claim_whose_client_went_away_takes_no_job(service, store):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(service.url + "/claims", json={"worker": "ghost", "wait": 20}, timeout=1)
    time.sleep(0.5)
    made = store.create_job("late")
    time.sleep(2.5)  # the abandoned claim looks at least once a second
    job, state = store.find_job(made["id"])
    assert state == "pending" and job.get("worker") != "ghost", job


def test_a_listing_that_failed_is_not_kept(service, store, root):
    # A lock held past the service's wait fails a look; once it is let go, the next look succeeds.
    store.create_job("a")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jobstore import JobStore; s = JobStore(sys.argv[1]); e = s._engine\nwith e._opened(), e._lock.held():\n    print('held', flush=True); time.sleep(12)", str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        store_changed = httpx.get(service.url + "/jobs", timeout=30)
        assert store_changed.status_code == 503 and store_changed.json()["error"] == "StoreLockTimeout"
    finally:
        holder.wait(timeout=30)
    assert httpx.get(service.url + "/jobs", timeout=30).status_code == 200


def test_a_wrong_method_says_which_the_path_takes(service):
    answer = httpx.request("PATCH", service.url + "/jobs")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize("wait", [False, "", [], {}])
def test_a_claim_wait_that_is_no_number_is_400(service, wait):
    answer = httpx.post(service.url + "/claims", json={"wait": wait})
    assert answer.status_code == 400 and "wait must be" in answer.json()["detail"]


def test_a_job_submitted_with_scheduling_fields_keeps_them(service):
    first = httpx.post(service.url + "/jobs", json={"name": "first"}).json()
    body = {"name": "a", "runAt": "2031-01-01T13:00:00+01:00", "priority": 4, "maxRetries": 2, "retryBackoff": 1.5, "dependsOn": [first["id"]], "key": "nightly"}
    answer = httpx.post(service.url + "/jobs", json=body)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert {name: job[name] for name in body} == {**body, "runAt": "2031-01-01T12:00:00.000000Z"}
    assert JobStore(service.root).find_job(job["id"])[0] == job
    before = time.time()
    later = httpx.post(service.url + "/jobs", json={"name": "b", "delay": 600})
    assert later.status_code == 201 and "delay" not in later.json()
    due = datetime.datetime.fromisoformat(later.json()["runAt"].replace("Z", "+00:00")).timestamp()
    assert before + 600 <= due <= time.time() + 600


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"runAt": "soon"}, "runAt"),
        ({"runAt": 5}, "runAt"),
        ({"runAt": "0001-01-01T00:00:00+01:00"}, "runAt"),  # before the year 1 in UTC
        ({"runAt": "2031-01-01T00:00:00Z", "delay": 5}, "runAt"),
        ({"delay": -1}, "delay"),
        ({"delay": "5"}, "delay"),
        ({"delay": 1e12}, "delay"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"maxRetries": -1}, "maxRetries"),
        ({"retryBackoff": 0}, "retryBackoff"),
        ({"dependsOn": "abc"}, "dependsOn"),
        ({"dependsOn": ["nobody"]}, "dependsOn"),
        ({"key": ""}, "key"),
        ({"key": 3}, "key"),
    ],
)
def test_a_bad_scheduling_field_is_400_naming_it(service, fields, field):
    for body, job_ref in (({"name": "j", **fields}, "#0"), ([{"name": "fine"}, {"name": "j", **fields}], "#1")):
        answer = httpx.post(service.url + "/jobs", json=body)
        assert answer.status_code == 400, answer.text
        refusal = answer.json()
        assert refusal["error"] == "InvalidJobError" and refusal["fields"] == [field] and refusal["attributes"]["jobId"] == job_ref
    assert JobStore(service.root).get_jobs() == []


def test_a_time_past_the_calendar_set_by_put_is_400(service):
    answer = httpx.put(service.url + "/jobs/j", json={"state": "pending", "data": {"runAt": "9999-12-31T23:59:59-01:00"}})
    assert answer.status_code == 400 and answer.json()["fields"] == ["runAt"]


def test_a_key_already_held_answers_200_with_its_holder(service):
    url = service.url + "/jobs"
    made = httpx.post(url, json={"name": "nightly", "key": "k"})
    assert made.status_code == 201
    again = httpx.post(url, json={"name": "other", "key": "k"})
    assert again.status_code == 200 and again.json() == made.json()
    held = httpx.post(url, json=[{"key": "k"}, {"key": "k"}])
    assert held.status_code == 200 and [job["id"] for job in held.json()["jobs"]] == [made.json()["id"]] * 2
    mixed = httpx.post(url, json=[{"key": "k"}, {"name": "fresh", "key": "k2"}, {"name": "fresh too", "key": "k2"}])
    assert mixed.status_code == 201
    jobs = mixed.json()["jobs"]
    assert jobs[0]["id"] == made.json()["id"] and jobs[1]["id"] == jobs[2]["id"] != jobs[0]["id"]
    unkeyed = httpx.post(url, json=[{"key": "k"}, {"name": "plain"}])
    assert unkeyed.status_code == 201
    store = JobStore(service.root)
    store.claim_job("w")
    store.update_job_result(made.json()["id"], "done")  # an ended job holds its key no more
    after = httpx.post(url, json={"name": "nightly", "key": "k"})
    assert after.status_code == 201 and after.json()["id"] != made.json()["id"]


def test_of_submissions_racing_with_one_key_one_is_201_the_others_200_with_its_job(service):
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait(10)
        answers.append(httpx.post(service.url + "/jobs", json={"name": "once", "key": "race"}, timeout=30))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(JobStore(service.root).get_jobs()) == 1


def test_fail_retries_a_job_with_retries_left_unless_told_not_to(service, store):
    job = store.create_job("flaky", max_retries=3, retry_backoff=0.05)
    store.claim_job("w")
    url = f"{service.url}/jobs/{job['id']}/fail"
    retried = httpx.post(url, json={"message": "broke", "retry": True})
    assert retried.status_code == 200 and retried.json()["status"] == "pending" and retried.json()["retries"] == 1
    assert store.claim_job("w", wait=10)["id"] == job["id"]
    by_default = httpx.post(url, json={"message": "broke"})
    assert by_default.json()["status"] == "pending" and by_default.json()["retries"] == 2
    assert store.claim_job("w", wait=10)["id"] == job["id"]
    ended = httpx.post(url, json={"message": "gave up", "retry": False})
    assert ended.status_code == 200 and ended.json()["status"] == "error" and ended.json()["retries"] == 2


@pytest.mark.parametrize(("body", "named"), [({"retry": "yes"}, "retry"), ({"retry": 1}, "retry"), ({"retry": None}, "retry"), ({"message": 5}, "messages")])
def test_a_fail_argument_of_the_wrong_type_is_400_naming_it(service, store, body, named):
    job = store.create_job("j")
    store.claim_job("w")
    answer = httpx.post(f"{service.url}/jobs/{job['id']}/fail", json=body)
    assert answer.status_code == 400, answer.text
    refusal = answer.json()
    assert named in (refusal.get("fields") or [refusal["attributes"].get("argument")]), refusal
    assert store.find_job(job["id"])[1] == "running"
