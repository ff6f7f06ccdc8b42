"""The PostgreSQL engine's own promises: its layout, claims across processes, and nothing of it loaded for file stores."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import psycopg
import pytest

from jobstore import JobStore
from jobstore.api import job

from conftest import SCRIPT


@pytest.fixture
def url(postgres_url: str) -> str:
    """A store of its own in the test run's database."""
    return f"{postgres_url}#t{uuid.uuid4().hex}"


def test_the_layout_is_one_table_per_state_with_checks(url, postgres_url):
    store = JobStore(url)
    made = store.create_job("a", "u", "r", "")
    name = url.rsplit("#", 1)[1]
    with psycopg.connect(postgres_url) as db:
        tables = {row[0] for row in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,))}
        assert tables == {"jobs", "meta", "jobs_idle", "jobs_pending", "jobs_running", "jobs_finished", "jobs_error"}
        assert db.execute(f'SELECT value FROM "{name}".meta WHERE key = %s', ("layout",)).fetchone()[0] == 1
        row = db.execute(f'SELECT doc FROM "{name}".jobs_pending WHERE id = %s', (made["id"],)).fetchone()
        assert row[0] == made
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(f"""INSERT INTO "{name}".jobs_running (id, doc) VALUES ('x', '{{"id": "x", "status": "pending"}}')""")


def test_sixteen_processes_claim_each_job_exactly_once(url):
    store = JobStore(url)
    store.create_jobs([{"name": str(n)} for n in range(2000)])
    claim = (
        "import sys; from jobstore import JobStore\n"
        "store = JobStore(sys.argv[1])\n"
        "while (job := store.claim_job(sys.argv[2])) is not None:\n"
        "    print(job['id'], flush=True)\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", claim, url, f"w{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(16)]
    claimed = Counter()
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        claimed.update(out.split())
    assert len(claimed) == 2000 and set(claimed.values()) == {1}
    assert store.stats()["running"] == 2000 and store.stats()["pending"] == 0


def test_the_api_and_the_command_take_a_database_url(url):
    job.useStore(url)
    try:
        made = job.createJob("a", "u", "r", "")
        assert job.findJob(made["id"])[1] == "pending"
    finally:
        job.useStore(None)
    done = subprocess.run([str(SCRIPT), "--store", url, "stats", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"pending": 1' in done.stdout


def test_a_file_store_never_loads_psycopg(tmp_path):
    code = f"import sys; from jobstore import JobStore; JobStore({str(tmp_path / 's')!r}).create_job('a'); print('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_a_bad_store_name_is_refused(postgres_url):
    with pytest.raises(ValueError, match="name must be a store name"):
        JobStore(f"{postgres_url}#Bad-Name")
