"""The PostgreSQL engine's own promises: its layout, claims across processes, and nothing of it loaded for file stores."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import httpx
import psycopg
import pytest

from jobstore import CorruptStoreError, InvalidJobError, JobStore
from jobstore.api import job

from conftest import SCRIPT, Service


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
        assert db.execute(f'SELECT value FROM "{name}".meta WHERE key = %s', ("layout",)).fetchone()[0] == 2
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


def test_migrate_copies_a_file_store_into_a_database_and_back(tmp_path, url):
    files = JobStore(tmp_path / "files")
    made = files.create_jobs([{"name": str(n)} for n in range(5)])
    files.claim_job("w")
    files.set_job_progress(made[0]["id"], 1, 2)
    files.claim_job("w")
    files.fail_job(made[1]["id"], "broke")
    files.set_job("kept", {"name": "by hand"}, "idle")
    before = files.get_jobs()
    done = subprocess.run([str(SCRIPT), "migrate", "--from", str(tmp_path / "files"), "--to", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"copied 6 jobs from {tmp_path / 'files'} to {url}"
    assert JobStore(url).get_jobs() == before  # every field, every state, the same order
    back = subprocess.run([str(SCRIPT), "migrate", "--from", url, "--to", str(tmp_path / "again")], capture_output=True, text=True, timeout=60)
    assert back.returncode == 0, back.stderr
    assert JobStore(tmp_path / "again").get_jobs() == before


def test_migrate_into_a_store_holding_jobs_changes_nothing(tmp_path, url):
    JobStore(tmp_path / "files").create_job("a")
    target = JobStore(url)
    target.create_job("already here")
    done = subprocess.run([str(SCRIPT), "migrate", "--from", str(tmp_path / "files"), "--to", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "an empty store (it holds jobs already)" in done.stderr
    assert [job["name"] for job in target.get_jobs()] == ["already here"]


def test_migrate_is_all_or_nothing_when_a_document_fails_the_check(tmp_path, url):
    files = JobStore(tmp_path / "files")
    files.create_jobs([{"name": "good"}, {"name": "bad"}])
    files.flush()
    path = tmp_path / "files" / "pending.json"
    path.write_text(path.read_text().replace('"name": "bad"', '"name": 7'))
    with pytest.raises(InvalidJobError, match="field .name."):
        JobStore(url).copy_from(JobStore(tmp_path / "files"))
    assert JobStore(url).get_jobs() == []


def terminate_others(postgres_url: str) -> int:
    """End every other connection to the database, as a server restart or a network cut would."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        return len(db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchall())


def test_connections_lost_while_idle_are_replaced(url, postgres_url):
    store = JobStore(url)
    made = store.create_job("a")
    for _ in range(5):  # the next operation follows at once: the server may not have closed the connection yet
        assert terminate_others(postgres_url) >= 1
        assert store.find_job(made["id"])[1] == "pending"
    assert terminate_others(postgres_url) >= 1
    assert store.claim_job("w")["id"] == made["id"]


def test_a_connection_lost_before_the_write_is_sent_runs_the_operation_again(url, postgres_url):
    store = JobStore(url)
    made = store.create_job("a")
    runs = []

    def cut(session, batch):
        runs.append(1)
        batch.put(store.find_job(made["id"])[1], {**session.find(made["id"])[1], "name": "changed"})
        if len(runs) == 1:
            terminate_others(postgres_url)  # this session's own connection goes too
            deadline = time.monotonic() + 5
            while not select.select([session._db.fileno()], [], [], 0.05)[0] and time.monotonic() < deadline:
                pass  # until the server's farewell has come: then nothing is sent on it
        session.apply(batch)

    store._transact(cut)
    assert len(runs) == 2
    assert store.find_job(made["id"])[0]["name"] == "changed"


def test_a_connection_lost_mid_operation_changes_nothing_and_says_so(url, postgres_url):
    from jobstore import StoreWriteError

    store = JobStore(url)
    made = store.create_job("a")

    def cut(session, batch):
        batch.put(store.find_job(made["id"])[1], {**session.find(made["id"])[1], "name": "changed"})
        terminate_others(postgres_url)
        session.find(made["id"])  # the read fails: the write was never sent
        session.apply(batch)

    with pytest.raises(StoreWriteError, match="nothing was changed"):
        store._transact(cut)
    assert store.find_job(made["id"])[0]["name"] == "a"


def test_validate_checks_a_database_store(url):
    store = JobStore(url)
    made = store.create_job("a", "u", "r", "")
    sound = subprocess.run([str(SCRIPT), "--store", url, "validate"], capture_output=True, text=True, timeout=60)
    assert sound.returncode == 0 and sound.stdout.startswith("no problems"), sound.stderr
    name = url.rsplit("#", 1)[1]
    with psycopg.connect(url.split("#")[0]) as db:  # a document changed by hand, past the store's checks
        db.execute(f"""UPDATE "{name}".jobs_pending SET doc = jsonb_set(doc, '{{name}}', '5') WHERE id = %s""", (made["id"],))
    damaged = subprocess.run([str(SCRIPT), "--store", url, "validate"], capture_output=True, text=True, timeout=60)
    assert damaged.returncode == 1
    assert damaged.stdout.startswith(f"{name}.jobs_pending: job {made['id']!r}: ") and "name" in damaged.stdout
    assert damaged.stderr == f"1 problem in {url}\n"


def test_the_service_tells_changes_of_a_database_store_as_they_happen(url):
    service = Service(url)  # type: ignore[arg-type]
    try:
        ready = threading.Event()
        events: list[dict] = []

        def read() -> None:
            with httpx.stream("GET", service.url + "/events", timeout=30) as stream:
                for line in stream.iter_lines():
                    ready.set() if line.startswith(":") else None
                    if line.startswith("data: "):
                        events.append(json.loads(line[len("data: ") :]))
                        if len(events) == 3:
                            return

        reader = threading.Thread(target=read)
        reader.start()
        assert ready.wait(10)
        # Another process makes the changes: only the database can tell the service of them.
        change = (
            "import sys, time; from jobstore import JobStore\n"
            "store = JobStore(sys.argv[1]); time.sleep(0.3)\n"
            "job = store.create_job('j'); time.sleep(0.2); store.claim_job('w'); time.sleep(0.2)\n"
            "store.update_job_result(job['id'], 'done'); print(job['id'])\n"
        )
        done = subprocess.run([sys.executable, "-c", change, url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        reader.join(timeout=20)
        assert [(event["id"], event["status"]) for event in events] == [(job_id, s) for s in ("pending", "running", "finished")]
        assert httpx.get(f"{service.url}/jobs/{job_id}/wait", params={"timeout": 5}).status_code == 200
    finally:
        errors = service.stop()
    assert "Traceback" not in errors, errors


def test_a_store_of_the_first_layout_is_migrated_on_opening(url, postgres_url):
    old = JobStore(url)
    later = old.create_job("later", priority=9, delay=3600)
    first, second = old.create_job("first"), old.create_job("second", priority=1)
    name = url.rsplit("#", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as db:
        # What the first release made: no claim-order columns, no scheduling indexes.
        for index in ("jobs_pending_due", "jobs_idle_key", "jobs_pending_key", "jobs_running_key", "jobs_idle_needs", "jobs_pending_needs"):
            db.execute(f'DROP INDEX "{name}".{index}')
        db.execute(f'ALTER TABLE "{name}".jobs_pending DROP COLUMN priority, DROP COLUMN due')
        db.execute(f"UPDATE \"{name}\".meta SET value = '1' WHERE key = 'layout'")
    opened = JobStore(url)
    assert [opened.claim_job("w")["id"] for _ in range(2)] == [second["id"], first["id"]]
    assert opened.claim_job("w") is None and opened.get_job(later["id"])["priority"] == 9
    with psycopg.connect(postgres_url) as db:
        assert db.execute(f'SELECT value FROM "{name}".meta WHERE key = %s', ("layout",)).fetchone()[0] == 2
        columns = {row[0] for row in db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'jobs_pending'", (name,))}
        assert {"priority", "due"} <= columns


def test_a_store_of_a_later_layout_is_refused_untouched(url, postgres_url):
    JobStore(url).create_job("a")
    name = url.rsplit("#", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"UPDATE \"{name}\".meta SET value = '3' WHERE key = 'layout'")
    with pytest.raises(CorruptStoreError, match="layout is version 3, which this release of jobstore does not know"):
        JobStore(url)
    with psycopg.connect(postgres_url) as db:
        assert db.execute(f'SELECT value FROM "{name}".meta WHERE key = %s', ("layout",)).fetchone()[0] == 3
