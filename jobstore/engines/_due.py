"""What one segment of the file engine holds for scheduling: its jobs in claim order, their keys and dependencies.

Kept beside the segment's table and changed with it, so a claim looks at a few entries per
segment instead of at every pending job: a segment's jobs of one priority are sorted by the time
they are due, so the first of them not yet due ends the look at that priority.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._schedule import claim_order, depends_on

#: Sorts after every time jobstore writes.
_NEVER = "\uffff"

#: (minus priority, due since, position in the segment, job id)
Entry = tuple[float, str, int, str]


class SegmentSchedule:
    """The scheduling view of one segment's table.

    :param table: the segment's jobs by id, in the order they entered
    """

    def __init__(self, table: Mapping[str, Mapping[str, Any]]) -> None:
        #: the table this view is of: one that is not this object has changed since
        self.table = table
        self._entries: dict[str, Entry] = {}
        #: key -> ids of the jobs here holding it
        self.keys: dict[str, list[str]] = {}
        #: job id -> ids of the jobs here that depend on it
        self.needed_by: dict[str, list[str]] = {}
        self._next = 0
        for job_id, document in table.items():
            self._add(job_id, document, self._next, sort=False)
            self._next += 1
        self.order = sorted(self._entries.values())

    def _add(self, job_id: str, document: Mapping[str, Any], position: int, *, sort: bool = True) -> None:
        entry = (*claim_order(document), position, job_id)
        self._entries[job_id] = entry
        if sort:
            insort(self.order, entry)
        key = document.get("key")
        if isinstance(key, str):
            self.keys.setdefault(key, []).append(job_id)
        for needed in depends_on(document):
            self.needed_by.setdefault(needed, []).append(job_id)

    def _drop(self, job_id: str, document: Mapping[str, Any]) -> int | None:
        """Forget the job; return its position, None when it was not here."""
        entry = self._entries.pop(job_id, None)
        if entry is None:
            return None
        del self.order[bisect_left(self.order, entry)]
        key = document.get("key")
        if isinstance(key, str):
            _discard(self.keys, key, job_id)
        for needed in depends_on(document):
            _discard(self.needed_by, needed, job_id)
        return entry[2]

    def changed(self, table: Mapping[str, Mapping[str, Any]], puts: Mapping[str, Mapping[str, Any]], removes: Iterable[str]) -> None:
        """Follow a change of the table: ``removes`` taken out, then ``puts`` written (a job still here keeps its place)."""
        old = self.table
        for job_id in removes:
            if job_id in old:
                self._drop(job_id, old[job_id])
        for job_id, document in puts.items():
            position = self._drop(job_id, old[job_id]) if job_id in self._entries else None
            if position is None:
                position, self._next = self._next, self._next + 1
            self._add(job_id, document, position)
        self.table = table

    def first_due(self, moment: str, ready: Callable[[Mapping[str, Any]], bool]) -> Entry | None:
        """Return the entry of the first job in claim order due by ``moment`` and ``ready``, or None."""
        order = self.order
        if not order or (order[0][1] > moment and order[0][0] == order[-1][0]):
            return None  # one priority only, and its first job is not due yet: none is
        index = 0
        while index < len(order):
            entry = order[index]
            if entry[1] > moment:
                # The rest of this priority is due later still: on to the next priority.
                index = bisect_left(order, (entry[0], _NEVER))
                continue
            if ready(self.table[entry[3]]):
                return entry
            index += 1
        return None


def _discard(index: dict[str, list[str]], name: str, job_id: str) -> None:
    holders = index.get(name)
    if holders is not None and job_id in holders:
        holders.remove(job_id)
        if not holders:
            del index[name]
