"""Checked writes: every document is validated against the job schema before anything is written."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from jobstore import InvalidJobError, JobStore, published_schema
from jobstore._schema import JobSchema

from conftest import snapshot

SCHEMA_FILE = Path(__file__).parent.parent / "schemas" / "job.schema.json"


def test_the_packaged_schema_is_the_published_file():
    packaged = resources.files("jobstore").joinpath("schemas/job.schema.json").read_text(encoding="utf-8")
    assert json.loads(packaged) == json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == published_schema()


def test_the_field_table_follows_the_schema_file():
    schema = published_schema()
    schema["properties"]["name"]["default"] = "unnamed"
    schema["required"] = ["id", "name"]
    table = JobSchema(schema).field_table()
    assert table["name"]["default"] == "unnamed"
    assert table["name"]["required"] is True


def test_unknown_fields_are_rejected_and_named(store, root):
    created = store.create_job("n", "u", "r")
    before = snapshot(root)
    with pytest.raises(InvalidJobError, match=r"invalid job '[-0-9a-f]+': field 'nmae': unknown field") as caught:
        store.set_job(created["id"], {"nmae": "typo"})
    assert caught.value.job_id == created["id"]
    assert caught.value.fields == ("nmae",)
    assert snapshot(root) == before


@pytest.mark.parametrize("field", ["name", "user", "request", "result", "messages"])
@pytest.mark.parametrize("value", [5, None, ["a"], {"a": 1}, 1.5, True])
def test_published_fields_must_be_strings(store, root, field, value):
    store.set_job("j", {"name": "before"})
    before = snapshot(root)
    with pytest.raises(InvalidJobError, match=f"invalid job 'j': field '{field}': .* is not of type 'string'"):
        store.set_job("j", {field: value})
    assert snapshot(root) == before


def test_every_problem_is_reported(store):
    with pytest.raises(InvalidJobError) as caught:
        store.set_job("j", {"name": 1, "user": 2, "colour": "red"})
    assert set(caught.value.fields) == {"name", "user", "colour"}


@pytest.mark.parametrize("bad_id", ["", None, 1.5, ["a"], True])
def test_a_job_id_is_a_non_empty_string_or_an_int(store, bad_id):
    with pytest.raises(InvalidJobError, match="field 'id': a job id is a non-empty string or an int"):
        store.set_job(bad_id, {})
    assert store.get_jobs() == []


def test_data_must_be_a_mapping(store):
    with pytest.raises(InvalidJobError, match="data must be a dict of job fields, not list"):
        store.set_job("j", ["name", "x"])


def test_create_job_checks_its_fields(store, root):
    with pytest.raises(InvalidJobError, match="field 'name'"):
        store.create_job(name=7)
    assert store.get_jobs() == []


def test_a_lone_surrogate_cannot_reach_the_file(store):
    with pytest.raises(InvalidJobError, match="not storable as JSON"):
        store.set_job("j", {"name": "\ud800"})
    assert store.get_jobs() == []


def test_unicode_nul_and_long_strings_round_trip(store):
    text = "naïve 日本語 \x00 " + "x" * 100_000
    store.set_job("a/b.c\x00d", {"request": text})
    assert store.get_job("a/b.c\x00d")["request"] == text
    assert JobStore(store.path).get_job("a/b.c\x00d")["request"] == text


def extended_schema() -> dict:
    schema = published_schema()
    schema["properties"]["priority"] = {"type": "integer", "minimum": 0, "default": 0}
    schema["properties"]["weight"] = {"type": "number"}
    return schema


def test_a_custom_schema_extends_the_published_one(root):
    store = JobStore(root, schema=extended_schema())
    made = store.set_job("j", {"priority": 3})
    assert made["priority"] == 3
    assert store.create_job("n")["priority"] == 0
    assert store.get_job_schema()["priority"] == {
        "type": "integer",
        "required": False,
        "unique": False,
        "default": 0,
        "options": [],
    }
    with pytest.raises(InvalidJobError, match="field 'priority'"):
        store.set_job("j", {"priority": -1})
    with pytest.raises(InvalidJobError, match="field 'nmae'"):
        store.set_job("j", {"nmae": "still rejected"})


def test_a_number_the_schema_allows_but_json_cannot_hold_is_rejected(root):
    store = JobStore(root, schema=extended_schema())
    with pytest.raises(InvalidJobError, match="not storable as JSON"):
        store.set_job("j", {"weight": float("nan")})
    assert store.get_jobs() == []


def test_a_custom_schema_must_keep_the_published_fields(root):
    schema = published_schema()
    del schema["properties"]["messages"]
    with pytest.raises(ValueError, match="missing: messages"):
        JobStore(root, schema=schema)


def test_a_custom_schema_must_keep_the_states(root):
    schema = published_schema()
    schema["properties"]["status"]["enum"] = ["idle", "done"]
    with pytest.raises(ValueError, match="'status' field keeps the enum"):
        JobStore(root, schema=schema)


def test_an_invalid_json_schema_is_refused(root):
    with pytest.raises(ValueError, match="a valid JSON Schema"):
        JobStore(root, schema={"type": 12})


def test_a_value_that_passed_once_is_not_trusted_under_another_type(root):
    # 1, 1.0 and True are equal in Python; the schema tells them apart, so the store must too.
    store = JobStore(root, schema=extended_schema())
    store.set_job("j", {"priority": 1})
    with pytest.raises(InvalidJobError, match="field 'priority'"):
        store.set_job("j", {"priority": True})
    with pytest.raises(InvalidJobError, match="field 'priority'"):
        store.set_job("j", {"priority": 1.5})
    assert store.get_job("j")["priority"] == 1


def test_a_list_or_object_that_passed_once_is_not_trusted_with_a_part_of_another_type(store):
    store.set_job("j", {"progress": {"completed": 1, "total": 2}})
    with pytest.raises(InvalidJobError, match="field 'progress'"):
        store.set_job("j", {"progress": {"completed": True, "total": 2}})
    history = store.get_job("j")["history"]
    with pytest.raises(InvalidJobError, match="field 'history'"):
        store.set_job("j", {"history": [{**history[0], "status": True}]})
    assert store.get_job("j")["progress"] == {"completed": 1, "total": 2}


def test_a_field_hand_edited_to_a_bad_value_is_caught_on_the_next_write(store, root):
    store.set_job("j", {"name": "fine"})
    path = root / "pending.json"
    tables = json.loads(path.read_text(encoding="utf-8"))
    tables["pending"]["j"]["name"] = 7
    path.write_text(json.dumps(tables), encoding="utf-8")
    before = snapshot(root)
    with pytest.raises(InvalidJobError, match="field 'name'"):
        store.set_job_running("j")
    assert snapshot(root) == before


def test_a_schema_relating_two_fields_checks_whole_documents(root):
    # Remembering single field values is sound only while no keyword looks at two fields at once.
    schema = extended_schema()
    schema["properties"]["unit"] = {"type": "string"}
    schema["dependentRequired"] = {"weight": ["unit"]}
    store = JobStore(root, schema=schema)
    store.set_job("a", {"weight": 1.0, "unit": "kg"})
    with pytest.raises(InvalidJobError, match="'unit' is a dependency of 'weight'"):
        store.set_job("b", {"weight": 1.0})


GOOD = {
    "id": "7", "name": "n", "user": "u", "request": "r", "result": "", "status": "running", "messages": "",
    "history": [{"status": "pending", "at": "2026-01-01T00:00:00.000000Z"}, {"status": "running", "at": "2026-01-01T00:00:01.000000Z"}],
    "progress": {"completed": 1, "total": 3}, "attempts": 1,
}
BAD_CHANGES = [
    {"name": 5},
    {"status": "sleeping"},
    {"history": [{"status": "pending", "at": "2026-01-01T00:00:00.000000Z"}, {"status": "asleep", "at": "x"}]},
    {"history": [{"status": "pending"}]},
    {"history": "yesterday"},
    {"progress": {"completed": -1, "total": 3}},
    {"attempts": True},
    {"attempts": 1.5},
    {"colour": "blue"},
    {"priority": -1},
]


@pytest.mark.parametrize("change", BAD_CHANGES, ids=lambda change: next(iter(change)))
@pytest.mark.parametrize("custom", [False, True], ids=["published", "with priority"])
def test_the_field_by_field_check_refuses_what_the_whole_document_check_refuses(change, custom):
    document = published_schema()
    if custom:
        document["properties"]["priority"] = {"type": "integer", "minimum": 0}
    schema = JobSchema(document)
    schema.validate(GOOD)  # the good values are remembered as passing: the bad ones must still be seen
    bad = {**GOOD, **change}
    expected = schema.problems(bad)  # every field checked by the whole-document validator
    assert expected
    with pytest.raises(InvalidJobError) as raised:
        schema.validate(bad)
    assert list(raised.value.problems) == expected


def test_a_schema_with_a_keyword_spanning_fields_is_checked_whole():
    document = published_schema()
    document["dependentRequired"] = {"worker": ["leaseExpiresAt"]}
    schema = JobSchema(document)
    schema.validate(GOOD)
    with pytest.raises(InvalidJobError, match="leaseExpiresAt"):
        schema.validate({**GOOD, "worker": "w"})
    schema.validate({**GOOD, "worker": "w", "leaseExpiresAt": "2026-01-01T00:05:00.000000Z"})


def test_a_remembered_value_of_another_type_is_checked_again():
    schema = JobSchema()
    schema.validate({**GOOD, "attempts": 1})
    with pytest.raises(InvalidJobError, match="attempts"):
        schema.validate({**GOOD, "attempts": True})
    with pytest.raises(InvalidJobError, match="attempts"):
        schema.validate({**GOOD, "attempts": "1"})
