"""The job schema: loading the published one, checking documents against it, and its field table."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from ._errors import InvalidArgumentError, InvalidJobError
from ._times import parse_time
from ._status import STATES

_SCHEMA_RESOURCE = "schemas/job.schema.json"
#: The fields of the api.job documentation's field table, in its order; the published schema's
#: other fields are the store's own, kept as a job goes along.
API_FIELDS = ("id", "name", "user", "request", "result", "status", "messages")

# The dialects whose keywords the field-by-field check understands: draft 3 words "required" and
# "type" otherwise, and draft 4 moves the base URI with "id", a name a job field has too.
_FIELD_BY_FIELD_DIALECTS: tuple[type[Validator], ...] = (
    validators.Draft6Validator,
    validators.Draft7Validator,
    validators.Draft201909Validator,
    validators.Draft202012Validator,
)
# Keywords that resolve references by scope rather than by place, move the base a "#/..."
# reference is read from, or change the dialect: anywhere in a schema ("$id" and "$schema" below
# its top), they leave every check to the whole-document validator.
_SCOPED_KEYWORDS = frozenset(
    {"$id", "$schema", "$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveAnchor", "$recursiveRef"}
)
# Non-asserting keywords beginning with "$" that a part of a schema may carry and still be taken
# apart; any other ("$schema" changes the dialect, "$vocabulary"...) leaves that part to jsonschema.
_INERT_DOLLAR_KEYWORDS = frozenset({"$comment", "$defs"})
_TOP_DOLLAR_KEYWORDS = _INERT_DOLLAR_KEYWORDS | {"$schema", "$id"}
# Where a schema holds data rather than subschemas: a {"$ref": ...} there is a value, not a reference.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
_MOST_INLINED = 10_000  # schema nodes per field; past this its references stay references
_REMEMBERED_TYPES = (str, int, float, bool, type(None))
_LONGEST_REMEMBERED = 1024  # characters; longer values are checked every time
_MOST_REMEMBERED = 8192  # values per part of the schema; its memory is emptied when it grows past this


@functools.cache
def _published_text() -> str:
    return resources.files(__package__).joinpath(_SCHEMA_RESOURCE).read_text(encoding="utf-8")


def published_schema() -> dict[str, Any]:
    """Return a fresh copy of the published job schema (``schemas/job.schema.json``)."""
    schema: dict[str, Any] = json.loads(_published_text())
    return schema


def schema_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Say in a few words how two job schemas differ: the fields one has and the other lacks, the fields typed otherwise."""

    def fields(schema: Mapping[str, Any]) -> Mapping[str, Any]:
        properties = schema.get("properties")
        return properties if isinstance(properties, Mapping) else {}

    before, after = fields(old), fields(new)
    parts = []
    for words, names in (
        ("fields added", [name for name in after if name not in before]),
        ("fields dropped", [name for name in before if name not in after]),
        ("fields changed", [name for name in after if name in before and after[name] != before[name]]),
    ):
        if names:
            parts.append(f"{words}: {', '.join(names)}")
    if not parts:
        keywords = sorted(key for key in {*old, *new} - {"properties"} if old.get(key) != new.get(key))
        parts.append(f"keywords changed: {', '.join(keywords)}")
    return "; ".join(parts)


class JobSchema:
    """A job JSON Schema compiled once, with what the store derives from it.

    :param schema: a JSON Schema for job documents; None for the published one. A custom schema
        must describe every published field (the seven api.job fields and the store's own) and
        keep the status enum.
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
        self._by_field = _by_field(document, self._validator) if validator_class in _FIELD_BY_FIELD_DIALECTS else None
        # "format" is an annotation to jsonschema unless asked; the times the store reads back are checked here.
        self._times = tuple(name for name, spec in properties.items() if isinstance(spec, Mapping) and spec.get("format") == "date-time")
        history = properties.get("history")
        items = history.get("items") if isinstance(history, Mapping) else None
        parts = items.get("properties") if isinstance(items, Mapping) else None
        self._history_times = tuple(
            name for name, spec in (parts.items() if isinstance(parts, Mapping) else ()) if isinstance(spec, Mapping) and spec.get("format") == "date-time"
        )

    def defaults(self) -> dict[str, Any]:
        """Return the default value of every field that has one (what a new job starts from)."""
        return dict(self._defaults) if self._plain_defaults else copy.deepcopy(self._defaults)

    def validate(self, document: Mapping[str, Any]) -> None:
        """Check one job document.

        A document the field-by-field check passes is valid; any other goes through the
        whole-document validator, so that a refusal is worded exactly as :meth:`problems` words it.

        :param document: the document about to be written
        :raises InvalidJobError: naming the job id and every field at fault
        """
        if self._by_field is not None and self._by_field.passes(document):
            times = self._time_problems(document)
            if times:
                raise InvalidJobError(document.get("id"), times)
            return
        self._check(document)

    def _time_problems(self, document: Any) -> list[tuple[str | None, str]]:
        """The date-time fields (and history entries) holding what is not a date-time."""
        if not isinstance(document, Mapping):
            return []
        found: list[tuple[str | None, str]] = []
        for name in self._times:
            value = document.get(name)
            if isinstance(value, str) and not _is_time(value):
                found.append((name, f"{value!r} is not a date-time (ISO 8601, such as 2026-01-31T12:00:00Z)"))
        history = document.get("history")
        if self._history_times and isinstance(history, list):
            for number, entry in enumerate(history):
                for name in self._history_times:
                    value = entry.get(name) if isinstance(entry, Mapping) else None
                    if isinstance(value, str) and not _is_time(value):
                        found.append(("history", f"entry {number}: {name} {value!r} is not a date-time"))
        return found

    def problems(self, document: Any) -> list[tuple[str | None, str]]:
        """Return what is wrong with a document as (field or None, message) pairs; empty when it is valid.

        Every field is checked, whatever passed before: this is for documents read, not written.
        """
        errors = sorted(self._validator.iter_errors(document), key=lambda error: list(error.path))
        return [problem for error in errors for problem in self._problems(error, document)] + self._time_problems(document)

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

    def field_table(self, all_fields: bool = False) -> dict[str, dict[str, Any]]:
        """Return the field table the api.job docs print: type, required, unique, default, options.

        Each default is a value its field can hold, so that a job made of the defaults (and an id)
        passes :meth:`validate`: a field the schema gives no default gets the plainest value it allows.

        :param all_fields: list the store's own fields (``createdAt``, ``history``, ``progress``...)
            too; without it, the seven api.job fields and any field a custom schema adds
        """
        required = set(self.document.get("required", ()))
        hidden = () if all_fields else _store_fields()
        return {
            name: {
                "type": spec.get("type", ""),
                "required": name in required,
                "unique": bool(spec.get("x-unique", False)),
                "default": _plainest(spec),
                "options": list(spec.get("enum", [])),
            }
            for name, spec in self._properties.items()
            if name not in hidden
        }


@functools.lru_cache(maxsize=_MOST_REMEMBERED)
def _is_time(text: str) -> bool:
    """Whether the text is a date-time; remembered, since a job's history is checked again at each write."""
    return parse_time(text) is not None


@functools.cache
def _store_fields() -> frozenset[str]:
    """The published fields that are the store's own rather than api.job's."""
    return frozenset(published_schema()["properties"]) - frozenset(API_FIELDS)


# A field the schema gives no default still needs one of its own type, or a job made of the defaults fails the check.
_EMPTY_VALUES: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}


def _plainest(spec: Any) -> Any:
    """The default a field's schema gives, or else the plainest value it allows.

    That is its first option, else null when its type allows it (a progress total not known),
    else the empty value of its first type; an object holds the plainest value of each part it requires.

    :param spec: the field's schema
    """
    if not isinstance(spec, Mapping):
        return ""
    if "default" in spec:
        return copy.deepcopy(spec["default"])
    options = spec.get("enum")
    if isinstance(options, list) and options:
        return copy.deepcopy(options[0])
    kind = spec.get("type")
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    if "null" in kinds:
        return None
    if spec.get("format") == "date-time":
        return "1970-01-01T00:00:00Z"  # the plainest time: an empty string is not one
    if kinds and kinds[0] == "object":
        parts = spec.get("properties")
        parts = parts if isinstance(parts, Mapping) else {}
        required = spec.get("required")
        return {name: _plainest(parts.get(name)) for name in required if isinstance(name, str)} if isinstance(required, list) else {}
    if not kinds or not isinstance(kinds[0], str):
        return ""
    if kinds[0] in ("integer", "number"):
        # The least value allowed, where zero is not (a positive backoff).
        least = spec.get("minimum", spec.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in spec else 0)
        return least if isinstance(least, (int, float)) and not isinstance(least, bool) else 0
    if kinds[0] == "string" and isinstance(spec.get("minLength"), int) and spec["minLength"] > 0:
        return "-" * spec["minLength"]  # an empty string is too short
    return copy.deepcopy(_EMPTY_VALUES.get(kinds[0], ""))


class _Check:
    """One part of a schema, compiled to answer whether a value passes it.

    ``passes`` answering True means the jsonschema validator would pass the value; False means
    only that the whole-document validator must look (it also words what is wrong).
    """

    def passes(self, value: Any) -> bool:
        """Whether the value passes this part of the schema."""
        raise NotImplementedError


class _Anything(_Check):
    """The schema ``true`` (or one asserting nothing): every value passes."""

    def passes(self, value: Any) -> bool:
        """Whether the value passes: always."""
        return True


class _Judged(_Check):
    """A part left whole to its own jsonschema validator, remembering the values that passed.

    A value is remembered under its exact type (1, 1.0 and True are equal in Python, not in a
    schema), so a value equal and of the same type as one that passed passes without a check.

    :param validator: the jsonschema validator of this part
    """

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self._is_valid: Callable[[Any], bool] = validator.is_valid
        self._passed: set[Any] = set()

    def passes(self, value: Any) -> bool:
        """Whether the value passes, from memory or from jsonschema."""
        key = _memory_key(value)
        if key is not None and key in self._passed:
            return True
        if not self._is_valid(value):
            return False
        if key is not None:
            if len(self._passed) >= _MOST_REMEMBERED:
                self._passed.clear()
            self._passed.add(key)
        return True


class _Typed(_Check):
    """A part asserting nothing but ``type``, answered by jsonschema's own type checker.

    The job timestamps are such parts ("format" asserts nothing without a format checker): being
    new at every write, they would never be found in a memory.

    :param validator: the validator whose type checker decides
    :param types: the JSON types of which the value must be one
    """

    def __init__(self, validator: Validator, types: tuple[str, ...]) -> None:
        self._is_type: Callable[[Any, str], bool] = validator.is_type
        self._types = types

    def passes(self, value: Any) -> bool:
        """Whether the value is of one of the types."""
        is_type = self._is_type
        for kind in self._types:
            if is_type(value, kind):
                return True
        return False


class _Object(_Check):
    """A part made of "type": "object", "properties", "required" and a boolean "additionalProperties".

    It passes a dict when each field described passes its own part, the required fields are there
    and, closed, no other field is: what those four keywords assert, and no more.

    :param validator: the jsonschema validator of this whole part, for values that are no plain dict
    :param fields: each described field's compiled part
    :param required: the fields that must be present
    :param closed: whether "additionalProperties" is false
    :param typed: whether the part says "type": "object"
    """

    def __init__(self, validator: Validator, fields: dict[str, _Check], required: tuple[str, ...], closed: bool, typed: bool) -> None:
        self._is_valid: Callable[[Any], bool] = validator.is_valid
        self._is_type: Callable[[Any, str], bool] = validator.is_type
        self._fields = fields
        self._required = required
        self._closed = closed
        self._typed = typed

    def passes(self, value: Any) -> bool:
        """Whether the value passes: field by field for a plain dict, through jsonschema otherwise."""
        if type(value) is not dict:
            # A Mapping that is not a dict, or a non-object: jsonschema decides what it makes of it.
            return self._is_valid(value)
        if self._typed and not self._is_type(value, "object"):
            return False
        fields = self._fields
        for name, item in value.items():
            check = fields.get(name)
            if check is None:
                if self._closed:
                    return False
            elif not check.passes(item):
                return False
        for name in self._required:
            if name not in value:
                return False
        return True


class _Array(_Check):
    """A part made of "type": "array" and one "items" schema, so that each item is checked (or remembered) alone.

    :param validator: the jsonschema validator of this whole part, for values that are no plain list
    :param items: the compiled part every item must pass
    """

    def __init__(self, validator: Validator, items: _Check) -> None:
        self._is_valid: Callable[[Any], bool] = validator.is_valid
        self._is_type: Callable[[Any, str], bool] = validator.is_type
        self._items = items

    def passes(self, value: Any) -> bool:
        """Whether the value passes: item by item for a plain list, through jsonschema otherwise."""
        if type(value) is not list:
            return self._is_valid(value)
        if not self._is_type(value, "array"):
            return False
        passes = self._items.passes
        for item in value:
            if not passes(item):
                return False
        return True


def _by_field(document: dict[str, Any], validator: Validator) -> _Check | None:
    """The compiled field-by-field check of a job schema; None when the schema must always be checked whole.

    :param document: the whole (checked) schema
    :param validator: its validator, built without a format checker, so that "format" asserts nothing
    """
    if _scoped(document, top=True) or getattr(validator, "format_checker", None) is not None:
        return None
    check = _compile(document, validator, top=True)
    # A top that is not taken apart (a keyword spanning fields, such as "dependentRequired" or
    # "if") would only be the whole-document check again, under another name.
    return check if isinstance(check, _Object) else None


def _compile(schema: Any, validator: Validator, top: bool = False) -> _Check:
    """The compiled check of one part of a schema.

    :param schema: the part, a JSON Schema (a dict or a bool); below the top, with its local
        references already inlined
    :param validator: the whole schema's validator, which every part's validator derives from (it
        keeps the root, so references left in place still resolve)
    :param top: whether the part is the whole schema (which may also name its dialect and base);
        each of its fields' schemas is inlined here, once
    """
    if schema is True:
        return _Anything()
    own = validator if top else validator.evolve(schema=schema)
    if not isinstance(schema, dict):
        return _Judged(own)
    # "format" asserts nothing without a format checker (see _by_field); unknown keywords nothing at all.
    asserting = {key for key in schema if key in validator.VALIDATORS and key != "format"}
    allowed_dollar = _TOP_DOLLAR_KEYWORDS if top else _INERT_DOLLAR_KEYWORDS
    if any(
        not isinstance(key, str) or (key.startswith("$") and key not in asserting and key not in allowed_dollar)
        for key in schema
    ):
        return _Judged(own)
    kind = schema.get("type")
    if not asserting:
        return _Anything()
    if asserting == {"type"} and not top:
        types = (kind,) if isinstance(kind, str) else tuple(kind) if isinstance(kind, list) else None
        if types is not None and all(isinstance(name, str) for name in types):
            return _Typed(own, types)
        return _Judged(own)
    if asserting <= {"type", "properties", "required", "additionalProperties"} and kind in ("object", None):
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        closed = schema.get("additionalProperties", True)
        if (
            isinstance(properties, dict)
            and isinstance(required, list)
            and all(isinstance(name, str) for name in required)
            and isinstance(closed, bool)
        ):
            root = validator.schema
            fields = {
                name: _compile(_inlined(spec, root) if top and isinstance(root, dict) else spec, validator)
                for name, spec in properties.items()
            }
            return _Object(own, fields, tuple(required), closed is False, kind == "object")
    if not top and asserting == {"type", "items"} and kind == "array" and isinstance(schema["items"], (dict, bool)):
        return _Array(own, _compile(schema["items"], validator))
    return _Judged(own)


def _scoped(schema: Any, top: bool = False) -> bool:
    """Whether a schema uses a keyword that scopes references or changes the dialect, anywhere in it ("$id" and "$schema" below its top)."""
    if isinstance(schema, list):
        return any(_scoped(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    keys = schema.keys() - {"$id", "$schema"} if top else schema.keys()
    return bool(keys & _SCOPED_KEYWORDS) or any(_scoped(value) for value in schema.values())


class _TooLarge(Exception):
    """Inlining a field's references would make its schema too large."""


def _inlined(schema: Any, root: Mapping[str, Any]) -> Any:
    """The part with each lone ``{"$ref": "#/..."}`` replaced by the part of ``root`` it points at.

    Resolving a reference through jsonschema's registry at every check costs more than checking
    the value it names; done once here, the part's validator never meets it. A reference that is
    recursive, points elsewhere or sits beside other keywords is left for the validator (which
    keeps the root) to resolve, as is every reference of a part that would grow too large.
    Only sound while no keyword scopes references (see :func:`_scoped`).
    """
    budget = [_MOST_INLINED]
    try:
        return _inline(schema, root, (), budget)
    except _TooLarge:
        return schema


def _inline(schema: Any, root: Mapping[str, Any], seen: tuple[str, ...], budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(schema, list):
        return [_inline(item, root, seen, budget) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref")
    if isinstance(reference, str) and len(schema) == 1:
        target = _pointed_at(reference, root)
        if target is not None and reference not in seen:
            return _inline(target, root, (*seen, reference), budget)
        return schema
    return {
        key: value if key in _DATA_KEYWORDS else _inline(value, root, seen, budget)
        for key, value in schema.items()
    }


def _pointed_at(reference: str, root: Mapping[str, Any]) -> dict[str, Any] | bool | None:
    """The subschema a ``#/...`` JSON pointer names in ``root``; None for any other reference, or one that does not resolve.

    Percent-escaped pointers are left to the registry, which decodes them.
    """
    if not reference.startswith("#/") or "%" in reference:
        return None
    target: Any = root
    for part in reference[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    return target if isinstance(target, (dict, bool)) else None


def _memory_key(value: Any) -> Any:
    """The key under which a passing value is remembered; None for values not remembered.

    Small lists and objects are remembered too, each part tagged with its exact type, since
    1 == 1.0 == True and a tuple equals no list yet is no JSON array to jsonschema.
    """
    kind = type(value)
    if kind in _REMEMBERED_TYPES:
        return None if kind is str and len(value) > _LONGEST_REMEMBERED else (kind, value)
    if kind is not list and kind is not dict:
        return None
    try:
        return _frozen(value, [_LONGEST_REMEMBERED])
    except _NotRemembered:
        return None


class _NotRemembered(Exception):
    """A value too large, or not plain JSON, to be remembered."""


def _frozen(value: Any, budget: list[int]) -> Any:
    """A hashable, type-tagged image of a JSON value; raises once it spends more than the budget of characters."""
    kind = type(value)
    budget[0] -= len(value) if kind is str else 1
    if budget[0] < 0:
        raise _NotRemembered
    if kind in _REMEMBERED_TYPES:
        return kind, value
    if kind is list:
        return kind, tuple(_frozen(item, budget) for item in value)
    if kind is dict and all(type(key) is str for key in value):
        return kind, tuple(sorted((key, _frozen(item, budget)) for key, item in value.items()))
    raise _NotRemembered
