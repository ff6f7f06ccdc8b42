"""The jobstore command, run as the installed console script in a process of its own."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobstore import JobStore
from jobstore._times import parse_time

from conftest import SCRIPT, one_line_error, start_worker

STATES = ["idle", "pending", "running", "finished", "error"]


def test_create_prints_the_id_of_a_new_pending_job(jobstore, root):
    done = jobstore("create", "resize", "--user", "ann", "--request", "cat.png")
    assert done.returncode == 0, done.stderr
    job, state = JobStore(root).find_job(done.stdout.strip())
    assert (state, job["name"], job["user"], job["request"]) == ("pending", "resize", "ann", "cat.png")


def test_list_shows_a_table_and_json(jobstore, store):
    first = store.create_job("resize", "ann")
    store.set_job("b", {"name": "thumbs", "user": "bob", "progress": {"completed": 3, "total": 10}}, "running")
    table = jobstore("list").stdout.splitlines()
    assert table[0].split() == ["id", "name", "user", "status", "progress", "age"]
    assert table[1].split() == [first["id"], "resize", "ann", "pending", "0s"]
    assert table[2].split() == ["b", "thumbs", "bob", "running", "3/10", "0s"]
    assert json.loads(jobstore("list", "--json").stdout) == store.get_jobs()
    assert json.loads(jobstore("list", "--state", "running", "--json").stdout) == store.get_running_jobs()
    assert jobstore("list", "--state", "error").stdout == "no jobs in error\n"


def test_a_bad_state_is_one_line_naming_it(jobstore, store):
    one_line_error(jobstore("list", "--state", "paused"), 2, "'paused'", "--state")


def test_show_gives_every_field_messages_and_history(jobstore, store):
    job = store.create_job("resize", "ann", "cat.png")
    store.set_job_running(job["id"])
    store.append_job_message(job["id"], "first line")
    store.append_job_message(job["id"], "second line")
    shown = jobstore("show", job["id"]).stdout
    for field in ("id", "name", "user", "request", "status", "createdAt"):
        assert any(line.split()[:1] == [field] for line in shown.splitlines()), field
    assert "  first line\n  second line\n" in shown
    history = shown[shown.index("history") :].splitlines()[1:]
    assert [line.split()[1] for line in history] == ["pending", "running"]
    assert json.loads(jobstore("show", job["id"], "--json").stdout) == store.find_job(job["id"])[0]


def test_an_unknown_id_is_one_line_naming_it(jobstore, store):
    for command in ("show", "cancel", "retry", "delete", "wait", "finish", "fail", "release"):
        one_line_error(jobstore(command, "no-such-job"), 1, "no job with id 'no-such-job'")
    one_line_error(jobstore("progress", "no-such-job", "1"), 1, "no job with id 'no-such-job'")
    one_line_error(jobstore("message", "no-such-job", "hello"), 1, "no job with id 'no-such-job'")


def test_stats_counts_every_state_zeros_included(jobstore, store):
    for name in "abc":
        store.create_job(name)
    store.update_job_result(store.claim_job("w")["id"], "done")
    figures = json.loads(jobstore("stats", "--json").stdout)
    assert {state: figures[state] for state in STATES} == {"idle": 0, "pending": 2, "running": 0, "finished": 1, "error": 0}
    assert figures["total"] == 3 and figures["finishedLastHour"] == 1 and 0 <= figures["oldestPendingSeconds"] < 60
    lines = dict(line.rsplit(None, 1) for line in jobstore("stats").stdout.splitlines())
    assert {state: lines[state] for state in STATES} == {"idle": "0", "pending": "2", "running": "0", "finished": "1", "error": "0"}
    assert lines["finished in the last hour"] == "1"


def test_wait_exits_0_when_the_job_finishes(jobstore, store, root):
    job = store.create_job("n")
    worker = start_worker(root, "finish-later", job["id"], "0.5")
    done = jobstore("wait", job["id"], "--timeout", "30")
    worker.communicate(timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"job {job['id']} finished\n"


def test_wait_exits_1_when_the_job_fails_and_4_on_timeout(jobstore, store):
    job = store.create_job("n")
    done = jobstore("wait", job["id"], "--timeout", "0.3")
    assert done.returncode == 4 and f"job {job['id']} is still pending after 0.3 s" in done.stderr
    store.fail_job(job["id"], "out of memory")
    done = jobstore("wait", job["id"])
    assert (done.returncode, done.stdout) == (1, f"job {job['id']} ended in error: out of memory\n")


@pytest.mark.parametrize("timeout", ["-1", "nan", "inf", "-inf", "1e400"])
def test_wait_refuses_a_timeout_the_api_refuses_as_a_bad_command_line(jobstore, store, timeout):
    job = store.create_job("n")
    one_line_error(jobstore("wait", job["id"], "--timeout", timeout), 2, "--timeout", "timeout must be a non-negative number of seconds")
    one_line_error(jobstore("wait", job["id"], "--timeout", "soon"), 2, "--timeout", "'soon'")


def test_the_help_names_each_exit_status(jobstore):
    def help_text(*command: str) -> str:
        return " ".join(jobstore(*command, "--help").stdout.split())  # as wrapped to any width

    assert "1 in error, 4 on timeout" in help_text("wait") and "(exit 4)" in help_text("wait")
    assert "exit 3 when none waits" in help_text("claim")
    assert "2 a bad command line, 3 no job to claim, 4 wait timed out" in help_text()


def test_wait_follows_the_progress(jobstore, store):
    job = store.set_job("j", {"progress": {"completed": 7, "total": 9}}, "running")
    process = subprocess.Popen([str(SCRIPT), "--store", store.location, "wait", job["id"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    store.update_job_result(job["id"], "done")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "7/9" in err


def test_claim_prints_the_id_on_a_line_then_the_job(jobstore, store):
    first, second = store.create_job("resize", "ann", "cat.png"), store.create_job("thumbs")
    done = jobstore("claim", "--worker", "sh-1", "--lease", "60")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == first["id"]
    claimed, state = store.find_job(first["id"])
    assert (state, claimed["worker"], claimed["attempts"]) == ("running", "sh-1", 1)
    without_ages = functools.partial(re.sub, r" \((in )?\w+( ago)?\)$", "", flags=re.MULTILINE)
    assert without_ages(done.stdout) == f"{first['id']}\n" + without_ages(jobstore("show", first["id"]).stdout)
    assert any(line.split() == ["request", "cat.png"] for line in lines)
    assert 55 <= (parse_time(claimed["leaseExpiresAt"]) - parse_time(claimed["startedAt"])).total_seconds() <= 60
    as_json = json.loads(jobstore("claim", "--json").stdout)
    assert as_json == store.find_job(second["id"])[0] and as_json["status"] == "running"


def test_claim_by_default_names_this_host_and_the_process_that_ran_it(jobstore, store):
    job = store.create_job("n")
    assert jobstore("claim").returncode == 0
    assert store.find_job(job["id"])[0]["worker"] == f"{socket.gethostname()}:{os.getpid()}"


def test_claim_exits_3_when_no_job_waits(jobstore, store):
    store.create_job("later")
    store.set_job("asleep", {}, "idle")
    assert jobstore("claim").returncode == 0
    done = jobstore("claim")
    assert (done.returncode, done.stdout, done.stderr) == (3, "", "no job waits to be claimed\n")
    started = time.monotonic()
    done = jobstore("claim", "--json", "--wait", "0.5")
    assert done.returncode == 3 and done.stdout == "" and time.monotonic() - started >= 0.5


def test_claim_waits_for_a_job_to_be_submitted(jobstore, store, root):
    claimer = subprocess.Popen([str(SCRIPT), "--store", str(root), "claim", "--wait", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    job = store.create_job("late")
    out, err = claimer.communicate(timeout=60)
    assert claimer.returncode == 0, err
    assert out.splitlines()[0] == job["id"]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--lease", "0", "lease must be a positive number of seconds"),
        ("--lease", "-5", "lease must be a positive number of seconds"),
        ("--lease", "nan", "lease must be a positive number of seconds"),
        ("--lease", "inf", "lease must be a positive number of seconds"),
        ("--wait", "-1", "wait must be a non-negative number of seconds"),
        ("--worker", "", "a worker is a non-empty name"),
    ],
)
def test_claim_refuses_a_bad_option_as_a_bad_command_line(jobstore, store, option, value, says):
    store.create_job("n")
    one_line_error(jobstore("claim", option, value), 2, option, says)
    assert store.get_running_jobs() == []


def test_progress_and_message_record_and_print_nothing(jobstore, store):
    job = store.set_job("j", {}, "running")
    assert (jobstore("progress", "j", "3", "10").stdout, jobstore("message", "j", "resized 3").stdout) == ("", "")
    assert jobstore("message", "j", "two\nlines").returncode == 0
    assert store.find_job("j")[0]["progress"] == {"completed": 3, "total": 10}
    assert store.find_job("j")[0]["messages"] == "resized 3\ntwo\nlines"
    assert jobstore("progress", "j", "4").returncode == 0
    assert store.find_job("j")[0]["progress"] == {"completed": 4, "total": None}
    assert job["id"] == "j"


@pytest.mark.parametrize(
    ("counts", "says"),
    [(["11", "10"], "11 steps done is more than the total, 10"), (["x"], "'x' is not a valid integer"), (["--", "-1"], "-1")],
)
def test_progress_refuses_bad_counts_as_a_bad_command_line(jobstore, store, counts, says):
    store.set_job("j", {}, "running")
    one_line_error(jobstore("progress", "j", *counts), 2, says)
    assert "progress" not in store.find_job("j")[0]


def test_finish_fail_and_release_say_what_became_of_the_job(jobstore, store):
    for name in ("a", "b", "c", "d"):
        store.set_job(name, {"worker": "sh-1", "attempts": 1}, "running")
    assert jobstore("finish", "a", "--result", "small.png").stdout == "job a finished\n"
    assert store.find_job("a")[0]["result"] == "small.png"
    assert jobstore("finish", "b").stdout == "job b finished\n"
    assert store.find_job("b")[0]["result"] == ""
    assert jobstore("fail", "c", "--message", "out of memory").stdout == "job c failed\n"
    failed, state = store.find_job("c")
    assert (state, failed["messages"]) == ("error", "out of memory")
    assert jobstore("release", "d", "--reason", "shutting down").stdout == "job d is pending again\n"
    released, state = store.find_job("d")
    assert (state, released["attempts"]) == ("pending", 0)
    assert released["messages"] == "released by worker sh-1: shutting down; back in the queue"


def test_a_worker_asked_to_stop_ends_the_job_canceled(jobstore, store):
    for name in ("a", "b"):
        store.set_job(name, {}, "running")
        store.cancel_job(name)
    assert jobstore("fail", "a", "--message", "stopped").stdout == "job a canceled\n"
    assert jobstore("release", "b").stdout == "job b canceled\n"
    assert [store.find_job(name)[0]["canceled"] for name in "ab"] == [True, True]


def test_worker_commands_refuse_a_job_in_the_wrong_state(jobstore, store):
    store.set_job("done", {}, "finished")
    store.create_job("waiting")
    one_line_error(jobstore("fail", "done"), 1, "cannot fail job 'done'", "finished")
    waiting = store.get_pending_jobs()[0]["id"]
    one_line_error(jobstore("release", waiting), 1, f"cannot release job '{waiting}'", "pending")
    assert store.find_job("done")[1] == "finished" and store.find_job(waiting)[1] == "pending"


def test_bash_workers_drain_the_queue_each_job_once(store, tmp_path):
    jobs = store.create_jobs([{"name": "crop", "request": f"{number}.png"} for number in range(4)])
    script = tmp_path / "worker.sh"
    script.write_text(
        '''while claimed=$("$JOBSTORE" claim --worker "$1" --lease 60); status=$?; [ $status -eq 0 ]; do
    id=$(head -n 1 <<< "$claimed")
    "$JOBSTORE" progress "$id" 1 1 || exit 1
    "$JOBSTORE" finish "$id" --result "by $1" > /dev/null || exit 1
done
[ $status -eq 3 ]
'''
    )
    environment = {**os.environ, "JOBSTORE": str(SCRIPT), "JOBSTORE_PATH": store.location}
    workers = [subprocess.Popen(["bash", str(script), f"sh-{number}"], stderr=subprocess.PIPE, text=True, env=environment) for number in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and err == "no job waits to be claimed\n", err
    finished = store.get_finished_jobs()
    assert sorted(job["id"] for job in finished) == sorted(job["id"] for job in jobs)
    assert all(job["attempts"] == 1 and job["result"] == f"by {job['worker']}" and job["progress"]["total"] == 1 for job in finished)


def test_stats_and_list_show_running_jobs_whose_lease_lapsed(jobstore, store):
    store.create_jobs([{"name": "gone"}, {"name": "busy"}])
    store.claim_job("w1", lease=0.05)
    store.claim_job("w2", lease=60)
    time.sleep(0.1)
    figures = json.loads(jobstore("stats", "--json").stdout)
    assert (figures["running"], figures["leaseLapsed"], figures["total"]) == (2, 1, 2)
    lines = dict(line.rsplit(None, 1) for line in jobstore("stats").stdout.splitlines())
    assert (lines["running"], lines["running (lease lapsed)"]) == ("2", "1")
    table = jobstore("list").stdout.splitlines()
    assert [line.split()[1:3] for line in table[1:]] == [["gone", "running"], ["busy", "running"]]
    assert "running (lease lapsed)" in table[1] and "lapsed" not in table[2]
    assert [job["status"] for job in json.loads(jobstore("list", "--json").stdout)] == ["running", "running"]
    assert [job["worker"] for job in store.get_running_jobs()] == ["w1", "w2"]  # shown, not recovered


def test_cancel_retry_delete(jobstore, store):
    pending, running = store.create_job("p"), store.set_job("r", {}, "running")
    assert jobstore("cancel", pending["id"]).stdout == f"job {pending['id']} canceled\n"
    assert store.find_job(pending["id"])[1] == "error"
    assert "asked its worker to stop" in jobstore("cancel", "r").stdout
    assert store.find_job("r")[0]["cancelRequested"] is True
    assert jobstore("retry", pending["id"]).returncode == 0
    assert store.find_job(pending["id"])[1] == "pending"
    one_line_error(jobstore("retry", "r"), 1, "'r'", "running")
    assert jobstore("delete", "r").stdout == "job r deleted\n"
    assert store.find_job("r") == (None, None)


def test_requeue_expired_and_purge(jobstore, store):
    claimed = store.create_job("n")
    store.claim_job("w", lease=0.01)
    time.sleep(0.05)
    assert jobstore("requeue-expired").stdout == f"{claimed['id']}\n"
    assert jobstore("requeue-expired").stdout == "no expired claims\n"
    for name in "abc":
        store.set_job(name, {}, "finished")
    assert jobstore("purge", "--older-than", "7d").stdout == "purged 0 finished jobs\n"
    assert jobstore("purge", "--state", "finished", "--keep-last", "1").stdout == "purged 2 finished jobs\n"
    assert [job["id"] for job in store.get_finished_jobs()] == ["c"]
    one_line_error(jobstore("purge", "--older-than", "7 days"), 2, "'7 days' is not a duration")
    one_line_error(jobstore("purge"), 2, "--older-than")


def test_validate_lists_each_problem_with_file_and_job(jobstore, store, root):
    store.set_job("7", {}, "finished")
    assert (jobstore("validate").returncode, jobstore("validate").stdout) == (0, f"no problems in {root}\n")
    data = json.loads((root / "finished.json").read_text())
    data["finished"]["7"]["progress"] = "lots"
    (root / "finished.json").write_text(json.dumps(data))
    (root / "notes.txt").write_text("mine")
    done = jobstore("validate")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("finished.json: job '7': field 'progress'") for line in lines), lines
    assert any(line.startswith("notes.txt:") for line in lines), lines
    assert "2 problems" in done.stderr


def test_a_reader_that_stops_early_gets_no_complaint(store):
    store.create_jobs([{"name": f"job {number}"} for number in range(3000)])
    pipeline = f"'{SCRIPT}' --store '{store.location}' list --json | head -c 10"
    done = subprocess.run(["sh", "-c", pipeline], capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.stderr) == ("[\n  {\n    ", "")


def test_a_damaged_file_is_one_line_naming_it(jobstore, store, root):
    store.create_job("n")
    (root / "pending.json").write_text('{"pending": {')
    one_line_error(jobstore("list"), 1, "pending.json")


def test_watch_shows_counts_and_running_jobs_until_interrupted(store):
    store.set_job("busy", {"name": "crunch"}, "running")
    # Interrupts as from a terminal, even where this suite was started in the background (which ignores them).
    watcher = subprocess.Popen(
        [str(SCRIPT), "--store", store.location, "watch", "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)  # started and showing the store, even on a loaded machine
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "running (1)" in out and "crunch" in out
    assert any(line.split() == ["running", "1"] for line in out.splitlines())


def test_the_store_comes_from_jobstore_path_else_the_current_directory(jobstore, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    done = jobstore("create", "n", store=None, env={"JOBSTORE_PATH": str(elsewhere)})
    assert JobStore(elsewhere).find_job(done.stdout.strip())[1] == "pending"
    done = jobstore("create", "m", store=None)
    assert JobStore(tmp_path / "jobstore").find_job(done.stdout.strip())[1] == "pending"


def test_no_store_is_made_by_reading_nor_among_other_files(jobstore, tmp_path):
    one_line_error(jobstore("list", store=tmp_path / "typo"), 1, "no job store at", "typo")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("")
    one_line_error(jobstore("create", "n", store=tmp_path / "src"), 1, "not a job store")
    assert sorted(path.name for path in (tmp_path / "src").iterdir()) == ["main.py"]


def test_python_dash_m_jobstore_is_the_same_command(root, store):
    store.create_job("n")
    done = subprocess.run([sys.executable, "-m", "jobstore", "--store", str(root), "stats", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["pending"] == 1


def test_workers_importing_the_api_load_neither_the_command_nor_the_service():
    heavy = "{'click', 'rich', 'starlette', 'uvicorn', 'httpx', 'anyio'}"
    code = f"import sys, jobstore, jobstore.api.job; print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_command_loads_the_service_only_to_serve(jobstore):
    code = "import sys, jobstore.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'httpx'}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_each_job_stays_on_one_line_of_the_listing(jobstore, store):
    store.create_job("two\nlines", "x" * 100)
    lines = jobstore("list").stdout.splitlines()
    assert len(lines) == 2
    assert lines[1].split()[1:4] == ["two", "lines", "x" * 39 + "…"]


#: The listing's columns justified right: their cells end where their headers end.
RIGHT = {"age", "due", "priority", "retries left"}


def columns(table: str) -> list[dict[str, str]]:
    """The rows of a listing, each cell read from under its header (a cell may be blank or hold a space)."""
    header, *lines = table.splitlines()
    places = [(found[0], found.start(), found.end()) for found in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines:
        line = line.ljust(len(header))
        row = {}
        for name, start, end in places:
            if name in RIGHT:
                row[name] = "" if line[end - 1] == " " else re.split(r"\s{2,}", line[:end])[-1].strip()
            else:
                row[name] = "" if line[start] == " " else re.split(r"\s{2,}", line[start:])[0]
        rows.append(row)
    return rows


def test_create_stores_each_scheduling_option_as_its_field(jobstore, root):
    first = jobstore("create", "a").stdout.strip()
    second = jobstore("create", "b").stdout.strip()
    done = jobstore(
        "create", "c", "--run-at", "2031-02-03T04:05:06+02:00", "--priority", "-3", "--max-retries", "2",
        "--retry-backoff", "2m", "--depends-on", first, "--depends-on", second, "--depends-on", first, "--key", "nightly",
    )
    assert done.returncode == 0, done.stderr
    job, state = JobStore(root).find_job(done.stdout.strip())
    assert state == "pending"
    assert (job["runAt"], job["priority"], job["maxRetries"], job["retryBackoff"]) == ("2031-02-03T02:05:06.000000Z", -3, 2, 120)
    assert (job["dependsOn"], job["key"]) == ([first, second], "nightly")
    plain = JobStore(root).find_job(first)[0]
    assert not {"runAt", "priority", "maxRetries", "retryBackoff", "dependsOn", "key"} & set(plain)


def test_create_with_a_delay_is_due_that_long_from_now(jobstore, root):
    before = time.time()
    done = jobstore("create", "later", "--delay", "15m")
    after = time.time()
    assert done.returncode == 0, done.stderr
    due = parse_time(JobStore(root).find_job(done.stdout.strip())[0]["runAt"]).timestamp()
    assert before + 900 - 1 <= due <= after + 900 + 1
    assert parse_time(JobStore(root).find_job(jobstore("create", "soon", "--delay", "90").stdout.strip())[0]["runAt"]).timestamp() <= time.time() + 91


@pytest.mark.parametrize(
    ("options", "option", "says"),
    [
        (["--delay", "soon"], "--delay", "'soon' is not a duration"),
        (["--delay", "-5"], "--delay", "not a duration"),
        (["--delay", "99999999999w"], "--delay", "non-negative number of seconds"),
        (["--run-at", "tomorrow"], "--run-at", "'tomorrow'"),
        (["--priority", "high"], "--priority", "'high'"),
        (["--priority", "1.5"], "--priority", "'1.5'"),
        (["--max-retries", "-1"], "--max-retries", "-1"),
        (["--max-retries", "two"], "--max-retries", "'two'"),
        (["--retry-backoff", "0"], "--retry-backoff", "positive number of seconds"),
        (["--retry-backoff", "2h"], "--retry-backoff", "up to 3600"),
        (["--depends-on", ""], "--depends-on", "non-empty"),
        (["--key", ""], "--key", "non-empty"),
        (["--delay", "1m", "--run-at", "2031-01-01"], "--delay", "--run-at"),
    ],
)
def test_create_refuses_a_bad_scheduling_option_as_a_bad_command_line(jobstore, root, options, option, says):
    one_line_error(jobstore("create", "n", *options), 2, option, says)
    assert not root.exists()  # refused before the store was made


def test_create_refuses_an_unknown_dependency_in_one_line(jobstore, root):
    first = jobstore("create", "a").stdout.strip()
    one_line_error(jobstore("create", "b", "--depends-on", first, "--depends-on", "no-such-job"), 1, "dependsOn", "'no-such-job'")
    assert [job["id"] for job in JobStore(root).get_jobs()] == [first]


def test_create_with_a_key_held_prints_the_job_that_holds_it(jobstore, root):
    done = jobstore("create", "nightly", "--key", "nightly")
    assert (done.returncode, done.stderr) == (0, "")
    holder = done.stdout.strip()
    again = jobstore("create", "nightly", "--key", "nightly", "--priority", "5")
    assert (again.returncode, again.stdout) == (0, f"{holder}\n")
    assert again.stderr == f"job {holder} holds key nightly; not submitted again\n"
    assert [job["id"] for job in JobStore(root).get_jobs()] == [holder]
    JobStore(root).fail_job(holder, "gone")
    other = jobstore("create", "nightly", "--key", "nightly")
    assert other.stderr == "" and other.stdout.strip() not in ("", holder)


def test_list_adds_the_plan_columns_only_when_a_job_is_scheduled(jobstore, store):
    plain = store.create_job("plain")
    before = jobstore("list").stdout
    assert before.splitlines()[0].split() == ["id", "name", "user", "status", "progress", "age"]
    store.set_job("done", {"name": "done", "priority": 0}, "finished")
    assert jobstore("list").stdout.splitlines()[0].split() == ["id", "name", "user", "status", "progress", "age"]
    needed = store.create_job("needed")
    later = store.create_job("later", delay=330, priority=4, max_retries=2, depends_on=["done", needed["id"]])
    rows = columns(jobstore("list").stdout)
    assert list(rows[0]) == ["id", "name", "user", "status", "progress", "age", "due", "priority", "retries left", "waits on"]
    by_id = {row["id"]: row for row in rows}
    assert {name: by_id[later["id"]][name] for name in ("due", "priority", "retries left", "waits on")} == {
        "due": "in 5m", "priority": "4", "retries left": "2", "waits on": needed["id"]
    }
    assert {name: by_id[plain["id"]][name] for name in ("due", "priority", "retries left", "waits on")} == {
        "due": "", "priority": "0", "retries left": "", "waits on": ""
    }
    pending = {row["id"]: row for row in columns(jobstore("list", "--state", "pending").stdout)}
    assert pending[later["id"]]["waits on"] == needed["id"]  # the finished one read apart, to leave it out
    assert set(pending) == {plain["id"], needed["id"], later["id"]}


def test_list_counts_the_waited_on_ids_that_do_not_fit(jobstore, store):
    needs = [store.create_job(f"step {number}")["id"] for number in range(3)]
    waiting = store.create_job("last", depends_on=needs)
    row = next(row for row in columns(jobstore("list").stdout) if row["id"] == waiting["id"])
    assert row["waits on"] == f"{needs[0]} +2"


def test_show_gives_a_waiting_jobs_run_at_with_how_long_until_then(jobstore, store):
    job = store.create_job("later", delay=7200)
    line = next(line for line in jobstore("show", job["id"]).stdout.splitlines() if line.startswith("runAt"))
    assert line.split()[1:] == [job["runAt"], "(in", "1h)"]
    assert json.loads(jobstore("show", job["id"], "--json").stdout)["runAt"] == job["runAt"]


def test_fail_with_retries_left_says_the_job_will_be_retried(jobstore, store):
    job = store.create_job("flaky", max_retries=1, retry_backoff=60)
    store.claim_job("w")
    done = jobstore("fail", job["id"], "--message", "out of memory")
    assert done.returncode == 0, done.stderr
    retried, state = store.find_job(job["id"])
    assert (state, retried["retries"]) == ("pending", 1)
    assert done.stdout == f"job {job['id']} will be retried: {retried['messages'].splitlines()[-1]}\n"
    assert done.stdout.startswith(f"job {job['id']} will be retried: failed: out of memory; retry 1 of 1 at ")


def test_fail_no_retry_ends_the_job_in_error_whatever_retries_it_has(jobstore, store):
    job = store.create_job("flaky", max_retries=3)
    store.claim_job("w")
    done = jobstore("fail", job["id"], "--message", "bad input", "--no-retry")
    assert (done.returncode, done.stdout) == (0, f"job {job['id']} failed\n")
    failed, state = store.find_job(job["id"])
    assert (state, failed["messages"], failed.get("retries", 0)) == ("error", "bad input", 0)
