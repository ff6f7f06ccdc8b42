"""The example scripts run end to end against a store of their own, and leave it consistent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobstore import JobStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart_ends_with_its_check(root: Path) -> None:
    assert run("quickstart.py", str(root)).splitlines()[-1] == "ok: 2 finished, 1 error"


def test_worker_pool_ends_every_job_once(root: Path) -> None:
    out = run("worker_pool.py", str(root), "--jobs", "12", "--workers", "3")
    assert "every job has ended: 12 of 12" in out
    canceled = next(line for line in out.splitlines() if line.startswith("the job asked to cancel"))
    assert ": error, messages" in canceled and "canceled" in canceled or ": finished," in canceled
    jobs = JobStore(root).get_jobs()
    assert len(jobs) == len({each["id"] for each in jobs}) == 12
    assert {each["status"] for each in jobs} <= {"finished", "error"}
    assert all(each["attempts"] == 1 for each in jobs), "a job was claimed twice"
