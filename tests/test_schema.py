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


API_FIELDS = ["id", "name", "user", "request", "result", "status", "messages"]


def test_the_field_table_lists_the_seven_api_job_fields_and_all_fields_on_request(store):
    assert list(store.get_job_schema()) == API_FIELDS
    everything = store.get_job_schema(all_fields=True)
    assert list(everything) == list(published_schema()["properties"])
    assert {name: everything[name] for name in API_FIELDS} == store.get_job_schema()
    assert everything["attempts"] == {"type": "integer", "required": False, "unique": False, "default": 0, "options": []}
    assert everything["progress"]["default"] == {"completed": 0, "total": None}
    assert everything["history"]["default"] == []
    assert everything["canceled"]["default"] is False
    assert everything["cancelRequested"]["default"] is False


@pytest.mark.parametrize("all_fields", [False, True])
def test_a_job_made_of_the_table_defaults_passes_the_schema(store, all_fields):
    table = store.get_job_schema(all_fields=all_fields)
    document = {**{name: row["default"] for name, row in table.items()}, "id": "j"}
    store.schema.validate(document)
    assert store.schema.problems(document) == []
    for name, row in table.items():
        assert store.schema.problems({"id": "j", name: row["default"]} if name != "id" else {"id": "j"}) == [], name


def test_every_table_default_of_a_custom_schema_is_a_value_its_field_can_hold(root):
    schema = published_schema()
    schema["properties"]["weight"] = {"type": "number"}
    schema["properties"]["note"] = {"type": ["string", "null"]}
    schema["properties"]["size"] = {"enum": ["small", "large"]}
    schema["properties"]["owner"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
    }
    store = JobStore(root, schema=schema)
    table = store.get_job_schema()
    assert list(table) == [*API_FIELDS, "weight", "note", "size", "owner"]
    assert [table[name]["default"] for name in ("weight", "note", "size", "owner")] == [0, None, "small", {"name": ""}]
    defaults = {name: row["default"] for name, row in store.get_job_schema(all_fields=True).items()}
    store.schema.validate({**defaults, "id": "j"})
    made = store.set_job("j", {name: defaults[name] for name in ("weight", "note", "size", "owner")})
    assert made["owner"] == {"name": ""}


def test_the_schema_says_the_progress_total_is_always_there_and_may_be_null(store):
    progress = published_schema()["properties"]["progress"]
    assert progress["required"] == ["completed", "total"]
    assert "null" in progress["properties"]["total"]["type"]
    store.set_job("j", {}, "running")
    assert store.set_job_progress("j", 3)["progress"] == {"completed": 3, "total": None}
    with pytest.raises(InvalidJobError, match="field 'progress'"):
        store.set_job("j", {"progress": {"completed": 3}})


def test_the_schema_requires_only_the_id(store):
    assert published_schema()["required"] == ["id"]
    assert [name for name, row in store.get_job_schema(all_fields=True).items() if row["required"]] == ["id"]
    assert list(published_schema()["properties"])[:7] == API_FIELDS


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


def test_unicode_nul_and_long_strings_round_trip(store, engine):
    text = "naïve 日本語 \x00 " + "x" * 100_000
    if engine == "postgres":
        # PostgreSQL holds no NUL in text or jsonb: refused, naming it, and nothing is written.
        with pytest.raises(InvalidJobError, match="U\\+0000"):
            store.set_job("a/b.c\x00d", {"request": text})
        assert store.get_jobs() == []
        text = text.replace("\x00", "")
        store.set_job("a/b.c", {"request": text})
        assert JobStore(store.location).get_job("a/b.c")["request"] == text
        return
    store.set_job("a/b.c\x00d", {"request": text})
    assert store.get_job("a/b.c\x00d")["request"] == text
    assert JobStore(store.location).get_job("a/b.c\x00d")["request"] == text


def extended_schema() -> dict:
    schema = published_schema()
    schema["properties"]["urgency"] = {"type": "integer", "minimum": 0, "default": 0}
    schema["properties"]["weight"] = {"type": "number"}
    return schema


def test_a_custom_schema_extends_the_published_one(root):
    store = JobStore(root, schema=extended_schema())
    made = store.set_job("j", {"urgency": 3})
    assert made["urgency"] == 3
    assert store.create_job("n")["urgency"] == 0
    assert store.get_job_schema()["urgency"] == {
        "type": "integer",
        "required": False,
        "unique": False,
        "default": 0,
        "options": [],
    }
    with pytest.raises(InvalidJobError, match="field 'urgency'"):
        store.set_job("j", {"urgency": -1})
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
    store.set_job("j", {"urgency": 1})
    with pytest.raises(InvalidJobError, match="field 'urgency'"):
        store.set_job("j", {"urgency": True})
    with pytest.raises(InvalidJobError, match="field 'urgency'"):
        store.set_job("j", {"urgency": 1.5})
    assert store.get_job("j")["urgency"] == 1


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
    store.flush()
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
    {"urgency": -1},
]


@pytest.mark.parametrize("change", BAD_CHANGES, ids=lambda change: next(iter(change)))
@pytest.mark.parametrize("custom", [False, True], ids=["published", "with urgency"])
def test_the_field_by_field_check_refuses_what_the_whole_document_check_refuses(change, custom):
    document = published_schema()
    if custom:
        document["properties"]["urgency"] = {"type": "integer", "minimum": 0}
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


# The field-by-field check only ever says "passes" or "look closer": every refusal is worded by
# the whole-document validator. What must hold is that it passes exactly what that validator
# passes, whatever it remembered, and that the words of a refusal are those of problems().

STAMP = "2026-01-01T00:00:00.000000Z"


def custom_schema() -> dict:
    # Fields of every kind the check takes apart or leaves to jsonschema: a composite value under
    # a keyword spanning items, a $ref to an object, a recursive $ref, a $ref beside a keyword.
    schema = published_schema()
    schema["$defs"] = {
        "person": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}, "required": ["name"], "additionalProperties": False},
        "node": {"type": "object", "properties": {"label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}},
        "code": {"type": "string", "pattern": "^[A-Z]+$"},
    }
    schema["properties"].update({
        "urgency": {"type": "integer", "minimum": 0, "default": 0},
        "weight": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "owner": {"$ref": "#/$defs/person"},
        "tree": {"$ref": "#/$defs/node"},
        "code": {"$ref": "#/$defs/code", "maxLength": 3},
        "extra": {"type": "object", "properties": {"anything": True, "nothing": False}},
        "note": {"type": ["string", "null"]},
    })
    return schema


def draft7_schema() -> dict:
    # Draft 7 ignores the keywords beside a $ref: "level" is an integer, whatever "type" says there.
    schema = published_schema()
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["definitions"] = {"level": {"type": "integer"}}
    schema["properties"]["level"] = {"$ref": "#/definitions/level", "type": "string"}
    return schema


GOOD_RUNNING = {
    "id": "job-1", "name": "n", "user": "u", "request": "r", "result": "", "status": "running", "messages": "",
    "createdAt": STAMP, "updatedAt": STAMP, "startedAt": STAMP, "attempts": 1, "worker": "w",
    "progress": {"completed": 1, "total": None},
    "history": [{"status": "pending", "at": STAMP}, {"status": "running", "at": STAMP}, {"status": "running", "at": STAMP}],
}
PUBLISHED_CHANGES = [
    {},
    {"name": 5}, {"name": None}, {"user": ["a"]}, {"messages": {"a": 1}}, {"request": 1.5}, {"result": True},
    {"id": ""}, {"id": 7}, {"createdAt": 0}, {"updatedAt": None}, {"cancelRequested": "yes"}, {"canceled": 0},
    {"status": "sleeping"}, {"status": "Running"}, {"status": None},
    {"attempts": -1}, {"attempts": True}, {"attempts": 1.5}, {"attempts": 2.0}, {"attempts": "1"},
    {"progress": {"completed": 1}}, {"progress": {"completed": -1, "total": 3}}, {"progress": {"completed": 1, "total": 2, "x": 0}},
    {"progress": {"completed": 1.0, "total": None}}, {"progress": [1, 2]}, {"progress": None},
    {"history": []}, {"history": "yesterday"}, {"history": ({"status": "pending", "at": STAMP},)},
    {"history": [{"status": "pending"}]}, {"history": [{"at": STAMP}]}, {"history": [{"status": "asleep", "at": STAMP}]},
    {"history": [{"status": "pending", "at": 1}]}, {"history": [{"status": "pending", "at": STAMP, "by": "me"}]},
    {"history": [{"status": "pending", "at": STAMP}, "running"]}, {"history": [None]},
    {"history": [{"status": True, "at": STAMP}]}, {"history": [{"status": "pending", "at": STAMP}, {"status": "running", "at": []}]},
    {"colour": "blue"}, {"colour": "blue", "nmae": 1, "name": 2}, {"urgency": 1},
]
CUSTOM_CHANGES = [
    {"urgency": 0}, {"urgency": -1}, {"urgency": True}, {"urgency": 1.0}, {"weight": 2}, {"weight": "2"},
    {"tags": []}, {"tags": ["a", "b"]}, {"tags": ["a", "b", "c"]}, {"tags": ["a", 1]}, {"tags": ("a",)},
    {"owner": {"name": "ann"}}, {"owner": {"name": ""}}, {"owner": {}}, {"owner": {"name": "ann", "age": 3}}, {"owner": "ann"},
    {"tree": {"label": "a", "children": [{"label": "b", "children": []}]}}, {"tree": {"children": [{"label": 1}]}},
    {"code": "AB"}, {"code": "ab"}, {"code": "ABCD"}, {"code": 5},
    {"extra": {"anything": object()}}, {"extra": {"nothing": 1}}, {"extra": {"other": 1}}, {"note": None}, {"note": "x"}, {"note": 1},
]


def compare_with_the_whole_document_check(schema: JobSchema, documents: list[dict]) -> None:
    for document in documents:
        expected = schema.problems(document)  # jsonschema's iter_errors over the whole document
        if expected:
            with pytest.raises(InvalidJobError) as raised:
                schema.validate(document)
            assert list(raised.value.problems) == expected, document
        else:
            schema.validate(document)
        if schema._by_field is not None:
            assert schema._by_field.passes(document) == (not expected), document


@pytest.mark.parametrize("make", [published_schema, custom_schema, draft7_schema])
def test_the_field_by_field_check_agrees_with_the_whole_document_check(make):
    schema = JobSchema(make())
    assert schema._by_field is not None
    changes = PUBLISHED_CHANGES + (CUSTOM_CHANGES if make is custom_schema else [])
    if make is draft7_schema:
        changes = changes + [{"level": 1}, {"level": "1"}]
    documents = [{**GOOD_RUNNING, **change} for change in changes]
    documents += [{name: value for name, value in GOOD_RUNNING.items() if name != "id"}, {"id": "j"}]
    # Twice, so that the second round meets every value that passed the first remembered.
    compare_with_the_whole_document_check(schema, documents)
    compare_with_the_whole_document_check(schema, documents)


def test_every_missing_required_field_is_named_as_before():
    document = published_schema()
    document["required"] = ["id", "name", "user"]
    schema = JobSchema(document)
    compare_with_the_whole_document_check(schema, [{"id": "j"}, {"name": "n"}, {}, {"id": "j", "name": "n", "user": "u"}])
    with pytest.raises(InvalidJobError) as raised:
        schema.validate({"id": "j", "colour": "red"})
    assert ("name", "required field is missing") in raised.value.problems
    assert raised.value.problems[-1][0] == "colour"
    assert raised.value.problems[-1][1].startswith("unknown field (allowed: id, name, user, ")


def test_a_mapping_that_is_no_dict_is_left_to_jsonschema():
    from types import MappingProxyType

    schema = JobSchema()
    compare_with_the_whole_document_check(schema, [MappingProxyType(dict(GOOD_RUNNING))])
    with pytest.raises(InvalidJobError, match="is not of type 'object'"):
        schema.validate(MappingProxyType(dict(GOOD_RUNNING)))


@pytest.mark.parametrize("spanning", [
    {"dependentRequired": {"worker": ["leaseExpiresAt"]}},
    {"if": {"properties": {"status": {"const": "running"}}}, "then": {"required": ["startedAt"]}},
    {"minProperties": 3},
    {"additionalProperties": {"type": "string"}},
])
def test_a_keyword_spanning_fields_sends_every_document_through_the_whole_document_check(spanning):
    document = published_schema()
    document.update(spanning)
    schema = JobSchema(document)
    assert schema._by_field is None
    without_started = {name: value for name, value in GOOD_RUNNING.items() if name != "startedAt"}
    compare_with_the_whole_document_check(schema, [GOOD_RUNNING, without_started, {"id": "j"}, {**GOOD_RUNNING, "extra": 1}])


@pytest.mark.parametrize("unusual", [
    {"$defs": {"elsewhere": {"$id": "urn:other", "type": "string"}}},
    {"$defs": {"anchored": {"$anchor": "here", "type": "string"}}},
    {"$defs": {"dialect": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}}},
])
def test_references_by_scope_or_a_second_base_leave_every_document_to_the_whole_document_check(unusual):
    document = published_schema()
    document.update(unusual)
    schema = JobSchema(document)
    assert schema._by_field is None
    compare_with_the_whole_document_check(schema, [GOOD_RUNNING, {**GOOD_RUNNING, "name": 1}])


def test_a_reference_is_resolved_once_not_at_each_check():
    schema = JobSchema()
    history = schema._by_field._fields["history"]
    status = history._items._fields["status"]
    assert status.validator.schema == {**published_schema()["properties"]["status"]}  # inlined: no "$ref" left


def test_a_time_that_is_not_a_date_time_is_refused_naming_the_field(store):
    with pytest.raises(InvalidJobError, match="field 'leaseExpiresAt': 'tomorrow' is not a date-time"):
        store.set_job("j", {"leaseExpiresAt": "tomorrow"}, "running")
    with pytest.raises(InvalidJobError, match="field 'createdAt': 'yesterday' is not a date-time"):
        store.create_jobs([{"name": "t", "createdAt": "yesterday"}])
    assert store.get_jobs() == []
    made = store.create_jobs([{"name": "t", "createdAt": "2026-01-31T12:00:00Z"}])[0]
    assert made["createdAt"] == "2026-01-31T12:00:00Z"
