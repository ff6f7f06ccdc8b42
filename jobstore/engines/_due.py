"""What one segment of the file engine holds for scheduling: its jobs in claim order, their keys and dependencies.

Worked out afresh whenever the segment's table changes (a segment holds a few hundred jobs), so a
claim looks at a few entries per segment instead of at every pending job: a segment's jobs of one
priority are sorted by the time they are due, so the first of them not yet due ends the look at
that priority.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

from .._schedule import claim_order, depends_on

#: Sorts after every time jobstore writes.
_NEVER = "\uffff"

#: (minus priority, due since, position in the segment, job id)
Entry = tuple[float, str, int, str]


class SegmentSchedule:
    """The scheduling view of one segment's table, as it was when built.

    :param table: the segment's jobs by id, in the order they entered
    """

    def __init__(self, table: Mapping[str, Mapping[str, Any]]) -> None:
        #: the table this was built from: one that is not this object has changed since
        self.table = table
        order: list[Entry] = []
        #: key -> id of the (first) job holding it
        self.keys: dict[str, str] = {}
        #: job id -> ids of the jobs here that depend on it
        self.needed_by: dict[str, list[str]] = {}
        for position, (job_id, document) in enumerate(table.items()):
            order.append((*claim_order(document), position, job_id))
            key = document.get("key")
            if isinstance(key, str):
                self.keys.setdefault(key, job_id)
            for needed in depends_on(document):
                self.needed_by.setdefault(needed, []).append(job_id)
        order.sort()
        self.order = order

    def first_due(self, moment: str, ready: Callable[[Mapping[str, Any]], bool]) -> Entry | None:
        """Return the entry of the first job in claim order due by ``moment`` and ``ready``, or None."""
        order = self.order
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
