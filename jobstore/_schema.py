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

from ._errors import InvalidJobError
from ._status import STATES

_SCHEMA_RESOURCE = "schemas/job.schema.json"


@functools.cache
def _published_text() -> str:
    return resources.files(__package__).joinpath(_SCHEMA_RESOURCE).read_text(encoding="utf-8")


def published_schema() -> dict[str, Any]:
    """Return a fresh copy of the published job schema (``schemas/job.schema.json``)."""
    return json.loads(_published_text())


class JobSchema:
    """A job JSON Schema compiled once, with what the store derives from it.

    :param schema: a JSON Schema for job documents; None for the published one. A custom schema
        must describe the seven published fields and keep the status enum.
    :raises ValueError: when the schema is not a valid JSON Schema or drops a published field
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        document = published_schema() if schema is None else copy.deepcopy(dict(schema))
        validator_class = validators.validator_for(document)
        try:
            validator_class.check_schema(document)
        except SchemaError as error:
            raise ValueError(f"not a valid JSON Schema: {error.message}") from None
        properties = document.get("properties")
        if not isinstance(properties, Mapping):
            raise ValueError("a job schema needs a 'properties' object")
        published = published_schema()["properties"] if schema is not None else properties
        missing = [name for name in published if name not in properties]
        if missing:
            raise ValueError(f"a job schema must describe the published fields; missing: {', '.join(missing)}")
        states = [state.value for state in STATES]
        status = properties["status"]
        if not isinstance(status, Mapping) or status.get("enum") != states:
            raise ValueError(f"the 'status' field must keep the enum {states}")
        self.document: dict[str, Any] = document
        self._properties: Mapping[str, Any] = properties
        self._validator = validator_class(document)
        self._defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
        self._plain_defaults = all(isinstance(value, (str, int, float, bool, type(None))) for value in self._defaults.values())

    def defaults(self) -> dict[str, Any]:
        """Return the default value of every field that has one (what a new job starts from)."""
        return dict(self._defaults) if self._plain_defaults else copy.deepcopy(self._defaults)

    def validate(self, document: Mapping[str, Any]) -> None:
        """Check one job document.

        :param document: the document about to be written
        :raises InvalidJobError: naming the job id and every field at fault
        """
        errors = sorted(self._validator.iter_errors(document), key=lambda error: list(error.path))
        if errors:
            job_id = document.get("id") if isinstance(document, Mapping) else None
            raise InvalidJobError(job_id, [problem for error in errors for problem in self._problems(error, document)])

    def _problems(self, error: ValidationError, document: Mapping[str, Any]) -> list[tuple[str | None, str]]:
        if error.path:
            return [(str(error.path[0]), error.message)]
        if error.validator == "additionalProperties":
            allowed = ", ".join(self._properties)
            return [(name, f"unknown field (allowed: {allowed})") for name in document if name not in self._properties]
        if error.validator == "required":
            return [(name, "required field is missing") for name in error.validator_value if name not in document]
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
