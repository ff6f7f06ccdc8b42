"""The library's errors as the job service sends them, and back: one JSON object per error.

The service answers a refused request with ``{"error": <class name>, "detail": <message>,
"attributes": {...}}``, the attributes being those that made the message; the client rebuilds the same exception class from
them, so a script catches the same errors whether its store is local or behind the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import (
    CorruptStoreError,
    InvalidArgumentError,
    InvalidJobError,
    InvalidStateError,
    JobNotFoundError,
    JobStateError,
    JobStoreError,
    NotAStoreError,
    SchemaConflictError,
    StoreLockTimeout,
    StoreWriteError,
    UnsafeStoreError,
    WaitTimeout,
)

#: What each error answers with over the wire: its HTTP status, and the attributes it carries
#: besides its class and message.
_WIRE: dict[type[JobStoreError], tuple[int, tuple[str, ...]]] = {
    InvalidStateError: (400, ("state", "states")),
    InvalidArgumentError: (400, ("argument", "value", "expected")),
    InvalidJobError: (400, ("job_id", "problems")),
    JobNotFoundError: (404, ("job_id",)),
    JobStateError: (409, ("job_id", "status", "action", "allowed", "detail")),
    SchemaConflictError: (409, ("path", "detail")),
    WaitTimeout: (503, ("job_id", "timeout", "status")),
    StoreLockTimeout: (503, ("lock_file", "timeout")),
    UnsafeStoreError: (503, ("path", "detail")),
    CorruptStoreError: (503, ("path", "detail", "line", "column")),
    NotAStoreError: (503, ("path", "detail")),
    StoreWriteError: (503, ("path", "errno", "strerror", "outcome")),
}
_ATTRIBUTES = {kind: names for kind, (_, names) in _WIRE.items()}

_NAMES = {kind.__name__: names for kind, names in _ATTRIBUTES.items()}

#: How the client makes each error again from its attributes.
_REBUILD: dict[str, Callable[[Mapping[str, Any]], JobStoreError]] = {
    "InvalidStateError": lambda a: InvalidStateError(a["state"], a["states"]),
    "InvalidArgumentError": lambda a: InvalidArgumentError(a["argument"], a["value"], a["expected"]),
    "InvalidJobError": lambda a: InvalidJobError(a["job_id"], [(field, message) for field, message in a["problems"]]),
    "JobNotFoundError": lambda a: JobNotFoundError(a["job_id"]),
    "JobStateError": lambda a: JobStateError(a["job_id"], a["status"], a["action"], a["allowed"], a["detail"]),
    "WaitTimeout": lambda a: WaitTimeout(a["job_id"], a["timeout"], a["status"]),
    "StoreLockTimeout": lambda a: StoreLockTimeout(a["lock_file"], a["timeout"]),
    "CorruptStoreError": lambda a: CorruptStoreError(a["path"], a["detail"], a["line"], a["column"]),
    "UnsafeStoreError": lambda a: UnsafeStoreError(a["path"], a["detail"]),
    "SchemaConflictError": lambda a: SchemaConflictError(a["path"], a["detail"]),
    "NotAStoreError": lambda a: NotAStoreError(a["path"], a["detail"]),
    "StoreWriteError": lambda a: StoreWriteError(a["path"], OSError(a["errno"], a["strerror"]), a["outcome"]),
}


def _camel(name: str) -> str:
    """An attribute's name as the service's JSON spells names: ``job_id`` as ``jobId``."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    """A value as JSON can carry it: tuples as lists, anything else not JSON as its repr."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return repr(value)


def status_of(error: JobStoreError) -> int:
    """The HTTP status the service answers an error with: 503, the store cannot serve, for one it does not know."""
    kind = next((kind for kind in type(error).__mro__ if kind in _WIRE), None)
    return 503 if kind is None else _WIRE[kind][0]


def error_body(error: JobStoreError) -> dict[str, Any]:
    """Return the JSON object the service answers with for ``error``."""
    kind = next((kind for kind in type(error).__mro__ if kind in _ATTRIBUTES), None)
    names = _ATTRIBUTES.get(kind, ()) if kind is not None else ()
    body: dict[str, Any] = {"error": type(error).__name__, "detail": str(error)}
    # Beside the message, not among its keys: some errors carry a "detail" attribute of their own.
    body["attributes"] = {_camel(name): _plain(getattr(error, name, None)) for name in names}
    if isinstance(error, InvalidJobError):
        body["fields"] = list(error.fields)
    return body


def rebuilt(body: Mapping[str, Any]) -> JobStoreError:
    """Return the exception an error body stands for: the same class as the service raised, with its attributes.

    A body this release does not know (a newer service's error) becomes a plain :class:`JobStoreError`
    carrying its detail.
    """
    rebuild = _REBUILD.get(str(body.get("error")))
    if rebuild is not None:
        try:
            attributes = body.get("attributes") or {}
            return rebuild({name: attributes[_camel(name)] for name in _NAMES[str(body["error"])] if _camel(name) in attributes})
        except (KeyError, TypeError, ValueError):
            pass  # attributes missing or malformed: the message still says what happened
    return JobStoreError(str(body.get("detail", body)))
