"""A store records the schema it was opened with, and every later opener, process or command uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobstore import CorruptStoreError, InvalidArgumentError, InvalidJobError, JobStore, SchemaConflictError, published_schema

from conftest import one_line_error


def with_urgency(**spec: Any) -> dict[str, Any]:
    schema = published_schema()
    schema["properties"]["urgency"] = {"type": "integer", "minimum": 0, "default": 0, **spec}
    return schema


def test_a_later_opener_without_a_schema_uses_the_recorded_one(root):
    first = JobStore(root, schema=with_urgency())
    job = first.create_job("a", "u", "r", "")
    later = JobStore(root)
    assert later.set_job(job["id"], {"urgency": 5})["urgency"] == 5
    assert later.create_job("b", "u", "r", "")["urgency"] == 0  # the recorded schema's default
    with pytest.raises(InvalidJobError, match="'urgency'"):
        later.set_job(job["id"], {"urgency": -1})
    assert later.check() == []
    assert "urgency" in later.get_job_schema()


def test_another_process_uses_the_recorded_schema(root):
    JobStore(root, schema=with_urgency())
    code = (
        "import sys; from jobstore import JobStore\n"
        "store = JobStore(sys.argv[1]); print(store.create_job('a', 'u', 'r', '')['urgency'])"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_opening_with_the_same_schema_again_is_fine(root):
    JobStore(root, schema=with_urgency())
    JobStore(root, schema=with_urgency()).create_job("a", "u", "r", "")


@pytest.mark.parametrize(
    ("other", "words"),
    [
        (published_schema(), "fields dropped: urgency"),
        (with_urgency(maximum=9), "fields changed: urgency"),
    ],
)
def test_opening_with_a_different_schema_is_refused_naming_the_difference(root, other, words):
    store = JobStore(root, schema=with_urgency())
    job = store.create_job("a", "u", "r", "")
    with pytest.raises(SchemaConflictError, match=f"records another job schema \\({words}\\)"):
        JobStore(root, schema=other)
    assert JobStore(root).get_job(job["id"]) == job
    assert json.loads((root / ".jobstore" / "schema.json").read_text()) == with_urgency()


def test_the_published_schema_is_not_recorded(root):
    JobStore(root, schema=published_schema()).create_job("a", "u", "r", "")
    assert not (root / ".jobstore" / "schema.json").exists()
    JobStore(root, schema=with_urgency())  # a store that records none takes the first custom one
    assert (root / ".jobstore" / "schema.json").exists()


def test_a_schema_the_jobs_fail_is_not_recorded(root):
    store = JobStore(root, schema=with_urgency())
    job = store.create_job("a", "u", "r", "")
    store.set_job(job["id"], {"urgency": 7})
    with pytest.raises(SchemaConflictError, match=f"holds 1 job the schema refuses.*{job['id']}.*'urgency': 7 is greater than the maximum of 2"):
        store.change_schema(with_urgency(maximum=2))
    assert JobStore(root).set_job(job["id"], {"urgency": 8})["urgency"] == 8


def test_a_changed_schema_is_followed_by_stores_already_open(root):
    store = JobStore(root, schema=with_urgency())
    other = JobStore(root)
    job = other.create_job("a", "u", "r", "")
    wider = with_urgency()
    wider["properties"]["team"] = {"type": "string", "default": ""}
    JobStore(root).change_schema(wider)
    assert other.set_job(job["id"], {"team": "blue"})["team"] == "blue"
    assert store.get_job(job["id"])["team"] == "blue"
    assert "team" in store.get_job_schema()


def test_a_bad_schema_is_refused_before_the_store_is_made(tmp_path):
    root = tmp_path / "new"
    with pytest.raises(InvalidArgumentError, match="describing every published field"):
        JobStore(root, schema={"type": "object", "properties": {"id": {"type": "string"}}})
    assert not root.exists()


def test_a_hand_damaged_recorded_schema_is_reported_and_can_be_replaced(root):
    store = JobStore(root, schema=with_urgency())
    store.create_job("a", "u", "r", "")
    (root / ".jobstore" / "schema.json").write_text('{"properties": ')
    with pytest.raises(CorruptStoreError, match="schema.json"):
        JobStore(root).get_jobs()
    assert any("schema.json" in str(problem) for problem in JobStore(root).check())
    JobStore(root).change_schema(with_urgency())
    assert JobStore(root).check() == []


def test_the_command_line_uses_and_sets_the_recorded_schema(jobstore, root, tmp_path):
    store = JobStore(root, schema=with_urgency())
    job = store.create_job("a", "u", "r", "")
    store.set_job(job["id"], {"urgency": 3})
    assert jobstore("validate").returncode == 0
    canceled = jobstore("cancel", job["id"])
    assert canceled.returncode == 0, canceled.stderr
    shown = jobstore("schema")
    assert json.loads(shown.stdout) == with_urgency()
    narrower = tmp_path / "narrower.json"
    narrower.write_text(json.dumps(with_urgency(maximum=2)))
    one_line_error(jobstore("schema", "--set", str(narrower)), 1, "holds 1 job the schema refuses", job["id"])
    wider = with_urgency(maximum=9)
    (tmp_path / "wider.json").write_text(json.dumps(wider))
    done = jobstore("schema", "--set", str(tmp_path / "wider.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(jobstore("schema").stdout) == wider


def test_the_command_line_refuses_a_file_that_is_no_schema_and_makes_no_store(jobstore, tmp_path):
    target = tmp_path / "fresh"
    (tmp_path / "list.json").write_text("[1]")
    one_line_error(jobstore("schema", "--set", str(tmp_path / "list.json"), store=target), 1, "a JSON Schema (a dict)")
    (tmp_path / "torn.json").write_text("{")
    one_line_error(jobstore("schema", "--set", str(tmp_path / "torn.json"), store=target), 2, "is not JSON")
    assert not target.exists()
