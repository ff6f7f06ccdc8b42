"""The job schema: loading the published one, checking documents against it, and its field table."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import SchemaError, ValidationError

from ._errors import InvalidArgumentError, InvalidJobError
from ._status import STATES

_SCHEMA_RESOURCE = "schemas/job.schema.json"

# Top-level keywords under which a document is valid exactly when each of its fields is: no
# keyword here looks at two fields at once, so a field value that passed once passes again.
_PER_FIELD_KEYWORDS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "examples",
     "default", "type", "properties", "required", "additionalProperties", "x-unique"}
)
#: Keywords that say nothing about validity.
_ANNOTATIONS = frozenset({"$comment", "title", "description", "examples", "default"})
_REMEMBERED_TYPES = (str, int, float, bool, type(None))
_LONGEST_REMEMBERED = 1024  # characters; longer strings are checked every time
_MOST_REMEMBERED = 8192  # field values; the memory is emptied when it grows past this


@functools.cache
def _published_text() -> str:
    return resources.files(__package__).joinpath(_SCHEMA_RESOURCE).read_text(encoding="utf-8")


def published_schema() -> dict[str, Any]:
    """Return a fresh copy of the published job schema (``schemas/job.schema.json``)."""
    schema: dict[str, Any] = json.loads(_published_text())
    return schema


class JobSchema:
    """A job JSON Schema compiled once, with what the store derives from it.

    :param schema: a JSON Schema for job documents; None for the published one. A custom schema
        must describe the seven published fields and keep the status enum.
    :raises InvalidArgumentError: (a ValueError) when the schema is not a valid JSON Schema, or
        drops a published field
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        if schema is not None and not isinstance(schema, Mapping):
            raise InvalidArgumentError("schema", schema, "a JSON Schema (a dict) or None")
        document = published_schema() if schema is None else copy.deepcopy(dict(schema))
        validator_class = validators.validator_for(document)
        try:
            validator_class.check_schema(document)
        except SchemaError as error:
            raise InvalidArgumentError("schema", schema, f"a valid JSON Schema ({error.message})") from None
        properties = document.get("properties")
        if not isinstance(properties, Mapping):
            raise InvalidArgumentError("schema", schema, "a job schema with a 'properties' object")
        published = published_schema()["properties"] if schema is not None else properties
        missing = [name for name in published if name not in properties]
        if missing:
            raise InvalidArgumentError("schema", schema, f"a job schema describing every published field (missing: {', '.join(missing)})")
        states = [state.value for state in STATES]
        status = properties["status"]
        if not isinstance(status, Mapping) or status.get("enum") != states:
            raise InvalidArgumentError("schema", schema, f"a job schema whose 'status' field keeps the enum {states}")
        self.document: dict[str, Any] = document
        self._properties: Mapping[str, Any] = properties
        self._validator = validator_class(document)
        self._defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
        self._plain_defaults = all(isinstance(value, _REMEMBERED_TYPES) for value in self._defaults.values())
        self._required = frozenset(document.get("required", ()))
        self._per_field = document.keys() <= _PER_FIELD_KEYWORDS and isinstance(
            document.get("additionalProperties", True), bool
        )
        self._closed = document.get("additionalProperties", True) is False
        # One validator per field, its local $refs replaced by what they point at: resolving a
        # reference through the registry costs more than checking the value it names.
        self._fields = {
            name: self._validator.evolve(schema=_inline_references(spec, document))
            for name, spec in properties.items()
        }
        # Lists checked item by item, so that a history one entry longer checks only that entry.
        self._items = {
            name: self._validator.evolve(schema=_inline_references(spec["items"], document))
            for name, spec in properties.items()
            if isinstance(spec, Mapping)
            and spec.get("type") == "array"
            and isinstance(spec.get("items"), Mapping)
            and spec.keys() <= _ANNOTATIONS | {"type", "items"}
        }
        self._passed: set[tuple[str, Any]] = set()

    def defaults(self) -> dict[str, Any]:
        """Return the default value of every field that has one (what a new job starts from)."""
        return dict(self._defaults) if self._plain_defaults else copy.deepcopy(self._defaults)

    def validate(self, document: Mapping[str, Any]) -> None:
        """Check one job document.

        :param document: the document about to be written
        :raises InvalidJobError: naming the job id and every field at fault
        """
        if not (self._per_field and isinstance(document, Mapping)):
            self._check(document)
            return
        # A job's fields mostly keep their values from write to write, and jsonschema's cost is
        # per field: a field whose exact value (and type: 1, 1.0 and True are equal) passed before
        # is not checked again. Required fields stay, so that their absence is still seen.
        unchecked = {
            name: value
            for name, value in document.items()
            if name in self._required or name in self._items or _memory_key(name, value) not in self._passed
        }
        if not self._passes(unchecked):
            # The whole-document check words every problem, exactly as for any document read.
            self._check(unchecked)
        if len(self._passed) > _MOST_REMEMBERED:
            self._passed.clear()
        self._passed.update(
            key for name, value in unchecked.items() if name not in self._items and (key := _memory_key(name, value)) is not None
        )

    def _passes(self, fields: Mapping[str, Any]) -> bool:
        """Whether the fields are valid, judged field by field (the schema has no keyword spanning fields)."""
        if not self._required <= fields.keys():
            return False
        for name, value in fields.items():
            validator = self._fields.get(name)
            if validator is None:
                if self._closed:
                    return False
            elif name in self._items and type(value) is list:
                if not all(self._item_passes(name, item) for item in value):
                    return False
            elif not validator.is_valid(value):
                return False
        return True

    def _item_passes(self, name: str, item: Any) -> bool:
        key = _memory_key(name + "[]", item)
        if key is not None and key in self._passed:
            return True
        if not self._items[name].is_valid(item):
            return False
        if key is not None:
            self._passed.add(key)
        return True

    def problems(self, document: Any) -> list[tuple[str | None, str]]:
        """Return what is wrong with a document as (field or None, message) pairs; empty when it is valid.

        Every field is checked, whatever passed before: this is for documents read, not written.
        """
        errors = sorted(self._validator.iter_errors(document), key=lambda error: list(error.path))
        return [problem for error in errors for problem in self._problems(error, document)]

    def _check(self, document: Any) -> None:
        problems = self.problems(document)
        if problems:
            raise InvalidJobError(document.get("id") if isinstance(document, Mapping) else None, problems)

    def _problems(self, error: ValidationError, document: Mapping[str, Any]) -> list[tuple[str | None, str]]:
        if error.path:
            return [(str(error.path[0]), error.message)]
        if error.validator == "additionalProperties":
            allowed = ", ".join(self._properties)
            return [(name, f"unknown field (allowed: {allowed})") for name in document if name not in self._properties]
        if error.validator == "required":
            required = error.validator_value if isinstance(error.validator_value, list) else []
            return [(name, "required field is missing") for name in required if name not in document]
        return [(None, error.message)]

    def field_table(self) -> dict[str, dict[str, Any]]:
        """Return the field table the api.job docs print: type, required, unique, default, options."""
        required = set(self.document.get("required", ()))
        return {
            name: {
                "type": spec.get("type", ""),
                "required": name in required,
                "unique": bool(spec.get("x-unique", False)),
                "default": copy.deepcopy(spec.get("default", "")),
                "options": list(spec.get("enum", [])),
            }
            for name, spec in self._properties.items()
        }


def _inline_references(schema: Any, root: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """The schema with each ``$ref`` to a place in ``root`` replaced by the schema found there.

    A reference that is recursive, points elsewhere or sits beside keywords is left as it is: the
    validator, which keeps the root document, still resolves it, only more slowly.
    """
    if isinstance(schema, list):
        return [_inline_references(item, root, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref")
    if isinstance(reference, str) and len(schema) == 1 and reference.startswith("#/") and reference not in seen:
        target: Any = root
        for part in reference[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return schema
            target = target[part]
        if isinstance(target, dict) and not target.keys() & {"$id", "$anchor", "$dynamicAnchor", "$dynamicRef"}:
            return _inline_references(target, root, (*seen, reference))
        return schema
    return {key: _inline_references(value, root, seen) for key, value in schema.items()}


def _memory_key(name: str, value: Any) -> tuple[str, Any] | None:
    """The key under which a passing field value is remembered; None for values not remembered.

    Scalars are tagged with their type, since 1 == 1.0 == True. Small lists and objects are
    remembered by their strict JSON text (a new job's one-entry ``history`` is the same for
    every job of a bulk submit), which tells those apart too and refuses NaN.
    """
    kind = type(value)
    if kind in _REMEMBERED_TYPES:
        return None if kind is str and len(value) > _LONGEST_REMEMBERED else (name, (kind, value))
    if kind is dict and len(value) <= 8 and all(type(item) is str and len(item) <= 256 for item in value.values()):
        # A flat object of strings, such as a history entry: cheaper to tag than to serialize.
        return name, (dict, tuple(sorted(value.items())))
    if kind is not list and kind is not dict:
        return None
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return None if len(text) > _LONGEST_REMEMBERED else (name, text)
