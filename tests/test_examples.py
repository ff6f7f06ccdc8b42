"""The example scripts run end to end against a store of their own, and leave it consistent."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobstore
from jobstore import JobStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FULL_BAR = "[" + "#" * 30 + "] 100%"
EMPTY_BAR = "[" + "." * 30 + "]   0%"
INTERRUPTED = re.compile(r"interrupted: (\d+) jobs? handed back, (\d+) still pending; run again on (.+) to go on")


def run(script: str, *args: str, **options) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120, **options
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def bars(out: str) -> list[str]:
    """The summary lines of the worker pool's output (not on a terminal, one line each)."""
    return [line for line in out.splitlines() if line.startswith("[")]


def closing_hint(out: str) -> str:
    line = out.splitlines()[-1]
    assert line.startswith("look at the files: "), out
    return line


def interrupted_pool(root: Path, whole_group: bool) -> tuple[int, str, str]:
    """Start a pool of 40 jobs, signal it once jobs are running; returns its status, stdout and stderr.

    :param whole_group: Ctrl-C as a terminal sends it, SIGINT to every process of the group;
        otherwise SIGTERM to the main process alone
    """
    command = [sys.executable, str(EXAMPLES / "worker_pool.py"), str(root), "--jobs", "40", "--workers", "3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        before = process.stdout.readline()  # printed once the store is open
        deadline = time.monotonic() + 60
        # Two running jobs: one of them is not the one the pool asks to cancel.
        while len(JobStore(root).get_running_jobs()) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "no job started"
            time.sleep(0.01)
        if whole_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, before + out, err


def test_quickstart_ends_with_its_check(root: Path) -> None:
    assert run("quickstart.py", str(root)).splitlines()[-1] == "ok: 2 finished, 1 error"


def test_quickstart_help_and_bad_options_create_no_store(tmp_path: Path) -> None:
    script = str(EXAMPLES / "quickstart.py")
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: ") and "store" in helped.stdout
    wrong = subprocess.run([sys.executable, script, "--bogus"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert wrong.returncode == 2 and "unrecognized arguments: --bogus" in wrong.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", ["quickstart.py", "worker_pool.py"])
def test_without_a_store_the_temporary_one_is_removed(script: str, tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out = run(script, *(["--jobs", "6", "--workers", "2"] if script == "worker_pool.py" else []), env={**os.environ, "TMPDIR": str(temporary)})
    assert out.splitlines()[0].startswith(f"store: {temporary}") and "(temporary, removed at the end)" in out
    assert list(temporary.iterdir()) == []
    if script == "worker_pool.py":
        # The hint names no removed store: it tells how to keep one.
        assert "look at the files" not in out
        assert out.splitlines()[-1].startswith("the store was temporary and is removed now; to keep one, give a directory: ")


def test_worker_pool_ends_every_job_once(root: Path) -> None:
    out = run("worker_pool.py", str(root), "--jobs", "12", "--workers", "3")
    assert "every job has ended: 12 of 12" in out
    canceled = next(line for line in out.splitlines() if line.startswith("the job asked to cancel"))
    assert ": error, messages" in canceled and "canceled" in canceled or ": finished," in canceled
    jobs = JobStore(root).get_jobs()
    assert len(jobs) == len({each["id"] for each in jobs}) == 12
    assert {each["status"] for each in jobs} <= {"finished", "error"}
    assert all(each["attempts"] == 1 for each in jobs), "a job was claimed twice"


def test_worker_pool_bar_reaches_full_when_every_job_ended(root: Path) -> None:
    # Canceled and failed jobs never do all their steps; an ended job counts as all of them.
    out = run("worker_pool.py", str(root), "--jobs", "12", "--workers", "3")
    shown = bars(out)
    assert shown[0].startswith(EMPTY_BAR) and shown[-1].startswith(FULL_BAR), out
    assert "pending 0  running 0  finished" in shown[-1]


@pytest.mark.parametrize("whole_group, status", [(True, 128 + signal.SIGINT), (False, 128 + signal.SIGTERM)], ids=["ctrl-c", "sigterm"])
def test_worker_pool_hands_its_jobs_back_when_interrupted(root: Path, whole_group: bool, status: int) -> None:
    code, out, err = interrupted_pool(root, whole_group)
    assert code == status, err
    assert "Traceback" not in out + err
    # One line says so; stdout stops at the summary lines, which were shown before the signal.
    assert err.count("\n") == 1, err
    told = INTERRUPTED.fullmatch(err.rstrip("\n"))
    assert told is not None, err
    assert told.group(3) == str(root)
    assert all(line.startswith(("store: ", "submitted ", "[")) for line in out.splitlines()), out
    store = JobStore(root)
    assert store.get_running_jobs() == []
    pending = store.get_pending_jobs()
    released = [each for each in pending if "the pool was interrupted" in each["messages"]]
    assert int(told.group(1)) == len(released) >= 1
    assert int(told.group(2)) == len(pending) >= 20, "the workers went on working after the signal"
    for each in released:
        assert re.search(r"released by worker worker-\d: worker-\d stopped before step \d of \d: the pool was interrupted", each["messages"])
        assert each["attempts"] == 0 and "worker" not in each and "progress" not in each


def test_worker_pool_run_again_counts_its_own_jobs(root: Path) -> None:
    code, _, err = interrupted_pool(root, whole_group=True)
    assert code == 130, err
    first = {each["id"]: each for each in JobStore(root).get_jobs()}
    left = sum(1 for each in first.values() if each["status"] == "pending")
    asked_first = {name for name, each in first.items() if each.get("cancelRequested")}

    out = run("worker_pool.py", str(root), "--jobs", "6", "--workers", "3")
    assert f"who first take the {left} jobs an earlier run left" in out
    shown = bars(out)
    # The workers take the earlier jobs first: this run's own start at nothing done, all pending.
    assert shown[0].startswith(EMPTY_BAR + "  pending 6  running 0  finished 0  error 0"), out
    assert shown[-1].startswith(FULL_BAR), out
    assert "every job has ended: 6 of 6" in out
    assert f"jobs an earlier run left, ended too: {left} of {left}" in out
    per_worker = next(line for line in out.splitlines() if line.startswith("jobs per worker: "))
    assert sum(int(count) for count in re.findall(r"worker-\d (\d+)", per_worker)) == 6

    jobs = {each["id"]: each for each in JobStore(root).get_jobs()}
    own = set(jobs) - set(first)
    assert len(own) == 6 and len(jobs) == 46
    assert all(each["status"] in ("finished", "error") for each in jobs.values())
    # The cancel of the second run went to one of its own jobs.
    asked = {name for name, each in jobs.items() if each.get("cancelRequested")} - asked_first
    assert len(asked) == 1 and asked <= own


def test_worker_pool_hint_names_the_command_beside_the_interpreter(root: Path) -> None:
    # As after the README's commands: run from the directory that holds the virtualenv.
    installed = Path(sys.executable).parent / "jobstore"
    assert installed.exists(), "the jobstore console script is missing: pip install -e '.[test]'"
    here = installed.parent.parent.parent
    hint = closing_hint(run("worker_pool.py", str(root), "--jobs", "4", "--workers", "2", cwd=here))
    command = f"{installed.relative_to(here)} --store {root} list"
    assert hint == f"look at the files: ls {root}, or the jobs: {command}"
    listed = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, cwd=here)
    assert listed.returncode == 0, listed.stderr
    assert all(each["id"] in listed.stdout for each in JobStore(root).get_jobs())


def test_worker_pool_hint_falls_back_to_python_m_jobstore(tmp_path: Path) -> None:
    # An interpreter with no jobstore script beside it, reaching the package through PYTHONPATH.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    paths = [str(Path(jobstore.__file__).resolve().parent.parent), *(entry for entry in sys.path if entry)]
    options = {"cwd": tmp_path, "env": {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}}
    command = [str(tmp_path / "bin" / "python"), str(EXAMPLES / "worker_pool.py"), "store", "--jobs", "4", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **options)
    assert done.returncode == 0, done.stderr
    hint = closing_hint(done.stdout)
    assert hint == "look at the files: ls store, or the jobs: bin/python -m jobstore --store store list"
    listed = subprocess.run(shlex.split(hint.split("or the jobs: ")[1]), capture_output=True, text=True, timeout=60, **options)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 5  # a heading, then the 4 jobs
