"""Scheduling with several workers at once: delays, priorities, retries with backoff, leases that
expire, failures that end a job at once, dependencies with their error cascade, and keys.

Each rule is tried with several processes claiming or submitting side by side, each on a
JobStore of its own opened on the store under test; the times the store writes (``startedAt``,
``runAt``, ``finishedAt``) tell afterwards whether the rule held. The inputs each rule refuses
are tried in one process. Every test runs on both engines.
"""

from __future__ import annotations

import datetime
import multiprocessing
import queue
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from jobstore import InvalidArgumentError, InvalidJobError, JobStateError, JobStore
from jobstore._times import parse_time

SPAWN = multiprocessing.get_context("spawn")
#: Seconds a worker process may take over its part before the test gives up on it.
PATIENCE = 30.0
BACKOFF = 0.05


# Worker processes


def _enter(target: Callable[..., Any], location: str, options: dict[str, Any], start: Any, results: Any, index: int, args: tuple) -> None:
    """A worker process: open the store, wait until every process is ready, run the target, send back its result."""
    try:
        opened = JobStore(location, **options)
        start.wait(PATIENCE)
        outcome = target(opened, index, *args)
        opened.close()
        results.put((index, True, outcome))
    except BaseException:
        results.put((index, False, traceback.format_exc()))


def together(store: JobStore, target: Callable[..., Any], count: int, *args: Any, options: dict[str, Any] | None = None, meanwhile: Callable[[], Any] | None = None) -> tuple[list[Any], Any]:
    """Run ``target(store, index, *args)`` in ``count`` processes at once, each on a JobStore of its own
    opened on ``store``'s location with ``options``; return their results by index.

    :param meanwhile: run here once every process has opened its store, as they start
    :returns: the results, and what ``meanwhile`` returned
    """
    start, results = SPAWN.Barrier(count + 1), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_enter, args=(target, store.location, options or {}, start, results, index, args)) for index in range(count)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, Any] = {}
    try:
        start.wait(PATIENCE)
        made = meanwhile() if meanwhile else None
        for _ in processes:
            index, ok, value = results.get(timeout=PATIENCE)
            if not ok:
                pytest.fail(f"worker process {index} failed:\n{value}")
            outcomes[index] = value
    except (threading.BrokenBarrierError, queue.Empty):
        pytest.fail(f"the worker processes did not all answer within {PATIENCE:g} s")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return [outcomes[index] for index in range(count)], made


def _ended(store: JobStore) -> int:
    return len(store.get_finished_jobs()) + len(store.get_error_jobs())


def work(store: JobStore, index: int, total: int, plans: dict[str, list[str]], lease: float | None = None, hold: float = 0.0) -> tuple[list[dict], list[tuple[float, float]]]:
    """Claim jobs until ``total`` jobs have ended, doing for each claim what its job's plan says.

    A plan is one step per attempt, the last repeated: ``finish``, ``fail`` (a failure that may
    be retried), ``fatal`` (``retry=False``) or ``abandon`` (nothing: the lease runs out). A job
    without a plan is finished. ``hold`` seconds pass between a claim and its step.

    :returns: a record per claim (the job claimed, the wall-clock times around the claim and
        before the step, the step, what it returned), and the times around each claim that got none
    """
    claims: list[dict] = []
    empty: list[tuple[float, float]] = []
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        before = time.time()
        claimed = store.claim_job(f"w{index}", lease=lease)
        after = time.time()
        if claimed is None:
            empty.append((before, after))
            if _ended(store) >= total:
                return claims, empty
            time.sleep(0.01)
            continue
        steps = plans.get(claimed["name"], ["finish"])
        step = steps[min(claimed["attempts"], len(steps)) - 1]
        time.sleep(hold)
        acted = time.time()
        if step == "finish":
            outcome = store.update_job_result(claimed["id"], f"done by w{index}")
        elif step == "fail":
            outcome = store.fail_job(claimed["id"], "boom")
        elif step == "fatal":
            outcome = store.fail_job(claimed["id"], "fatal", retry=False)
        else:
            outcome = None
        claims.append({"job": claimed, "before": before, "after": after, "acted": acted, "step": step, "outcome": outcome})
    raise AssertionError(f"w{index}: fewer than {total} jobs ended within {PATIENCE:g} s")


def claims_of(results: list[tuple[list[dict], list]]) -> list[dict]:
    """Every claim the workers made, in the order they were made (by ``startedAt``)."""
    return sorted((claim for claims, _ in results for claim in claims), key=lambda claim: at(claim["job"]["startedAt"]))


def attempts_of(results: list[tuple[list[dict], list]]) -> list[tuple[float, float]]:
    """The wall-clock times around every claim call of the workers, whatever it returned."""
    return [(claim["before"], claim["after"]) for claims, _ in results for claim in claims] + [span for _, empty in results for span in empty]


def claimed_once(claims: list[dict]) -> dict[str, list[dict]]:
    """Check that each attempt of each job went to exactly one claim; return each job's claims, oldest first."""
    counted = Counter((claim["job"]["id"], claim["job"]["attempts"]) for claim in claims)
    assert set(counted.values()) == {1}, [pair for pair, times in counted.items() if times > 1]
    per_job: dict[str, list[dict]] = {}
    for claim in claims:
        per_job.setdefault(claim["job"]["id"], []).append(claim)
    for job_id, mine in per_job.items():
        assert [claim["job"]["attempts"] for claim in mine] == list(range(1, len(mine) + 1)), job_id
    return per_job


def at(text: str) -> datetime.datetime:
    """A time the store wrote."""
    moment = parse_time(text)
    assert moment is not None, text
    return moment


def wall(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


MICROSECOND = datetime.timedelta(microseconds=1)


def states(job: dict) -> list[str]:
    return [entry["status"] for entry in job["history"]]


def final(store: JobStore, job_id: str) -> dict:
    """The job as it is now, in whichever state."""
    found, _ = store.find_job(job_id)
    assert found is not None, job_id
    return found


# Delays and times to run at


def test_no_job_is_claimed_before_its_run_at(store):
    delays = {"soon": 0.4, "later": 0.7}

    def submit() -> tuple[float, float, list[dict], dict[str, datetime.datetime], float]:
        began = time.time()
        jobs = store.create_jobs(
            [{"name": f"now-{n}"} for n in range(3)]
            + [{"name": f"{name}-{n}", "delay": delay} for name, delay in delays.items() for n in range(3)]
            + [{"name": "overdue", "runAt": "2001-01-01T00:00:00Z"}]
        )
        submitted = time.time()
        aware = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.5)
        naive = aware.replace(tzinfo=None)  # naive means UTC
        jobs.append(store.create_job("aware", run_at=aware))
        jobs.append(store.create_job("naive", run_at=naive.isoformat()))
        return began, submitted, jobs, {"aware": aware, "naive": aware}, time.time()  # both meant the same moment

    results, (began, submitted, jobs, given, done) = together(store, work, 3, 12, {}, meanwhile=submit)

    by_name = {job["name"]: job for job in jobs}
    assert {name: at(by_name[name]["runAt"]) for name in given} == given
    assert at(by_name["overdue"]["runAt"]) == datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    for job in jobs:
        prefix = job["name"].split("-")[0]
        if prefix in delays:
            assert wall(began) - MICROSECOND <= at(job["runAt"]) - datetime.timedelta(seconds=delays[prefix]) <= wall(submitted) + MICROSECOND
        elif prefix == "now":
            assert "runAt" not in job

    claims = claims_of(results)
    assert set(claimed_once(claims)) == {job["id"] for job in jobs}
    assert {job["id"] for job in store.get_finished_jobs()} == {job["id"] for job in jobs}
    for claim in claims:
        claimed = claim["job"]
        if "runAt" in claimed:
            assert at(claimed["startedAt"]) >= at(claimed["runAt"]), claimed
    # The claimers had their chance: each delayed job was there, not yet due, while one claimed.
    attempts = attempts_of(results)
    for job in jobs:
        if job["name"].split("-")[0] in (*delays, "aware", "naive"):
            made = submitted if "-" in job["name"] else done
            due = at(job["runAt"]).timestamp()
            assert any(made < start and end < due for start, end in attempts), job["name"]


# Priorities, then the time each job has been due


#: name, priority (None: not given, so 0), seconds since it was due (None: due as it is submitted)
LADDER = [
    ("top-old", 7, 50),
    ("top-new", 7, 10),
    ("top-now", 7, None),
    ("high-old", 3, 40),
    ("high-now", 3, None),
    ("zero-old", None, 60),
    ("zero-mid", 0, 30),
    ("zero-now", None, None),
    ("low-old", -2, 90),
    ("low-now", -2, None),
    ("bottom-old", -9, 5),
    ("bottom-now", -9, None),
]


def test_claims_go_by_priority_then_by_how_long_each_job_has_been_due(store):
    now = datetime.datetime.now(datetime.timezone.utc)
    specs = [
        {"name": name, **({"priority": priority} if priority is not None else {}), **({"runAt": now - datetime.timedelta(seconds=ago)} if ago else {})}
        for name, priority, ago in reversed(LADDER)  # submitted in the reverse of the claim order
    ]
    made = store.create_jobs([*specs, {"name": "future", "priority": 100, "delay": 60}])
    due = [job for job in made if job["name"] != "future"]
    order = sorted(due, key=lambda job: (-job.get("priority", 0), at(job.get("runAt") or job["createdAt"])))
    assert [job["name"] for job in order] == [name for name, _, _ in LADDER]
    rank = {job["id"]: position for position, job in enumerate(order)}

    workers = 3
    results, _ = together(store, work, workers, len(due), {})

    claims = claims_of(results)
    assert set(claimed_once(claims)) == set(rank)
    # The file engine claims one at a time, so the n-th claim is the n-th job in the order. A
    # database claim passes over the jobs other claims are taking that moment (at most one per
    # other worker): the job it takes may come that many places later, never more.
    slack = 0 if store.path is not None else workers - 1
    started = [at(claim["job"]["startedAt"]) for claim in claims]
    for claim in claims:
        earlier = sum(moment < at(claim["job"]["startedAt"]) for moment in started)
        assert rank[claim["job"]["id"]] <= earlier + slack, (claim["job"]["name"], [c["job"]["name"] for c in claims])
    assert [job["name"] for job in store.get_pending_jobs()] == ["future"]  # the highest priority, but not due


# Retries with backoff


def test_a_failed_job_comes_back_only_after_its_backoff_until_its_retries_run_out(store):
    defaults = JobStore(store.location, max_retries=2, retry_backoff=BACKOFF)
    made = defaults.create_jobs([{"name": f"flaky-{n}"} for n in range(3)] + [{"name": f"doomed-{n}"} for n in range(2)])
    made.append(defaults.create_job("once", max_retries=1))
    for job in made[:-1]:
        assert (job["maxRetries"], job["retryBackoff"]) == (2, BACKOFF)  # the store's defaults, written into the job
    assert made[-1]["maxRetries"] == 1
    plans = {**{f"flaky-{n}": ["fail", "fail", "finish"] for n in range(3)}, **{f"doomed-{n}": ["fail"] for n in range(2)}, "once": ["fail"]}

    results, _ = together(store, work, 3, len(made), plans, options={"max_retries": 2, "retry_backoff": BACKOFF})

    per_job = claimed_once(claims_of(results))
    for job in made:
        allowed = job["maxRetries"]
        mine = per_job[job["id"]]
        assert len(mine) == allowed + 1, job["name"]
        for retry, (failed, following) in enumerate(zip(mine, mine[1:]), start=1):
            back = failed["outcome"]
            assert (back["status"], back["retries"]) == ("pending", retry)
            assert f"failed: boom; retry {retry} of {allowed} at {back['runAt']}" in back["messages"].splitlines()
            # The backoff doubles at each retry, with jitter between half and all of it.
            doubled = datetime.timedelta(seconds=BACKOFF * 2 ** (retry - 1))
            assert at(back["runAt"]) >= wall(failed["acted"]) + doubled / 2 - MICROSECOND
            assert at(back["runAt"]) <= at(back["history"][-1]["at"]) + doubled
            assert following["job"]["runAt"] == back["runAt"]
            assert at(following["job"]["startedAt"]) >= at(back["runAt"])
        ended = final(store, job["id"])
        assert ended["retries"] == allowed
        if job["name"].startswith("flaky"):
            assert ended["status"] == "finished"
        else:
            assert ended["status"] == "error"
            assert ended["messages"].splitlines()[-1] == f"boom; no retries left ({allowed} of {allowed} used)"
            assert mine[-1]["outcome"] == ended


# An expired lease counts as a failure


def test_an_expired_lease_is_a_failure_for_a_job_with_retries(store):
    lease = 0.5
    made = store.create_jobs(
        [{"name": f"lost-{n}", "maxRetries": 1, "retryBackoff": BACKOFF} for n in range(2)]
        + [{"name": f"saved-{n}", "maxRetries": 1, "retryBackoff": BACKOFF} for n in range(2)]
        + [{"name": "plain"}]
    )
    plans = {**{f"lost-{n}": ["abandon"] for n in range(2)}, **{f"saved-{n}": ["abandon", "finish"] for n in range(2)}, "plain": ["abandon", "finish"]}

    results, _ = together(store, work, 3, len(made), plans, lease)

    per_job = claimed_once(claims_of(results))
    for job in made:
        first, second = (claim["job"] for claim in per_job[job["id"]])  # two claims each, no third
        why = f"the lease of worker {first['worker']} expired on attempt 1"
        assert at(second["startedAt"]) >= at(first["leaseExpiresAt"])
        ended = final(store, job["id"])
        if job["name"] == "plain":  # no retries: back in the queue at once, as before
            assert f"{why}; back in the queue" in second["messages"].splitlines()
            assert "runAt" not in second and "retries" not in ended
            assert ended["status"] == "finished"
            continue
        assert f"{why}; retry 1 of 1 at {second['runAt']}" in second["messages"].splitlines()
        assert second["retries"] == 1
        # Recovered once the lease had run out, then due only after the backoff.
        assert at(second["runAt"]) >= at(first["leaseExpiresAt"]) + datetime.timedelta(seconds=BACKOFF / 2) - MICROSECOND
        assert at(second["startedAt"]) >= at(second["runAt"])
        if job["name"].startswith("saved"):
            assert (ended["status"], ended["retries"]) == ("finished", 1)
        else:
            assert ended["status"] == "error"
            last = f"the lease of worker {second['worker']} expired on attempt 2; no retries left (1 of 1 used)"
            assert ended["messages"].splitlines()[-1] == last


# A failure without retry


def test_a_failure_without_retry_ends_the_job_at_once_whatever_retries_it_has(store):
    defaults = JobStore(store.location, max_retries=3, retry_backoff=BACKOFF)
    made = defaults.create_jobs([{"name": f"fatal-{n}"} for n in range(4)] + [{"name": f"flaky-{n}"} for n in range(2)])
    plans = {**{f"fatal-{n}": ["fatal"] for n in range(4)}, **{f"flaky-{n}": ["fail", "finish"] for n in range(2)}}

    results, _ = together(store, work, 3, len(made), plans, options={"max_retries": 3, "retry_backoff": BACKOFF})

    per_job = claimed_once(claims_of(results))
    for job in made:
        ended = final(store, job["id"])
        assert ended["maxRetries"] == 3
        if job["name"].startswith("fatal"):
            assert len(per_job[job["id"]]) == 1
            assert per_job[job["id"]][0]["outcome"] == ended
            assert ended["status"] == "error" and ended["messages"] == "fatal"
            assert states(ended) == ["pending", "running", "error"]
            assert "runAt" not in ended and ended.get("retries", 0) == 0
        else:
            assert len(per_job[job["id"]]) == 2
            assert (ended["status"], ended["retries"]) == ("finished", 1)


# Dependencies, and the error cascade


def test_dependents_wait_for_every_dependency_and_fail_with_a_failed_one(store):
    a, b, f = (store.create_job(name) for name in "abf")
    c = store.create_job("c", depends_on=[a["id"], b["id"]])
    e = store.create_job("e", depends_on=[a["id"]])
    d = store.create_job("d", depends_on=[c["id"]])
    j = store.create_job("j", depends_on=[c["id"], e["id"]])
    g = store.create_job("g", depends_on=[f["id"]])
    h = store.create_job("h", depends_on=[g["id"]])
    i = store.create_job("i", depends_on=[f["id"], a["id"]])
    runnable = {job["id"] for job in (a, b, c, d, e, f, j)}

    results, _ = together(store, work, 3, 10, {"f": ["fail"]}, None, 0.1)

    claims = claims_of(results)
    assert set(claimed_once(claims)) == runnable
    for claim in claims:
        for needed in claim["job"].get("dependsOn", []):
            dependency = final(store, needed)
            assert dependency["status"] == "finished"
            assert at(dependency["finishedAt"]) < at(claim["job"]["startedAt"]), (claim["job"]["name"], dependency["name"])
    assert final(store, f["id"])["status"] == "error"
    for job, cause in ((g, f), (h, g), (i, f)):
        ended = final(store, job["id"])
        assert ended["status"] == "error"
        assert ended["messages"] == f"dependency {cause['id']} ended in error"
        assert states(ended) == ["pending", "error"]
        assert "attempts" not in ended and "startedAt" not in ended
    assert {job["id"] for job in store.get_finished_jobs()} == runnable - {f["id"]}


def submit_dependents(store: JobStore, index: int, targets: list[str]) -> list[str]:
    """Worker 0 fails the targets one by one; the others submit dependents of each until one ends in error at once."""
    if index == 0:
        for target in targets:
            time.sleep(0.1)
            store.fail_job(target, "broken", retry=False)
        return []
    made = []
    for target in targets:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            job = store.create_job(f"after-{index}", depends_on=[target])
            made.append(job["id"])
            if job["status"] == "error":
                break
    return made


def test_a_dependent_submitted_while_its_dependency_fails_still_ends_in_error(store, engine, request):
    targets = [job["id"] for job in store.create_jobs([{"name": f"target-{n}"} for n in range(3)])]
    for _ in targets:
        store.claim_job("w")

    results, _ = together(store, submit_dependents, 4, targets)

    made = [job_id for ids in results for job_id in ids]
    assert len(made) >= 9
    waiting = [job["id"] for job in store.get_pending_jobs()]
    assert waiting == [], f"{len(waiting)} of {len(made)} dependents wait for a job that ended in error"
    for job_id in made:
        ended = final(store, job_id)
        assert ended["messages"] == f"dependency {ended['dependsOn'][0]} ended in error"


def link(store: JobStore, index: int, pairs: list[tuple[str, str]], step: Any) -> list[str]:
    """For each pair, at the same moment as the other worker, make the one job depend on the other (worker 0 one way, worker 1 the other)."""
    answers = []
    for first, second in pairs:
        job_id, needed = (first, second) if index == 0 else (second, first)
        step.wait(PATIENCE)
        try:
            store.set_job(job_id, {"dependsOn": [needed]})
            answers.append("linked")
        except InvalidJobError as error:
            assert "makes a cycle" in str(error)
            answers.append("refused")
    return answers


def test_two_workers_linking_two_jobs_each_way_at_once_make_no_cycle(store, engine, request):
    pairs = [(f"a{n}", f"b{n}") for n in range(20)]
    for pair in pairs:
        for job_id in pair:
            store.set_job(job_id, {"name": job_id})

    results, _ = together(store, link, 2, pairs, SPAWN.Barrier(2))

    cycles = [pair for pair in pairs if all(final(store, job_id).get("dependsOn") for job_id in pair)]
    assert cycles == []
    assert all(sorted(answers) == ["linked", "refused"] for answers in zip(*results))


def test_a_job_submitted_after_its_dependency_ended(store):
    done, broken = store.create_job("done"), store.create_job("broken")
    store.update_job_result(done["id"], "ok")
    store.fail_job(broken["id"], "no")
    assert store.create_job("after-done", depends_on=[done["id"]])["status"] == "pending"
    late = store.create_job("after-broken", depends_on=[done["id"], broken["id"]])
    assert (late["status"], late["messages"]) == ("error", f"dependency {broken['id']} ended in error")
    assert store.claim_job("w")["name"] == "after-done"


# Keys


def submit_keyed(store: JobStore, index: int) -> tuple[list[str], str]:
    ids = [store.create_job(f"p{index}-{n}", key="nightly")["id"] for n in range(3)]
    ids += [job["id"] for job in store.create_jobs([{"name": f"p{index}-x", "key": "nightly"}, {"name": f"p{index}-y", "key": "nightly"}])]
    return ids, store.create_job(f"p{index}-own", key=f"own-{index}")["id"]


def test_submits_of_one_key_from_several_processes_at_once_make_one_job(store):
    results, _ = together(store, submit_keyed, 4)

    jobs = store.get_jobs()
    nightly = [job for job in jobs if job["key"] == "nightly"]
    assert len(nightly) == 1
    assert {job_id for ids, _ in results for job_id in ids} == {nightly[0]["id"]}
    owned = {job["key"]: job["id"] for job in jobs if job["key"] != "nightly"}
    assert owned == {f"own-{index}": own for index, (_, own) in enumerate(results)}
    assert len(jobs) == 5


def submit_and_claim(store: JobStore, index: int) -> list[tuple[dict, float]]:
    """Submit a job with the key ``daily``, then claim one and finish it; eight times."""
    answers = []
    for n in range(8):
        answers.append((store.create_job(f"p{index}-{n}", key="daily"), time.time()))
        claimed = store.claim_job(f"w{index}")
        if claimed is not None:
            store.update_job_result(claimed["id"], "done")
    return answers


def test_a_key_is_held_until_its_job_ends_and_no_longer(store):
    results, _ = together(store, submit_and_claim, 3)
    while (left := store.claim_job("last")) is not None:
        store.update_job_result(left["id"], "done")

    jobs = sorted(store.get_finished_jobs(), key=lambda job: at(job["createdAt"]))
    assert len(store.get_jobs()) == len(jobs) >= 2
    # One job at a time holds the key: each was submitted only once the one before had ended.
    for before, after in zip(jobs, jobs[1:]):
        assert at(after["createdAt"]) > at(before["finishedAt"])
    created = {job["id"]: job for job in jobs}
    for answer, returned in (pair for answers in results for pair in answers):
        assert answer["status"] in ("pending", "running")  # a job not yet ended
        assert at(created[answer["id"]]["createdAt"]) <= wall(returned)


# Inputs refused, with nothing written


def _cycle_store(store: JobStore) -> None:
    """a, b waiting for a, c waiting for b."""
    store.set_job("a", {"name": "a"})
    store.set_job("b", {"name": "b", "dependsOn": ["a"]})
    store.set_job("c", {"name": "c", "dependsOn": ["b"]})


LATER = "2030-01-01T00:00:00Z"
REFUSED = {
    "delay and runAt": (lambda s: s.create_job("x", delay=1, run_at=LATER), InvalidJobError, "give a delay or a time to run at, not both"),
    "delay and runAt in a batch": (lambda s: s.create_jobs([{"name": "fine"}, {"delay": 1, "runAt": LATER}]), InvalidJobError, "'#1'.*not both"),
    "negative delay": (lambda s: s.create_job("x", delay=-0.5), InvalidJobError, r"a delay is a non-negative number of seconds, not -0\.5"),
    "negative delay in a batch": (lambda s: s.create_jobs([{"name": "fine"}, {"delay": -1}]), InvalidJobError, "'#1'.*non-negative"),
    "bool priority": (lambda s: s.create_job("x", priority=True), InvalidJobError, "priority is an int, not True"),
    "bool priority in a batch": (lambda s: s.create_jobs([{"priority": False}]), InvalidJobError, "priority is an int, not False"),
    "unknown dependency": (lambda s: s.create_job("x", depends_on=["missing"]), InvalidJobError, "no job 'missing' is in the store"),
    "unknown dependency in a batch": (lambda s: s.create_jobs([{"name": "fine"}, {"dependsOn": ["missing"]}]), InvalidJobError, "'#1'.*no job 'missing'"),
    "self dependency": (lambda s: s.set_job("a", {"dependsOn": ["a"]}), InvalidJobError, "a job cannot depend on itself"),
    "self dependency of a new job": (lambda s: s.set_job("new", {"dependsOn": ["new"]}), InvalidJobError, "a job cannot depend on itself"),
    "cycle": (lambda s: s.set_job("a", {"dependsOn": ["c"]}), InvalidJobError, "depending on 'c' makes a cycle"),
    "cycle among others": (lambda s: s.set_job("b", {"dependsOn": ["a", "c"]}), InvalidJobError, "depending on 'c' makes a cycle"),
    "backoff over the cap": (lambda s: s.create_job("x", retry_backoff=3600.5), InvalidJobError, "a backoff is a positive number of seconds up to 3600"),
    "store backoff over the cap": (lambda s: JobStore(s.location, retry_backoff=3601), InvalidArgumentError, "retry_backoff must be a positive number of seconds up to 3600"),
}


@pytest.mark.parametrize("call, error, match", REFUSED.values(), ids=REFUSED.keys())
def test_bad_scheduling_is_refused_and_nothing_is_written(store, call, error, match):
    _cycle_store(store)
    before = store.get_jobs()
    with pytest.raises(error, match=match):
        call(store)
    assert store.get_jobs() == before


def test_the_bounds_themselves_are_accepted(store):
    job = store.create_job("x", delay=0, priority=-5, max_retries=0, retry_backoff=3600)
    assert (job["priority"], job["maxRetries"], job["retryBackoff"]) == (-5, 0, 3600)
    assert JobStore(store.location, retry_backoff=3600).retry_backoff == 3600


def test_a_dependency_list_of_none_is_refused_naming_it(store):
    _cycle_store(store)
    before = store.get_jobs()
    with pytest.raises(InvalidJobError, match="dependsOn"):
        store.set_job("a", {"dependsOn": None})
    assert store.get_jobs() == before


# Running an ended job again


def test_a_job_run_again_has_its_retries_afresh(store):
    retrying = JobStore(store.location, max_retries=1, retry_backoff=BACKOFF)
    job = retrying.create_job("x")
    for _ in range(2):
        while retrying.claim_job("w") is None:
            time.sleep(0.01)
        retrying.fail_job(job["id"], "boom")
    assert final(store, job["id"])["status"] == "error"
    retrying.retry_job(job["id"])
    retrying.claim_job("w")
    assert retrying.fail_job(job["id"], "boom")["status"] == "pending"


def test_a_job_run_again_is_due_at_once(store):
    job = store.create_job("x", delay=3600)
    store.cancel_job(job["id"])
    store.retry_job(job["id"])
    claimed = store.claim_job("w")
    assert claimed is not None and claimed["id"] == job["id"]


def test_a_dependent_run_again_or_set_waiting_while_its_dependency_is_in_error_ends_at_once(store):
    needed = store.create_job("needed")
    waiting = store.create_job("waiting", depends_on=[needed["id"]])
    store.cancel_job(needed["id"])
    assert store.find_job(waiting["id"])[1] == "error"
    again = store.retry_job(waiting["id"])
    assert again["status"] == "error" and again["messages"].endswith(f"dependency {needed['id']} ended in error")
    assert store.set_job_pending(waiting["id"])["status"] == "error"
    other = store.create_job("other")
    moved = store.set_job(other["id"], {"dependsOn": [needed["id"]]}, "pending")
    assert moved["status"] == "error" and store.claim_job("w") is None


def test_a_key_is_held_against_set_job_as_against_a_submit(store):
    old = store.create_job("old", key="k")
    store.cancel_job(old["id"])
    new = store.create_job("new", key="k")
    assert new["id"] != old["id"]
    with pytest.raises(InvalidJobError, match=f"job {new['id']} holds its key 'k'"):
        store.set_job_pending(old["id"])
    with pytest.raises(JobStateError, match=f"job {new['id']} holds its key 'k'"):
        store.retry_job(old["id"])
    plain = store.create_job("plain")
    with pytest.raises(InvalidJobError, match="holds its key 'k'"):
        store.set_job(plain["id"], {"key": "k"})
    assert store.find_job(old["id"])[1] == "error" and "key" not in store.find_job(plain["id"])[0]


def test_the_stores_backoff_is_written_into_a_job_that_gives_only_its_retries(store):
    opened = JobStore(store.location, retry_backoff=600)
    assert opened.create_job("n", max_retries=2)["retryBackoff"] == 600
    assert "retryBackoff" not in opened.create_job("plain")


def test_a_job_recovered_and_claimed_again_at_once_enters_running_last(store):
    first, second = store.create_job("first"), store.create_job("second")
    assert store.claim_job("a", lease=0.05)["id"] == first["id"]
    assert store.claim_job("b")["id"] == second["id"]
    time.sleep(0.1)
    again = store.claim_job("c")
    assert again["id"] == first["id"] and again["worker"] == "c"
    assert [entry["status"] for entry in again["history"]] == ["pending", "running", "pending", "running"]
    assert [job["id"] for job in store.get_running_jobs()] == [second["id"], first["id"]]
