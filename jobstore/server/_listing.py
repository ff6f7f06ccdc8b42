"""The jobs as the service lists them: all of them in one order, paged by a cursor that stays valid as jobs come and go."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from .._errors import InvalidArgumentError
from .._status import JobStatus

Key = tuple[str, str]
T = TypeVar("T")


def order_key(job: Mapping[str, Any]) -> Key:
    """Where a job stands in the listing: by when it was created, then by id (jobs submitted together share a time)."""
    return str(job.get("createdAt", "")), str(job.get("id"))


def cursor_of(key: Key) -> str:
    """The cursor naming a place in the listing: opaque to clients, only handed back."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def place_of(cursor: str) -> Key:
    """The place a cursor names.

    :raises InvalidArgumentError: for text no page handed out
    """
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(key, list) and len(key) == 2 and all(isinstance(part, str) for part in key):
            return key[0], key[1]
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        pass
    raise InvalidArgumentError("cursor", cursor, "a cursor from an earlier page's next")


class Listing:
    """Every job of the store at one moment, sorted once, so that each page costs what it holds, not the store's size.

    :param jobs: the jobs, in any order
    """

    def __init__(self, jobs: Iterable[dict[str, Any]]) -> None:
        self.jobs = sorted(jobs, key=order_key)
        self._keys = [order_key(job) for job in self.jobs]
        self._remembered: dict[str, tuple[float, Any]] = {}

    def remembered(self, name: str, compute: Callable[[list[dict[str, Any]]], T], *, seconds: float = 1.0) -> T:
        """A figure worked out from these jobs, worked out again only once it is ``seconds`` old.

        The figures that depend on the time as well (ages, the last hour) stay that fresh; every
        change of the store makes a new listing, so none outlives the jobs it was worked out from.
        """
        now = time.monotonic()
        kept = self._remembered.get(name)
        if kept is None or now - kept[0] >= seconds:
            kept = self._remembered[name] = (now, compute(self.jobs))
        return cast(T, kept[1])

    def __len__(self) -> int:
        return len(self.jobs)

    def page(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        user: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "newest",
    ) -> dict[str, Any]:
        """One page: the jobs matching every filter given, after the cursor, newest or oldest first.

        :returns: ``{"jobs": [...], "next": cursor of the page after, or None on the last}``
        :raises InvalidArgumentError: for an unknown state or order, or a cursor no page handed out
        """
        wanted_state = None if state is None else JobStatus.parse(state).value
        if order not in ("newest", "oldest"):
            raise InvalidArgumentError("order", order, "newest or oldest")
        newest = order == "newest"
        if cursor is None:
            start = len(self.jobs) - 1 if newest else 0
        else:
            place = place_of(cursor)
            start = bisect.bisect_left(self._keys, place) - 1 if newest else bisect.bisect_right(self._keys, place)
        step = -1 if newest else 1
        found: list[dict[str, Any]] = []
        index = start
        while 0 <= index < len(self.jobs):
            job = self.jobs[index]
            if (wanted_state is None or job.get("status") == wanted_state) and (name is None or job.get("name") == name) and (user is None or job.get("user") == user):
                if len(found) == limit:
                    return {"jobs": found, "next": cursor_of(order_key(found[-1]))}
                found.append(job)
            index += step
        return {"jobs": found, "next": None}
