"""jobstore: the jobs of worker processes in plain JSON files, safe across processes and crashes."""

from __future__ import annotations

from ._errors import (
    CorruptStoreError,
    InvalidArgumentError,
    InvalidJobError,
    InvalidStateError,
    JobNotFoundError,
    JobStateError,
    JobStoreError,
    NotAStoreError,
    NotAuthorizedError,
    SchemaConflictError,
    ServiceUnavailableError,
    StoreLockTimeout,
    StoreWriteError,
    UnsafeStoreError,
    WaitTimeout,
)
from .engines._base import StoreProblem
from ._schema import published_schema
from ._status import JobStatus
from ._store import JobStore
from ._version import __version__

__all__ = [
    "CorruptStoreError",
    "InvalidArgumentError",
    "InvalidJobError",
    "InvalidStateError",
    "JobNotFoundError",
    "JobStateError",
    "JobStatus",
    "JobStore",
    "JobStoreError",
    "NotAStoreError",
    "NotAuthorizedError",
    "SchemaConflictError",
    "ServiceUnavailableError",
    "StoreLockTimeout",
    "StoreProblem",
    "StoreWriteError",
    "UnsafeStoreError",
    "WaitTimeout",
    "__version__",
    "published_schema",
]
